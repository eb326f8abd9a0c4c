"""The API client signs for the region of the API it calls, whatever the session's region."""
from __future__ import annotations

import http.server
import threading

import boto3
import pytest

from infra.apiclient import api_region, signed_request


@pytest.mark.parametrize(("url", "region"), [
    ("https://abc123.execute-api.eu-west-1.amazonaws.com/prod/models", "eu-west-1"),
    ("https://abc123.execute-api.cn-north-1.amazonaws.com.cn/prod/", "cn-north-1"),
    ("http://127.0.0.1:3000/models", None),
    ("https://api.example.com/models", None),
])
def test_the_region_of_an_api_url(url, region):
    assert api_region(url) == region


def test_a_request_is_signed_for_the_url_region_not_the_session(monkeypatch):
    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen["auth"] = self.headers["Authorization"]
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # an execute-api host name resolved to the local server: the signature's scope is what counts
        host = "abc123.execute-api.eu-west-1.amazonaws.com"
        monkeypatch.setattr("urllib.request.urlopen", _to_local(server.server_address[1], host))
        session = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                                region_name="us-east-1")
        status, _, _ = signed_request("GET", f"https://{host}/prod/models", None, "iam", session=session)
    finally:
        server.shutdown()
    assert status == 200
    assert "/eu-west-1/execute-api/aws4_request" in seen["auth"]


def _to_local(port: int, host: str):
    import urllib.request

    real = urllib.request.urlopen

    def urlopen(request, timeout=None):
        local = urllib.request.Request(request.full_url.replace(f"https://{host}", f"http://127.0.0.1:{port}"),
                                       data=request.data, method=request.get_method(), headers=dict(request.headers))
        return real(local, timeout=timeout)

    return urlopen
