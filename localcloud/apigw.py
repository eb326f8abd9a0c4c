"""API Gateway (REST), locally: an HTTP server that routes like the template's resources and methods.

Each request is matched to a method of the template's REST API (literal path parts before `{param}`
before `{proxy+}`, an exact method before `ANY`), its authorization is checked as API Gateway would
(`AWS_IAM`: a SigV4 `Authorization` header, verified against the credentials the local cloud knows;
API key required: a valid `x-api-key`), and the proxy-integrated function is invoked with a REST
proxy event (version 1.0). Its answer is returned as API Gateway does; a function error or a
malformed answer is a 502.

`AWS_IAM` with an `authorizer` (the local cloud's `Authorizer`): credentials the local cloud issued
(an IAM user's ``AKIA…`` key, an assumed-role ``ASIA…`` session with its token) are checked as API
Gateway does — ``execute-api:Invoke`` on the method ARN
(``arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path>``) decided by the caller's
identity policies (a 403 ``User: <arn> is not authorized to perform: execute-api:Invoke on
resource: <arn>`` otherwise) — and the event's ``requestContext.identity`` names the caller as API
Gateway does (``userArn``, ``user``, ``caller``, ``accountId``, ``accessKey``). Other keys
(``testing``) are the account's administrator, as everywhere in the local cloud; with IAM off the
caller is named but nothing is refused.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from .httpserver import HTTPServer, ServerThread
from .template import ACCOUNT_ID

# API Gateway's REST API request payload quota (10 MB): a larger body is refused with a 413.
MAX_BODY_BYTES = 10 * 1024 * 1024
SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your "
                      "AWS Secret Access Key and signing method. Consult the service documentation for details.")


@dataclass
class Route:
    api_id: str
    path: str  # resource path, e.g. /models/{name}
    method: str  # GET, POST, … or ANY
    resource_id: str = ""
    authorization: str = "NONE"  # NONE | AWS_IAM | CUSTOM | COGNITO_USER_POOLS
    api_key_required: bool = False
    integration: str = "AWS_PROXY"  # AWS_PROXY | MOCK | …
    function_arn: str = ""
    mock_status: int = 200
    mock_headers: dict[str, str] = field(default_factory=dict)

    def match(self, path: str) -> dict[str, str] | None:
        """Path parameters when `path` (as sent: percent-encoded) matches; each is decoded once, so `%2F`
        stays inside its parameter and `%2520` becomes `%20`."""
        want = [p for p in self.path.split("/") if p]
        got = [p for p in path.split("/") if p]
        params: dict[str, str] = {}
        for i, part in enumerate(want):
            if part.endswith("+}"):
                if i >= len(got):
                    return None
                params[part[1:-2]] = "/".join(urllib.parse.unquote(g) for g in got[i:])
                return params
            if i >= len(got):
                return None
            if part.startswith("{") and part.endswith("}"):
                params[part[1:-1]] = urllib.parse.unquote(got[i])
            elif part != urllib.parse.unquote(got[i]):
                return None
        return params if len(want) == len(got) else None

    def specificity(self) -> tuple:
        parts = [p for p in self.path.split("/") if p]
        return (sum(1 for p in parts if not p.startswith("{")), -sum(1 for p in parts if p.endswith("+}")),
                len(parts), self.method != "ANY")


@dataclass
class RestApi:
    api_id: str
    name: str
    stages: list[str] = field(default_factory=list)
    binary_media_types: list[str] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)


def _error(status: int, message: str, error_type: str) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json", "x-amzn-ErrorType": error_type}, json.dumps(
        {"message": message}).encode()


# --------------------------------------------------------------------------- SigV4


def _sigv4_check(method: str, raw_path: str, raw_query: str, headers: dict[str, str], body: bytes,
                 secrets: Callable[[str], str | None]) -> str | None:
    """None if the request is signed correctly for execute-api, else API Gateway's 403 message."""
    auth = headers.get("authorization", "")
    if not auth:
        return "Missing Authentication Token"
    m = re.match(r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})\s*$",
                 auth)
    if not m:
        return (f"Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters "
                f"of an AWS4-HMAC-SHA256 signature. Authorization={auth[:60]}")
    credential, signed_headers, signature = m.groups()
    try:
        access_key, date, cred_region, service, terminator = credential.split("/")
    except ValueError:
        return f"Credential should be scoped to a valid region and service. Credential={credential}"
    if service != "execute-api" or terminator != "aws4_request":
        return f"Credential should be scoped to correct service: 'execute-api'. Credential={credential}"
    amz_date = headers.get("x-amz-date", "")
    try:
        when = _dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.UTC)
    except ValueError:
        return "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
    if abs((_dt.datetime.now(_dt.UTC) - when).total_seconds()) > 15 * 60:
        return f"Signature expired: {amz_date} is now earlier than the allowed 15 minute window."
    if "host" not in signed_headers.split(";"):
        return "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
    # execute-api signs the payload's own hash: a body other than the one signed (or an
    # x-amz-content-sha256 of UNSIGNED-PAYLOAD, which S3 alone accepts) does not match the signature
    payload_hash = hashlib.sha256(body).hexdigest()
    claimed = headers.get("x-amz-content-sha256")
    if claimed is not None and claimed.strip().lower() != payload_hash:
        return SIGNATURE_MISMATCH
    secret = secrets(access_key)
    if secret is None:
        return None  # a key the local cloud does not know: accepted when well-formed (see docs/local.md)
    # canonical request (non-S3: path segments URI-encoded twice, as botocore does)
    path = raw_path or "/"
    canonical_path = urllib.parse.quote(path, safe="/~")
    query = sorted(
        (urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~"))
        for k, v in urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
    canonical_query = "&".join(f"{k}={v}" for k, v in query)
    names = signed_headers.split(";")
    canonical_headers = "".join(f"{n}:{' '.join(headers.get(n, '').split())}\n" for n in names)
    canonical = "\n".join([method, canonical_path, canonical_query, canonical_headers, signed_headers, payload_hash])
    scope = f"{date}/{cred_region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (date, cred_region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return SIGNATURE_MISMATCH
    return None


# --------------------------------------------------------------------------- the server


class LocalApiServer(ServerThread):
    """Serves the template's REST APIs on one port (path optionally prefixed by a stage name)."""

    def __init__(self, apis: list[RestApi], invoke: Callable[[str, dict], tuple[bytes, bool]],
                 port: int = 3000, host: str = "127.0.0.1", region: str = "us-east-1",
                 account_id: str = ACCOUNT_ID, secrets: Callable[[str], str | None] = lambda k: None,
                 api_keys: Callable[[], dict[str, str]] = dict, log: Callable[[str], None] = print,
                 authorizer: Any = None):
        self.apis = apis
        self.authorizer = authorizer  # localcloud.authorization.Authorizer (None: signatures only)
        self.invoke = invoke
        self.region = region
        self.account_id = account_id
        self.secrets = secrets
        self.api_keys = api_keys
        self.log = log
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length > MAX_BODY_BYTES or length < 0:
                    # API Gateway's 10 MB request quota: refused, nothing is routed or invoked; the
                    # body is read and dropped (up to a bound) so that the client gets the answer
                    status, headers, out = (_error(413, "Request Too Long", "RequestTooLongException") if length > 0
                                            else _error(400, "Bad Request", "BadRequestException"))
                    left = length if 0 < length <= 8 * MAX_BODY_BYTES else 0
                    while left > 0:
                        chunk = self.rfile.read(min(left, 1 << 20))
                        if not chunk:
                            break
                        left -= len(chunk)
                    self.close_connection = True
                    headers["Connection"] = "close"
                else:
                    body = self.rfile.read(length) if length else b""
                    status, headers, out = outer.handle(self.command, self.path, self.headers, body,
                                                        self.client_address[0])
                self.send_response(status)
                for k, vs in headers.items():
                    for v in (vs if isinstance(vs, list) else [vs]):
                        self.send_header(k, str(v))
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

            def log_message(self, fmt: str, *args: Any) -> None:
                outer.log(f"[api] {self.address_string()} {fmt % args}")

        server = HTTPServer((host, port), Handler)  # a listen backlog of 128, not 5
        super().__init__(server, name="local-api")

    # -- AWS_IAM: who the caller is and whether it may invoke the method
    def _secret(self, access_key: str) -> str | None:
        """The secret key of ``access_key``: the cloud's own credentials and IAM users' keys
        (``secrets``), else an assumed-role session's (its ``ASIA…`` key was issued by the local STS)."""
        secret = self.secrets(access_key)
        if secret is None and access_key.startswith("ASIA"):
            try:
                from moto.sts.models import sts_backends

                for session in list(sts_backends[self.account_id]["aws"].assumed_roles):
                    if session.access_key_id == access_key:
                        return session.secret_access_key
            except Exception:  # noqa: BLE001 - no STS state: the key is not one of this cloud's
                return None
        return secret

    def _authorize(self, access_key: str, token: str | None, method_arn: str,
                   identity: dict[str, Any]) -> tuple[int, dict, bytes] | None:
        """Name the caller in ``identity`` as API Gateway does and decide ``execute-api:Invoke`` on
        ``method_arn`` for credentials the local cloud issued; API Gateway's 403 when refused."""
        if self.authorizer is None:
            return None
        from .authorization import ADMIN, AccessDenied

        try:
            principal = self.authorizer.principal(access_key, token)
        except AccessDenied as err:
            return _error(403, str(err), "UnrecognizedClientException")
        if principal is ADMIN:
            return None  # a key the cloud did not issue: the account's administrator (docs/local.md)
        identity.update(self._caller(principal, access_key))
        if not getattr(self.authorizer, "enforce", True):
            return None
        decision = self.authorizer.allowed(principal, "execute-api:Invoke", method_arn)
        if decision.allowed:
            return None
        self.authorizer.record(principal, "execute-api:Invoke", method_arn, decision)
        message = f"User: {principal.arn} is not authorized to perform: execute-api:Invoke on resource: {method_arn}"
        if "explicit deny" in decision.reason:
            message += " with an explicit deny"
        self.log(f"[api] {message}")
        # API Gateway's own AccessDeniedException body is {"Message": …}; the stack's DEFAULT_4XX
        # gateway response reshapes it to {"message": …}: both keys, as authorization.py answers JSON.
        return 403, {"Content-Type": "application/json", "x-amzn-ErrorType": "AccessDeniedException"}, json.dumps(
            {"message": message, "Message": message}).encode()

    def _caller(self, principal: Any, access_key: str) -> dict[str, Any]:
        """``requestContext.identity`` of an IAM caller as API Gateway fills it: an IAM user is
        ``user``/``caller`` = its unique id (``AIDA…``); an assumed-role session is
        ``<role unique id>:<session name>`` and ``userArn`` the session's STS ARN."""
        arn = principal.arn
        unique = arn.rsplit("/", 1)[-1]
        try:
            from moto.iam.models import iam_backends

            iam = iam_backends[self.account_id]["aws"]
            if principal.role_arn:
                role_name, session = principal.role_arn.rsplit("/", 1)[-1], arn.rsplit("/", 1)[-1]
                role = next((r for r in list(iam.roles.values()) if r.name == role_name), None)
                unique = f"{role.id if role is not None else role_name}:{session}"
            else:
                user = iam.users.get(arn.rsplit("/", 1)[-1])
                unique = user.id if user is not None else unique
        except Exception:  # noqa: BLE001 - moto's IAM state unavailable: the names of the ARN
            pass
        return {"accessKey": access_key, "accountId": principal.account or self.account_id, "caller": unique,
                "user": unique, "userArn": arn}

    # -- routing
    def find(self, path: str, method: str) -> tuple:
        """(api, stage, route, path parameters, resource path as API Gateway sees it) or Nones."""
        candidates: list[tuple[RestApi, str, str]] = []
        parts = [p for p in path.split("/") if p]
        for api in self.apis:
            if parts and parts[0] in api.stages:
                candidates.append((api, parts[0], "/" + "/".join(parts[1:])))
        for api in self.apis:
            candidates.append((api, api.stages[0] if api.stages else "prod", path))
        for api, stage, p in candidates:
            best = None
            for r in api.routes:
                if r.method not in (method, "ANY"):
                    continue
                params = r.match(p)
                if params is not None and (best is None or r.specificity() > best[0].specificity()):
                    best = (r, params)
            if best:
                return api, stage, best[0], best[1], p
        return None, None, None, None, None

    def handle(self, method: str, raw: str, headers: Any, body: bytes, source_ip: str) -> tuple[int, dict, bytes]:
        split = urllib.parse.urlsplit(raw)
        raw_path, raw_query = split.path or "/", split.query
        # routed on the path as sent: event["path"] stays percent-encoded, path parameters are decoded once
        api, stage, route, params, path = self.find(raw_path, method)
        if route is None:
            path = urllib.parse.unquote(raw_path)
            return _error(404, f"No method found matching route {path} for http method {method}.", "NotFoundException")
        hdrs: dict[str, list[str]] = {}
        for k, v in headers.items():
            hdrs.setdefault(k, []).append(v)
        lower = {k.lower(): vs[-1] for k, vs in hdrs.items()}
        request_id = str(uuid.uuid4())
        identity: dict[str, Any] = {"sourceIp": source_ip, "userAgent": lower.get("user-agent"),
                                    "accessKey": None, "accountId": None, "caller": None, "user": None,
                                    "userArn": None, "apiKey": None, "apiKeyId": None,
                                    "cognitoIdentityPoolId": None, "cognitoIdentityId": None,
                                    "cognitoAuthenticationType": None, "cognitoAuthenticationProvider": None}
        if route.authorization == "AWS_IAM":
            problem = _sigv4_check(method, raw_path, raw_query, lower, body, self._secret)
            if problem:
                kind = "MissingAuthenticationTokenException" if problem == "Missing Authentication Token" \
                    else "IncompleteSignatureException" if "requires" in problem else "InvalidSignatureException"
                return _error(403, problem, kind)
            access_key = re.search(r"Credential=([^/]+)/", lower["authorization"]).group(1)
            identity.update(accessKey=access_key, accountId=self.account_id, caller=access_key,
                            user=access_key, userArn=f"arn:aws:iam::{self.account_id}:user/{access_key}")
            method_arn = (f"arn:aws:execute-api:{self.region}:{self.account_id}:{api.api_id}/{stage}/{method}"
                          f"{urllib.parse.unquote(path)}")
            refused = self._authorize(access_key, lower.get("x-amz-security-token"), method_arn, identity)
            if refused:
                return refused
        elif route.authorization in ("CUSTOM", "COGNITO_USER_POOLS"):
            self.log(f"[api] authorizer type {route.authorization} is not emulated: request let through")
        if route.api_key_required:
            key = lower.get("x-api-key")
            keys = self.api_keys()
            if not key or key not in keys:
                return _error(403, "Forbidden", "ForbiddenException")
            identity.update(apiKey=key, apiKeyId=keys[key])
        if route.integration == "MOCK":
            return route.mock_status, dict(route.mock_headers), b""
        if route.integration != "AWS_PROXY":
            return _error(500, f"integration type {route.integration} is not emulated locally",
                          "InternalServerErrorException")
        query = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
        mv_query: dict[str, list[str]] = {}
        for k, v in query:
            mv_query.setdefault(k, []).append(v)
        content_type = lower.get("content-type", "")
        binary = any(_media_match(t, content_type) for t in api.binary_media_types) and bool(body)
        now = time.time()
        event = {
            "resource": route.path,
            "path": path,
            "httpMethod": method,
            "headers": {k: vs[-1] for k, vs in hdrs.items()} or None,
            "multiValueHeaders": hdrs or None,
            "queryStringParameters": {k: vs[-1] for k, vs in mv_query.items()} or None,
            "multiValueQueryStringParameters": mv_query or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "requestContext": {
                "resourceId": route.resource_id, "resourcePath": route.path, "httpMethod": method,
                "extendedRequestId": request_id[:16], "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000",
                                                                                  time.gmtime(now)),
                "path": f"/{stage}{path}", "accountId": self.account_id, "protocol": "HTTP/1.1",
                "stage": stage, "domainPrefix": api.api_id, "requestTimeEpoch": int(now * 1000),
                "requestId": request_id, "identity": identity,
                "domainName": f"{api.api_id}.execute-api.{self.region}.amazonaws.com", "apiId": api.api_id,
            },
            "body": (base64.b64encode(body).decode() if binary else body.decode("utf-8", "replace")) if body else None,
            "isBase64Encoded": binary,
        }
        try:
            payload, failed = self.invoke(route.function_arn, event)
        except TimeoutError:
            return _error(504, "Endpoint request timed out", "InternalServerErrorException")
        except Exception as err:  # noqa: BLE001 - Lambda refused the invocation
            code = (getattr(err, "response", None) or {}).get("Error", {}).get("Code")
            if code is None:
                raise
            # A throttled (429) or too large (413) invocation never reaches the function: API Gateway
            # answers its integration failure, a 500 Internal server error (DEFAULT_5XX).
            self.log(f"[api] {method} {path}: Lambda refused the invocation: {code}: {err}")
            return _error(500, "Internal server error", "InternalServerErrorException")
        if failed:
            self.log(f"[api] {method} {path}: function error {payload[:500]!r}")
            return _error(502, "Internal server error", "InternalServerErrorException")
        try:
            out = json.loads(payload)
            status = int(out.get("statusCode", 200)) if isinstance(out, dict) else None
            if status is None or not isinstance(out.get("body", ""), (str, type(None))):
                raise ValueError("malformed proxy response")
        except (ValueError, TypeError, AttributeError) as err:
            self.log(f"[api] {method} {path}: malformed Lambda proxy response ({err}): {payload[:300]!r}")
            return _error(502, "Internal server error", "InternalServerErrorException")
        resp_headers: dict[str, Any] = {}
        for k, v in (out.get("multiValueHeaders") or {}).items():
            resp_headers[k] = [str(x) for x in v]
        for k, v in (out.get("headers") or {}).items():
            resp_headers[k] = str(v)
        resp_headers.setdefault("Content-Type", "application/json")
        resp_headers["x-amzn-RequestId"] = request_id
        text = out.get("body") or ""
        data = base64.b64decode(text) if out.get("isBase64Encoded") else text.encode()
        return status, resp_headers, data


def _media_match(pattern: str, content_type: str) -> bool:
    ct = content_type.split(";")[0].strip().lower()
    pattern = pattern.replace("~1", "/").lower()
    if pattern == "*/*":
        return True
    if pattern.endswith("/*"):
        return ct.startswith(pattern[:-1])
    return ct == pattern
