"""Which resolver answers a request: the plainly valid ones go to the serving resolver.

``plain_request(event)`` looks at the raw API Gateway REST event once, before any resolver runs
(see docs/api.md, "Request validation"). It answers ``None`` when the request is not plainly valid
and must be answered by the validating resolver (``functions/inference/openapi.py``, pydantic),
which words the errors; otherwise the routing context the serving resolver's routes read: for a
prediction, the body's instances (parsed here, once) and the pinned version.

Plainly valid, for the two routes that take input:

- ``POST /models/{name}/predict``: content type absent or ``application/json…``; the body
  (base64-decoded when ``isBase64Encoded``, as Powertools decodes it) a JSON object with the key
  ``instances``, holding a list, and at most one other key, ``ids`` (any value: the caller's
  inference ids are checked by ``service.inference_ids`` on both resolvers alike, with the same
  messages); ``version`` absent or one value of plain decimal digits.
- ``GET /models/{name}/versions/{version}``: ``version`` plain decimal digits.

The routes' paths are recognised generously (any path of that shape, even one no route takes, is
checked): a request sent to the validating resolver that the serving one could have answered gets
the same answer, only later; the reverse could not happen. Every other request (the other routes,
unknown routes, malformed events) is the serving resolver's, which answers or fails as before.
"""
from __future__ import annotations

import base64
from typing import Any, NamedTuple

from aws_lambda_powertools.event_handler import content_types
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from functions.core.jsonio import loads

PREDICTION = "prediction"  # the routing context key of a plain prediction


class Prediction(NamedTuple):
    """A plain ``POST /models/{name}/predict``: the body's instances (never copied), the pinned version,
    the caller's ids (None when not sent)."""

    instances: list
    version: int | None
    ids: Any = None


def plain_int(raw: Any) -> int | None:
    """A positive integer written as plain decimal digits (what pydantic reads the same way), or None."""
    if type(raw) is str and 0 < len(raw) <= 18 and raw.isascii() and raw.isdigit() and raw[0] != "0":
        return int(raw)
    return None


def plain_request(event: Any) -> dict[str, Any] | None:
    """The serving resolver's routing context if ``event`` is plainly valid, None if it is not."""
    try:
        method, path = event["httpMethod"].upper(), event["path"]
    except Exception:  # noqa: BLE001 - not an API Gateway event: the serving resolver fails as it always did
        return {}
    if type(path) is not str or not path.startswith("/models/"):
        return {}
    if method == "POST" and "/predict" in path:
        prediction = _plain_prediction(event)
        return None if prediction is None else {PREDICTION: prediction}
    if method == "GET" and "/versions/" in path:
        parts = path.split("/")
        if len(parts) != 5 or parts[3] != "versions" or plain_int(parts[4]) is None:
            return None
    return {}


def _plain_prediction(event: dict) -> Prediction | None:
    # As Powertools reads the content type (event.headers.get("content-type"): lower-cased keys,
    # the last one wins) without building a case-insensitive copy of every header.
    content_type: Any = ""
    try:
        for key, value in (event.get("headers") or {}).items():
            if key.lower() == "content-type":
                content_type = value
    except (AttributeError, TypeError):  # not an API Gateway event's headers
        return None
    if type(content_type) is not str:
        return None
    content_type = content_type.strip()
    # Media types are case-insensitive (RFC 9110 8.3.1): APPLICATION/JSON is JSON too.
    if content_type and not content_type.lower().startswith(content_types.APPLICATION_JSON):
        return None
    try:
        # Powertools' json_body (decoded_body, then the resolver's deserializer), on the raw event.
        body = event.get("body")
        if event.get("isBase64Encoded") and body:
            body = base64.b64decode(body.encode()).decode()
        body = loads(body) if body else None
        # Its resolved_query_string_parameters, read only when there is a query string at all.
        values = (APIGatewayProxyEvent(event).resolved_query_string_parameters.get("version")
                  if event.get("queryStringParameters") or event.get("multiValueQueryStringParameters") else None)
    except Exception:  # noqa: BLE001 - undecodable, not JSON, odd parameters: the validating resolver says why
        return None
    if type(body) is not dict or type(body.get("instances")) is not list:
        return None
    if len(body) != 1 and (len(body) != 2 or "ids" not in body):
        return None
    if values is None:
        return Prediction(body["instances"], None, body.get("ids"))
    if type(values) is not list or len(values) != 1:
        return None
    version = plain_int(values[0])
    return None if version is None else Prediction(body["instances"], version, body.get("ids"))
