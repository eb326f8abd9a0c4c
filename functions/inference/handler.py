"""Inference function: the Shipyard HTTP API (API Gateway REST proxy -> Powertools resolver).

Thin by design: routes parse and shape; the registry, artifacts, schema and ONNX model modules in
``functions.core`` hold the rules. ``ModelServer`` only keeps what a warm Lambda should keep:
ONNX sessions per (model, version) and production-alias lookups for ``ALIAS_TTL_SECONDS``.

Environment: REGISTRY_TABLE, ARTIFACT_BUCKET, SHIPYARD_MODELS, ALIAS_TTL_SECONDS (60),
MAX_INSTANCES (1000), CAPTURE_STREAMS, CAPTURE_SAMPLE_RATE (see docs/architecture.md).
"""
from __future__ import annotations

import binascii
import json
import os
import time
import warnings
from collections import OrderedDict
from typing import Annotated, Any, Callable
from urllib.parse import unquote

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from functions.core.artifacts import IntegrityError, get_verified
from functions.core.capture import Capture
from functions.core.onnx_model import ModelFormatError, OnnxModel, PredictionError
from functions.core.registry import ModelNotFound, Registry, VersionNotFound
from functions.core.schema import FeatureSchema, SchemaError

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-inference"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Shipyard"))
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-inference"))

# Reads publish no metric by design; Powertools would warn on each of them.
warnings.filterwarnings("ignore", message="No application metrics to publish")

# Version numbers are stored zero-padded to 10 digits; anything larger cannot exist.
MAX_VERSION = 9_999_999_999
MAX_NAME_LENGTH = 255
MAX_SESSIONS = 16
MAX_ALIAS_ENTRIES = 1024


class ApiError(Exception):
    """An answer other than 200: status code and a message saying what was wrong and what was expected."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# ---- serving state -----------------------------------------------------------------------------


class ModelServer:
    """Resolves (model, version) to a loaded, verified OnnxModel, with a warm-Lambda cache."""

    def __init__(self, registry: Registry, s3: Any, bucket: str, capture: Capture, *,
                 alias_ttl: float = 60.0, max_instances: int = 1000,
                 clock: Callable[[], float] = time.monotonic):
        self.registry = registry
        self.s3 = s3
        self.bucket = bucket
        self.capture = capture
        self.alias_ttl = alias_ttl
        self.max_instances = max_instances
        self.clock = clock
        self._sessions: OrderedDict[tuple[str, int], OnnxModel] = OrderedDict()
        self._aliases: dict[str, tuple[float, int | None]] = {}

    @classmethod
    def from_env(cls, **overrides) -> "ModelServer":
        import boto3

        kwargs: dict[str, Any] = {
            "alias_ttl": float(os.environ.get("ALIAS_TTL_SECONDS") or 60),
            "max_instances": int(os.environ.get("MAX_INSTANCES") or 1000),
        }
        kwargs.update(overrides)
        registry = kwargs.pop("registry", None) or Registry.from_env()
        s3 = kwargs.pop("s3", None) or boto3.client("s3")
        bucket = kwargs.pop("bucket", None) or os.environ["ARTIFACT_BUCKET"]
        capture = kwargs.pop("capture", None) or Capture.from_env()
        return cls(registry, s3, bucket, capture, **kwargs)

    def production(self, name: str) -> int:
        """The production version, read at most once per ALIAS_TTL_SECONDS per model."""
        now = self.clock()
        hit = self._aliases.get(name)
        if hit is None or now - hit[0] >= self.alias_ttl:
            if len(self._aliases) >= MAX_ALIAS_ENTRIES:
                self._aliases.clear()  # bounded memory under many distinct (unknown) names
            hit = (now, self.registry.get_alias(name, "production"))
            self._aliases[name] = hit
        version = hit[1]
        if version is None:
            self.registry.get_model(name)  # raises ModelNotFound for an unknown model
            raise ApiError(409, f"model {name!r} has no production version yet; train and promote one, "
                                "or pin a version with ?version=N")
        return int(version)

    def model(self, name: str, version: int) -> OnnxModel:
        """The verified model of one version, loaded once per warm Lambda."""
        key = (name, version)
        if key in self._sessions:
            self._sessions.move_to_end(key)
            return self._sessions[key]
        try:
            record = self.registry.get_version(name, version)
        except VersionNotFound:
            self.registry.get_model(name)  # an unknown model says so rather than "no version"
            raise
        if not record.get("artifact_key") or not record.get("schema"):
            raise ApiError(404, f"model {name!r} version {version} has no model artifact (status "
                                f"{record.get('status')!r}); expected a trained version")
        try:
            data = get_verified(self.s3, self.bucket, record["artifact_key"], record.get("artifact_sha256"))
        except IntegrityError:
            metrics.add_metric(name="ArtifactIntegrityFailures", unit=MetricUnit.Count, value=1)
            raise
        except (ClientError, BotoCoreError) as exc:
            raise ApiError(503, f"model {name!r} version {version}: artifact unavailable ({exc})") from exc
        try:
            loaded = OnnxModel.from_bytes(data, FeatureSchema.from_dict(record["schema"]))
        except (SchemaError, ModelFormatError) as exc:
            raise ApiError(503, f"model {name!r} version {version} cannot be served: {exc}") from exc
        self._sessions[key] = loaded
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return loaded


_server: ModelServer | None = None


def server() -> ModelServer:
    global _server
    if _server is None:
        _server = ModelServer.from_env()
    return _server


def reset(**overrides) -> ModelServer | None:
    """Drop the warm state; with overrides (clock, registry, s3, ...) build it now (tests)."""
    global _server
    _server = ModelServer.from_env(**overrides) if overrides else None
    return _server


# ---- API ---------------------------------------------------------------------------------------


def _loads(text: str) -> Any:
    # Powertools turns only JSONDecodeError into a validation error; too-deep nesting and
    # over-long integers raise other errors, which must be a 400 as well.
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise json.JSONDecodeError(f"unparseable JSON ({type(exc).__name__}: {str(exc)[:100]})", text, 0) from None


app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=_loads)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[Any] = Field(
        description="Records {\"feature\": value} or arrays of values in schema order.",
        json_schema_extra={"items": {"anyOf": [{"type": "object"}, {"type": "array"}]}},
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
    "versions": {"type": "array", "items": _VERSION_SUMMARY}}}
_VERSION = {"type": "object", "description": "the version record, lineage included",
            "properties": {"model": {"type": "string"}, "version": {"type": "integer"},
                           "status": {"type": "string"}, "lineage": {"type": "object"},
                           "schema": {"type": "object"}, "metrics": {"type": "object"}}}
_PREDICTION = {"type": "object", "required": ["model", "version", "predictions"], "properties": {
    "model": {"type": "string"}, "version": {"type": "integer"},
    "predictions": {"type": "array"},
    "probabilities": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                      "description": "classifiers only, one row per instance, columns as in classes"},
    "classes": {"type": "array", "description": "classifiers only"}}}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps(body, allow_nan=False), headers=headers)


def _error(status: int, message: str) -> Response:
    return _json(status, {"message": message})


def _model_name(raw: str) -> str:
    """The decoded model name of the path; names that cannot be a model are unknown models.

    API Gateway REST APIs keep the path percent-encoded and Powertools matches on it, so the
    segment is decoded here. Invalid names never reach DynamoDB.
    """
    name = unquote(raw)
    ok = 0 < len(name) <= MAX_NAME_LENGTH and "#" not in name and name.isprintable()
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        ok = False
    if not ok:
        raise ModelNotFound("unknown model: a model name is 1 to 255 printable characters without '#'")
    return name


def _check_version(name: str, version: int) -> int:
    if version > MAX_VERSION:
        raise VersionNotFound(f"model {name!r} has no version above {MAX_VERSION}")
    return version


@app.get("/models", summary="List models and their production versions", responses=_doc("models", _MODELS))
def list_models():
    return _json(200, {"models": server().registry.list_models()})


@app.get("/models/<name>", summary="A model's aliases and versions", responses=_doc("the model", _MODEL, 404))
def get_model(name: Annotated[str, Path(description="model name")]):
    registry = server().registry
    name = _model_name(name)
    model = registry.get_model(name)
    aliases = {"production": None, **(model.get("aliases") or {})}
    versions = [{k: v.get(k) for k in ("version", "status", "metrics", "created_at")}
                for v in registry.list_versions(name)]
    return _json(200, {"name": name, "aliases": aliases, "versions": versions})


@app.get("/models/<name>/versions/<version>", summary="One version record, lineage included",
         responses=_doc("the version record", _VERSION, 400, 404))
def get_version(
    name: Annotated[str, Path(description="model name")],
    version: Annotated[int, Path(ge=1, description="version number")],
):
    registry = server().registry
    name = _model_name(name)
    try:
        record = registry.get_version(name, _check_version(name, version))
    except VersionNotFound:
        registry.get_model(name)  # an unknown model says so rather than "no version"
        raise
    return _json(200, record)


@app.post("/models/<name>/predict", summary="Predict with the production (or a pinned) version",
          responses=_doc("predictions, with the version in the X-Model-Version header", _PREDICTION,
                         400, 404, 409, 413, 503))
def predict(
    name: Annotated[str, Path(description="model name")],
    request: Annotated[PredictRequest, Body(description='{"instances": [...]}')],
    version: Annotated[int | None, Query(ge=1, description="pin this version instead of production")] = None,
):
    srv = server()
    name = _model_name(name)
    n = len(request.instances)
    if n > srv.max_instances:
        raise ApiError(413, f"{n} instances in one request; at most {srv.max_instances} are accepted, "
                            "split the request")
    if version is None:
        version = srv.production(name)
    else:
        _check_version(name, version)
    model = srv.model(name, version)
    result = model.predict(model.schema.to_feeds(request.instances))
    body = {"model": name, "version": version, **result}
    metrics.add_dimension(name="model", value=name)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=n)
    srv.capture.record(name, version, request.instances, result)
    return _json(200, body, headers={"X-Model-Version": str(version)})


# ---- errors: always JSON {"message": ...}, never a traceback -----------------------------------


@app.exception_handler(ApiError)
def _api_error(exc: ApiError):
    return _error(exc.status, exc.message)


@app.exception_handler(ModelNotFound)
def _model_not_found(exc: ModelNotFound):
    return _error(404, f"{exc}; GET /models lists the models")


@app.exception_handler(VersionNotFound)
def _version_not_found(exc: VersionNotFound):
    return _error(404, f"{exc}; GET /models/{{name}} lists its versions")


@app.exception_handler(SchemaError)
def _schema_error(exc: SchemaError):
    return _error(400, str(exc))


@app.exception_handler(PredictionError)
def _prediction_error(exc: PredictionError):
    return _error(400, str(exc))


@app.exception_handler(IntegrityError)
def _integrity_error(exc: IntegrityError):
    logger.error("artifact integrity check failed", extra={"detail": str(exc)})
    return _error(503, f"the model artifact failed its sha256 check and will not be served: {exc}")


_EXPECTED = {
    "body": 'a JSON object {"instances": [...]} with records {"feature": value} or arrays in schema order',
    "query": "version: a positive integer",
    "path": "version: a positive integer",
}


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
    return _error(400, f"malformed request: {'; '.join(parts)}; expected {_EXPECTED.get(where, _EXPECTED['body'])}")


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(exc: RequestUnsupportedContentType):
    return _error(400, f"malformed request: unsupported content type; expected {_EXPECTED['body']} "
                       "sent as application/json")


@app.exception_handler([binascii.Error, UnicodeDecodeError])
def _undecodable_body(exc: Exception):
    # isBase64Encoded bodies that are not base64, or bytes that are not UTF-8.
    return _error(400, f"malformed request: body cannot be decoded ({type(exc).__name__}); expected UTF-8 JSON")


@app.not_found
def _route_not_found(exc: Exception):
    event = app.current_event
    return _error(404, f"no route for {event.http_method} {event.path}; routes are GET /models, "
                       "GET /models/{name}, GET /models/{name}/versions/{version}, POST /models/{name}/predict")


@app.exception_handler(Exception)
def _unexpected(exc: Exception):
    logger.exception("unexpected error")
    return _error(500, "internal error; the request was logged")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: Any) -> dict:
    try:
        return app.resolve(event, context)
    except Exception:  # an error outside any route (e.g. a malformed event): still JSON, no traceback
        logger.exception("unexpected error outside a route")
        return {"statusCode": 500, "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"message": "internal error; the request was logged"}),
                "isBase64Encoded": False}


handler = lambda_handler
