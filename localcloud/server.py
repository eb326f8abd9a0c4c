"""The local AWS endpoint: an HTTP server in this process that hands each request to moto's backends.

moto's own server (`ThreadedMotoServer`) needs Flask, which `moto[all]` does not install; this one
needs only werkzeug. The service and region come from the request's SigV4 credential scope (or its
`X-Amz-Target`), the request is re-addressed to the service's AWS hostname and dispatched through
moto's URL table (`botocore_stubber.process_request`), exactly as moto does for in-process mocks.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .httpserver import ServerThread
from .template import ACCOUNT_ID

# X-Amz-Target prefix -> signing name, for the rare unsigned JSON request
_TARGETS = {"DynamoDB": "dynamodb", "AWSStepFunctions": "states", "Firehose": "firehose", "AWSEvents": "events",
            "Logs": "logs", "TrentService": "kms", "GraniteServiceVersion20100801": "monitoring",
            "AmazonSQS": "sqs", "AWSCognito": "cognito-idp", "secretsmanager": "secretsmanager",
            "AmazonSSM": "ssm", "Kinesis": "kinesis"}
# signing name -> AWS hostname (region filled in) where it differs from <name>.<region>.amazonaws.com
_HOSTS = {"s3": "s3.amazonaws.com", "iam": "iam.amazonaws.com", "sts": "sts.amazonaws.com",
          "cloudfront": "cloudfront.amazonaws.com", "route53": "route53.amazonaws.com",
          "execute-api": "execute-api.{region}.amazonaws.com", "sagemaker": "api.sagemaker.{region}.amazonaws.com"}
_HOP = {"content-length", "transfer-encoding", "connection", "server", "date"}
# moto's DynamoDB is not atomic across threads (a transaction copies the table while other threads
# write; concurrent ADDs can return the same value). Real DynamoDB serializes conflicting writes, so
# the local endpoint serializes DynamoDB requests; they never call back into Lambda, so no deadlock.
_DYNAMODB_LOCK = threading.Lock()


def _service_region(req: Request) -> tuple[str, str]:
    auth = req.headers.get("Authorization", "")
    if "Credential=" in auth:
        try:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].strip()
            _, _, region, service, _ = scope.split("/")
            return service.lower(), region
        except ValueError:
            pass
    cred = req.args.get("X-Amz-Credential")  # presigned URL
    if cred:
        try:
            _, _, region, service, _ = cred.split("/")
            return service.lower(), region
        except ValueError:
            pass
    target = req.headers.get("X-Amz-Target", "")
    if target:
        prefix = target.split(".", 1)[0].split("_", 1)[0]
        for key, service in _TARGETS.items():
            if prefix.startswith(key):
                return service, "us-east-1"
    return "s3", "us-east-1"  # unsigned requests are most likely S3 (curl, browsers, presigned-less)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class AwsServer(ServerThread):
    """A threaded HTTP server for moto's backends on `host:port` (port 0: any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5000):
        super().__init__(make_server(host, port, self._app, threaded=True, request_handler=_QuietHandler),
                         name="local-aws")
        self.host = host
        self._interceptors: list[Callable[[Request], Response | None]] = []
        self.authorizer: Any = None  # an `authorization.Authorizer`: IAM for the principals it enforces

    def intercept(self, fn: Callable[[Request], Response | None]) -> Callable[[], None]:
        """Let ``fn`` answer requests first (fault injection): a Response it returns is the answer,
        None passes the request on to moto. Returns a function that removes it."""
        self._interceptors.append(fn)

        def remove() -> None:
            if fn in self._interceptors:
                self._interceptors.remove(fn)

        return remove

    def _app(self, environ: dict, start_response: Any) -> Any:
        req = Request(environ)
        try:
            resp = next((r for r in (fn(req) for fn in list(self._interceptors)) if r is not None), None)
            if resp is None:
                service, region = _service_region(req)
                authorizer = self.authorizer
                resp = authorizer.check(req, service, region) if authorizer is not None else None
                if resp is None:
                    resp = self._dispatch(req)
                    if authorizer is not None:
                        resp = authorizer.amend(req, resp, service)
        except Exception as err:  # noqa: BLE001 - an unexpected moto failure is a 500, as AWS would
            resp = Response(f'{{"message": "local cloud: {type(err).__name__}: {err}"}}', status=500,
                            content_type="application/json")
        return resp(environ, start_response)

    def _dispatch(self, req: Request) -> Response:
        from botocore.awsrequest import AWSPreparedRequest
        from botocore.compat import HTTPHeaders
        from moto.core.models import botocore_stubber

        if req.path == "/moto-api/reset" and req.method == "POST":
            from moto.moto_api._internal.models import moto_api_backend

            moto_api_backend.reset()
            return Response('{"status": "ok"}', content_type="application/json")
        service, region = _service_region(req)
        host = _HOSTS.get(service, f"{service}.{region}.amazonaws.com").format(region=region)
        if service == "s3" and req.path.startswith("/v20180820/"):
            host = f"{req.headers.get('x-amz-account-id', ACCOUNT_ID)}.s3-control.{region}.amazonaws.com"
        raw_path = req.environ.get("RAW_URI") or req.environ.get("REQUEST_URI") or req.full_path
        if "?" not in raw_path and req.query_string:
            raw_path += "?" + req.query_string.decode()
        url = f"https://{host}{raw_path if raw_path.startswith('/') else '/' + raw_path}"
        headers = HTTPHeaders()
        for k, v in req.headers.items():
            if k.lower() == "host":
                continue
            headers[k] = v
        headers["Host"] = host
        body = req.get_data()
        aws_req = AWSPreparedRequest(method=req.method, url=url, headers=headers, body=body, stream_output=False)
        if service == "dynamodb":
            with _DYNAMODB_LOCK:
                result = botocore_stubber.process_request(aws_req)
        else:
            result = botocore_stubber.process_request(aws_req)
        if result is None:
            return Response(f'{{"message": "the local cloud does not serve {service} {req.method} {req.path}"}}',
                            status=501, content_type="application/json")
        status, out_headers, out_body = result
        resp = Response(out_body if out_body is not None else b"", status=int(status))
        resp.headers.clear()
        for k, v in (out_headers or {}).items():
            if k.lower() in _HOP or k.lower() == "status":
                continue
            resp.headers[k] = str(v)
        return resp
