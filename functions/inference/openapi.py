"""The inference API's validating resolver and its OpenAPI document.

``validating_app()`` is the API with Powertools' OpenAPI request validation (pydantic): the same
routes (``functions.inference.service``), answers and errors as the serving resolver
``functions.inference.handler.app``, with the parameters and the body declared as types. The
handler chooses it for every request that is not plainly valid (``functions/inference/plain.py``;
see docs/api.md, "Request validation"), so malformed requests get pydantic's precise messages;
it is also what the OpenAPI document is generated from (docs, fuzz tests). It is built on first
use: a warm, well-formed request never imports pydantic.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from functions.core.jsonio import loads
from functions.inference import service

TITLE = "Shipyard inference API"
VERSION = "1.0.0"
DESCRIPTION = (
    "Predictions from the production (or a pinned) version of each model. Errors are JSON "
    '{"message": "..."}: 400 malformed body / wrong features / wrong types / non-finite numbers, '
    "404 unknown model, version or route, 409 no production version yet, 413 too many instances, "
    "503 artifact failed its sha256 check."
)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[Any] = Field(
        description="Records {\"feature\": value} or arrays of values in schema order.",
        json_schema_extra={"items": {"anyOf": [{"type": "object"}, {"type": "array"}]}},
    )
    # Any: checked by service.inference_ids on both resolvers alike (the same messages: a number
    # id is told to be sent as a string); documented as what it must be.
    ids: Any = Field(
        default=None,
        description="Optional: the caller's inference ids, one per instance, in order, unique within the "
                    "request; answered and captured as inference_ids. Absent (or null): generated as "
                    "<request id>-<index>.",
        json_schema_extra={"type": "array", "items": {"type": "string", "minLength": 1,
                                                      "maxLength": service.MAX_ID_LENGTH},
                           "uniqueItems": True},
    )


_ERROR = {"type": "object", "required": ["message"],
          "properties": {"message": {"type": "string", "description": "what was wrong and what was expected"}}}


def _doc(ok: str, ok_schema: dict, *errors: int) -> dict[int, dict]:
    """OpenAPI responses of a route: its answer and the errors of the contract's table."""
    texts = {400: "malformed body, wrong features or types, non-finite numbers, bad parameters",
             404: "unknown model, version or route", 409: "no production version yet",
             413: "too many instances", 503: "artifact failed its sha256 check"}
    out = {200: {"description": ok, "content": {"application/json": {"schema": ok_schema}}}}
    for code in errors:
        out[code] = {"description": texts[code], "content": {"application/json": {"schema": _ERROR}}}
    return out


_VERSION_SUMMARY = {"type": "object", "properties": {
    "version": {"type": "integer"}, "status": {"type": "string"}, "metrics": {"type": "object"},
    "created_at": {"type": "string"}}}
_MODELS = {"type": "object", "required": ["models"], "properties": {"models": {"type": "array", "items": {
    "type": "object", "properties": {"name": {"type": "string"},
                                     "production": {"type": ["integer", "null"]}}}}}}
_MODEL = {"type": "object", "required": ["name", "aliases", "versions"], "properties": {
    "name": {"type": "string"},
    "aliases": {"type": "object", "additionalProperties": {"type": ["integer", "null"]}},
    "versions": {"type": "array", "items": _VERSION_SUMMARY},
    "release": {"type": ["object", "null"], "description": "the canary or shadow release running now, else null",
                "properties": {"id": {"type": "string"}, "mode": {"type": "string", "enum": ["canary", "shadow"]},
                               "version": {"type": "integer"}, "production": {"type": ["integer", "null"]},
                               "percent": {"type": ["number", "null"]}, "bake": {"type": ["integer", "null"]},
                               "started_at": {"type": "string"}}}}}
_VERSION = {"type": "object", "description": "the version record, lineage included",
            "properties": {"model": {"type": "string"}, "version": {"type": "integer"},
                           "status": {"type": "string"}, "lineage": {"type": "object"},
                           "schema": {"type": "object"}, "metrics": {"type": "object"}}}
_PREDICTION = {"type": "object", "required": ["model", "version", "predictions", "inference_ids"], "properties": {
    "model": {"type": "string"}, "version": {"type": "integer"},
    "predictions": {"type": "array"},
    "inference_ids": {"type": "array", "items": {"type": "string"},
                      "description": "one per instance, in order: the caller's ids when it sent them, else "
                                     "<request id>-<index>; captured with the prediction"},
    "probabilities": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                      "description": "classifiers only, one row per instance, columns as in classes"},
    "classes": {"type": "array", "description": "classifiers only"}}}

_EXPECTED = {
    "body": ('a JSON object {"instances": [...]} with records {"feature": value} or arrays in schema order '
             '(and optionally "ids": [...], one string per instance)'),
    "query": "version: a positive integer",
    "path": "version: a positive integer",
}


@lru_cache(maxsize=1)
def validating_app() -> APIGatewayRestResolver:
    """The API with OpenAPI request validation: routes, their documentation, the error answers."""
    app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=loads)

    @app.get("/models", summary="List models and their production versions", responses=_doc("models", _MODELS))
    def list_models():
        return service.list_models()

    @app.get("/models/<name>", summary="A model's aliases and versions", responses=_doc("the model", _MODEL, 404))
    def get_model(name: Annotated[str, Path(description="model name")]):
        return service.get_model(name)

    @app.get("/models/<name>/versions/<version>", summary="One version record, lineage included",
             responses=_doc("the version record", _VERSION, 400, 404))
    def get_version(
        name: Annotated[str, Path(description="model name")],
        version: Annotated[int, Path(ge=1, description="version number")],
    ):
        return service.get_version(name, version)

    @app.post("/models/<name>/predict", summary="Predict with the production (or a pinned) version",
              responses=_doc("predictions, with the version in the X-Model-Version header", _PREDICTION,
                             400, 404, 409, 413, 503))
    def predict(
        name: Annotated[str, Path(description="model name")],
        request: Annotated[PredictRequest, Body(description='{"instances": [...], "ids": [...] (optional)}')],
        version: Annotated[int | None, Query(ge=1, description="pin this version instead of production")] = None,
    ):
        return service.predict(name, request.instances, version, app.current_event.raw_event, request.ids)

    service.install_error_handlers(app)

    @app.exception_handler(RequestValidationError)
    def _validation_error(exc: RequestValidationError):
        parts, where = [], "body"
        for err in exc.errors()[:3]:
            loc = [str(p)[:40] for p in err.get("loc", ())]  # locations can echo (form) input: keep short
            where = loc[0] if loc else where
            if err.get("type") == "json_invalid":
                detail = (err.get("ctx") or {}).get("error") or "invalid JSON"
                parts.append(f"body is not valid JSON ({detail})")
            else:
                parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
        return service.error_response(400, f"malformed request: {'; '.join(parts)}; "
                                           f"expected {_EXPECTED.get(where, _EXPECTED['body'])}")

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported_content_type(exc: RequestUnsupportedContentType):
        return service.error_response(400, "malformed request: unsupported content type; "
                                           f"expected {_EXPECTED['body']} sent as application/json")

    return app


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI 3 document as a dict."""
    doc = json.loads(validating_app().get_openapi_json_schema(title=TITLE, version=VERSION,
                                                              description=DESCRIPTION))
    # Powertools documents its default 422 for validation errors; this API answers 400 instead.
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas = doc.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(unused, None)
    return doc


def openapi_json() -> str:
    """The OpenAPI 3 document as JSON text."""
    return json.dumps(openapi_schema(), indent=2)


if __name__ == "__main__":
    print(openapi_json())
