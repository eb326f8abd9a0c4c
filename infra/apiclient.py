"""The HTTP client of Shipyard's API: what ``shipyard predict`` and ``shipyard demo`` call it with.

``signed_request`` makes one request, SigV4-signed for ``execute-api`` when the API's auth is
``iam`` (credentials from the standard AWS environment, or the boto3 session given), with the
``x-api-key`` header when it is ``api_key``, and plain when ``none``. HTTP error statuses are
answers, not exceptions; what the caller can act on (no credentials, no API key, API unreachable)
raises :class:`ApiClientError`. ``json_answer`` reads an answer's body in the API's shapes.
"""
from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request


class ApiClientError(Exception):
    """The request could not be made: no credentials, no API key, the API unreachable."""


_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


def api_region(url: str) -> str | None:
    """The region of an execute-api URL (``https://<id>.execute-api.<region>.amazonaws.com/…``):
    the region a request to it must be signed for, whatever the session's; None for another host."""
    match = _EXECUTE_API_HOST.match(urllib.parse.urlsplit(url).hostname or "")
    return match.group(1) if match else None


def signed_request(method: str, url: str, body: bytes | None, auth: str, api_key: str | None = None,
                   session=None) -> tuple[int, dict, bytes]:
    """One HTTP request to the API, SigV4-signed for `execute-api` when auth is iam."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if auth == "iam":
        import boto3
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        session = session or boto3.Session()
        credentials = session.get_credentials()
        if credentials is None:
            raise ApiClientError("the API uses IAM auth but no AWS credentials were found (set AWS_PROFILE or keys)")
        region = api_region(url) or session.region_name or os.environ.get("AWS_REGION") or "us-east-1"
        aws_request = AWSRequest(method=method, url=url, data=body or b"", headers=headers)
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(aws_request)
        headers = dict(aws_request.headers.items())
    elif auth == "api_key":
        if not api_key:
            raise ApiClientError("the API uses an API key: pass --api-key or set SHIPYARD_API_KEY")
        headers["x-api-key"] = api_key
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()
    except urllib.error.URLError as err:
        raise ApiClientError(f"cannot reach the API at {url}: {err.reason}") from err


def json_answer(body: bytes) -> dict:
    """An API answer's body as JSON; a body that is not JSON (a proxy's HTML error page, say)
    becomes ``{"message": <its start>}``, the API's own error shape."""
    try:
        return json.loads(body or b"{}")
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8/16/32
        return {"message": body.decode(errors="replace")[:500]}
