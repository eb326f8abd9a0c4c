"""Inference function: the Shipyard HTTP API (API Gateway REST proxy -> Powertools resolver).

Thin by design: routes parse and shape; the registry, artifacts, schema and ONNX model modules in
``functions.core`` hold the rules. ``ModelServer`` only keeps what a warm Lambda should keep:
ONNX sessions per (model, version) and production-alias lookups for ``ALIAS_TTL_SECONDS``.

Environment: REGISTRY_TABLE, ARTIFACT_BUCKET, SHIPYARD_MODELS, ALIAS_TTL_SECONDS (60),
MAX_INSTANCES (1000), CAPTURE_STREAMS, CAPTURE_SAMPLE_RATE (see docs/architecture.md).

Two resolvers, one behaviour (see docs/api.md, "Request validation"):

- ``app`` (this module) serves every request. It has no pydantic/OpenAPI validation: its routes
  accept a request only when it is plainly valid — a JSON object body ``{"instances": [...]}``
  parsed once, ``version`` absent or plain decimal digits — and then ``FeatureSchema.to_feeds``
  does the real validation of the instances.
- Anything else (a body that is not such an object, a bad ``version``, an odd content type or
  encoding) is answered by the validating resolver of ``functions/inference/openapi.py``
  (``enable_validation=True``, pydantic, the routes' OpenAPI document), built on first need, so
  malformed requests get exactly the answers and messages they always got.
"""
from __future__ import annotations

import binascii
import json
import os
import time
import warnings
from collections import OrderedDict
from typing import Any, Callable
from urllib.parse import unquote

import orjson
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from functions.core.artifacts import IntegrityError, get_verified
from functions.core.capture import Capture
from functions.core.jsonio import dumps
from functions.core.onnx_model import ModelFormatError, OnnxModel, PredictionError
from functions.core.registry import ModelNotFound, Registry, VersionNotFound
from functions.core.schema import FeatureSchema, SchemaError

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-inference"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Shipyard"))

# Building a Tracer imports the X-Ray SDK (~110 ms of cold start) even when tracing is disabled:
# build it only when Powertools would trace (in Lambda, POWERTOOLS_TRACE_DISABLED not set).
tracer: Tracer | None = (None if Tracer._is_tracer_disabled()
                         else Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-inference")))

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
        self._aliases: dict[str, tuple[float, int | None, str | None]] = {}

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
        """The production version, read at most once per ALIAS_TTL_SECONDS per model.

        One GetItem (the model item) per TTL entry; an unknown model is cached as such for the same TTL.
        """
        now = self.clock()
        hit = self._aliases.get(name)
        if hit is None or now - hit[0] >= self.alias_ttl:
            if len(self._aliases) >= MAX_ALIAS_ENTRIES:
                self._aliases.clear()  # bounded memory under many distinct (unknown) names
            try:
                hit = (now, self.registry.get_model(name)["aliases"].get("production"), None)
            except ModelNotFound as exc:
                hit = (now, None, str(exc))
            self._aliases[name] = hit
        _, version, not_found = hit
        if not_found is not None:
            raise ModelNotFound(not_found)
        if version is None:
            raise ApiError(409, f"model {name!r} has no production version yet; train and promote one, "
                                "or pin a version with ?version=N")
        return int(version)

    def model(self, name: str, version: int) -> OnnxModel:
        """The verified model of one version, loaded once per warm Lambda."""
        key = (name, version)
        if key in self._sessions:
            self._sessions.move_to_end(key)
            return self._sessions[key]
        record = _version_record(self.registry, name, version)
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


def _version_record(registry: Registry, name: str, version: int) -> dict:
    """The version's record; for an unknown model, ModelNotFound rather than VersionNotFound."""
    try:
        return registry.get_version(name, version)
    except VersionNotFound:
        registry.get_model(name)  # an unknown model says so rather than "no version"
        raise


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
    """The body as the standard library reads it, at orjson's speed.

    orjson parses strict JSON ~5x faster (1000 instances: ~0.25 ms instead of ~1.2 ms). What it
    refuses — NaN/Infinity literals, numbers beyond float64, lone surrogates — goes to ``json``,
    so such bodies get the answers they always got (NaN: a per-feature 400). Two differences
    remain, both still a 400: an integer beyond 64 bits is read as the float it rounds to (what a
    numeric feature becomes anyway; an error message shows it as that float), and a body nested
    990 to 1023 levels deep, which json refused as too deep, now parses and is refused by the
    request's shape instead.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    # Powertools turns only JSONDecodeError into a validation error; too-deep nesting and
    # over-long integers raise other errors, which must be a 400 as well.
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise json.JSONDecodeError(f"unparseable JSON ({type(exc).__name__}: {str(exc)[:100]})", text, 0) from None


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=dumps(body), headers=headers)


def _error(status: int, message: str) -> Response:
    return _json(status, {"message": message})


def _model_name(raw: str) -> str:
    """The decoded model name of the path; names that cannot be a model are unknown models.

    API Gateway REST APIs keep the path percent-encoded and Powertools matches on it, so the
    segment is decoded here. Invalid names never reach DynamoDB.
    """
    name = unquote(raw)
    # isprintable() also refuses lone surrogates (category Cs), so a valid name is UTF-8 encodable.
    if not (0 < len(name) <= MAX_NAME_LENGTH and "#" not in name and name.isprintable()):
        raise ModelNotFound("unknown model: a model name is 1 to 255 printable characters without '#'")
    return name


def _check_version(name: str, version: int) -> int:
    if version > MAX_VERSION:
        raise VersionNotFound(f"model {name!r} has no version above {MAX_VERSION}")
    return version


# ---- what the routes do (shared by both resolvers) -------------------------------------------


def list_models() -> Response:
    return _json(200, {"models": server().registry.list_models()})


def get_model(name: str) -> Response:
    registry = server().registry
    name = _model_name(name)
    model = registry.get_model(name)
    aliases = {"production": None, **(model.get("aliases") or {})}
    versions = [{k: v.get(k) for k in ("version", "status", "metrics", "created_at")}
                for v in registry.list_versions(name)]
    return _json(200, {"name": name, "aliases": aliases, "versions": versions})


def get_version(name: str, version: int) -> Response:
    registry = server().registry
    name = _model_name(name)
    return _json(200, _version_record(registry, name, _check_version(name, version)))


def predict(name: str, instances: list, version: int | None) -> Response:
    srv = server()
    name = _model_name(name)
    n = len(instances)
    if n > srv.max_instances:
        raise ApiError(413, f"{n} instances in one request; at most {srv.max_instances} are accepted, "
                            "split the request")
    if version is None:
        version = srv.production(name)
    else:
        _check_version(name, version)
    model = srv.model(name, version)
    result = model.predict(model.schema.to_feeds(instances))
    body = {"model": name, "version": version, **result}
    metrics.add_dimension(name="model", value=name)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=n)
    srv.capture.record(name, version, instances, result)
    return _json(200, body, headers={"X-Model-Version": str(version)})


# ---- the serving resolver: plainly valid requests only, the rest to the validating one ---------


class _Revalidate(Exception):
    """The request is not plainly valid: the validating resolver answers it instead."""


app = APIGatewayRestResolver(json_body_deserializer=_loads)
_declined = False


def _plain_int(raw: Any) -> int:
    """A positive integer written as plain decimal digits (what pydantic reads the same way)."""
    if type(raw) is str and 0 < len(raw) <= 18 and raw.isascii() and raw.isdigit() and raw[0] != "0":
        return int(raw)
    raise _Revalidate


def _plain_instances() -> list:
    """``instances`` of a JSON object body ``{"instances": [...]}`` (parsed once, never copied)."""
    event = app.current_event
    # As Powertools reads it (event.headers.get("content-type"): lower-cased keys, the last one
    # wins) without building a case-insensitive copy of every header.
    content_type: Any = ""
    try:
        for key, value in (event.get("headers") or {}).items():
            if key.lower() == "content-type":
                content_type = value
    except (AttributeError, TypeError):  # not an API Gateway event's headers
        raise _Revalidate from None
    if type(content_type) is not str:
        raise _Revalidate
    content_type = content_type.strip()
    if content_type and not content_type.startswith(content_types.APPLICATION_JSON):
        raise _Revalidate
    try:
        body = event.json_body
    except Exception:  # noqa: BLE001 - undecodable or not JSON: the validating resolver says why
        raise _Revalidate from None
    if type(body) is not dict or len(body) != 1 or type(body.get("instances")) is not list:
        raise _Revalidate
    return body["instances"]


def _plain_version() -> int | None:
    values = app.current_event.resolved_query_string_parameters.get("version")
    if values is None:
        return None
    if type(values) is not list or len(values) != 1:
        raise _Revalidate
    return _plain_int(values[0])


@app.get("/models")
def _list_models_route():
    return list_models()


@app.get("/models/<name>")
def _get_model_route(name: str):
    return get_model(name)


@app.get("/models/<name>/versions/<version>")
def _get_version_route(name: str, version: str):
    return get_version(name, _plain_int(version))


@app.post("/models/<name>/predict")
def _predict_route(name: str):
    instances = _plain_instances()
    return predict(name, instances, _plain_version())


@app.exception_handler(_Revalidate)
def _revalidate(exc: _Revalidate):
    global _declined
    _declined = True  # lambda_handler hands the event to the validating resolver
    return _error(400, "malformed request")


# ---- errors: always JSON {"message": ...}, never a traceback -----------------------------------


def install_error_handlers(resolver: APIGatewayRestResolver) -> None:
    """The error answers of the contract, on a resolver (this module's and the validating one)."""

    @resolver.exception_handler(ApiError)
    def _api_error(exc: ApiError):
        return _error(exc.status, exc.message)

    @resolver.exception_handler(ModelNotFound)
    def _model_not_found(exc: ModelNotFound):
        return _error(404, f"{exc}; GET /models lists the models")

    @resolver.exception_handler(VersionNotFound)
    def _version_not_found(exc: VersionNotFound):
        return _error(404, f"{exc}; GET /models/{{name}} lists its versions")

    @resolver.exception_handler(SchemaError)
    def _schema_error(exc: SchemaError):
        return _error(400, str(exc))

    @resolver.exception_handler(PredictionError)
    def _prediction_error(exc: PredictionError):
        return _error(400, str(exc))

    @resolver.exception_handler(IntegrityError)
    def _integrity_error(exc: IntegrityError):
        logger.error("artifact integrity check failed", extra={"detail": str(exc)})
        return _error(503, f"the model artifact failed its sha256 check and will not be served: {exc}")

    @resolver.exception_handler([binascii.Error, UnicodeDecodeError])
    def _undecodable_body(exc: Exception):
        # isBase64Encoded bodies that are not base64, or bytes that are not UTF-8.
        return _error(400, f"malformed request: body cannot be decoded ({type(exc).__name__}); expected UTF-8 JSON")

    @resolver.not_found
    def _route_not_found(exc: Exception):
        event = resolver.current_event
        return _error(404, f"no route for {event.http_method} {event.path}; routes are GET /models, "
                           "GET /models/{name}, GET /models/{name}/versions/{version}, POST /models/{name}/predict")

    @resolver.exception_handler(Exception)
    def _unexpected(exc: Exception):
        logger.exception("unexpected error")
        return _error(500, "internal error; the request was logged")


install_error_handlers(app)


def _resolve(event: dict, context: Any) -> dict:
    global _declined
    _declined = False
    response = app.resolve(event, context)
    if _declined:
        from functions.inference.openapi import validating_app

        response = validating_app().resolve(event, context)
    return response


def _handle(event: dict, context: Any) -> dict:
    # Named as before for Tracer.capture_lambda_handler: its subsegment is "## lambda_handler".
    try:
        return _resolve(event, context)
    except Exception:  # an error outside any route (e.g. a malformed event): still JSON, no traceback
        logger.exception("unexpected error outside a route")
        return {"statusCode": 500, "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"message": "internal error; the request was logged"}),
                "isBase64Encoded": False}


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: Any) -> dict:
    # The correlation id of correlation_paths.API_GATEWAY_REST, read directly: the JMESPath
    # query costs ~10% of a one-instance prediction.
    context_of_request = event.get("requestContext") if isinstance(event, dict) else None
    logger.set_correlation_id(context_of_request.get("requestId") if isinstance(context_of_request, dict) else None)
    return _traced(event, context)


_handle.__name__ = _handle.__qualname__ = "lambda_handler"
_traced = tracer.capture_lambda_handler(_handle) if tracer is not None else _handle
handler = lambda_handler
