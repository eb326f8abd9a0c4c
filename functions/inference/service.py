"""What the inference API does, independent of how a request reaches it.

The serving state (``ModelServer``: ONNX sessions per (model, version) and production-alias
lookups for ``ALIAS_TTL_SECONDS``, an absent one for ``ALIAS_MISS_TTL_SECONDS``, refreshed by every
registry read of ``GET /models[/{name}]``, kept by a warm Lambda), the operations behind the four routes,
the API's errors and their JSON answers. Both resolvers — the serving one in
``functions/inference/handler.py`` and the validating one in ``functions/inference/openapi.py`` —
route to these functions and install these error handlers, so they answer alike.

Environment: REGISTRY_TABLE, ARTIFACT_BUCKET, SHIPYARD_MODELS, ALIAS_TTL_SECONDS (60),
ALIAS_MISS_TTL_SECONDS (2), MAX_INSTANCES (1000), CAPTURE_STREAMS, CAPTURE_SAMPLE_RATE (see
docs/architecture.md).
"""
from __future__ import annotations

import binascii
import hashlib
import math
import os
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from functions.core.artifacts import IntegrityError, get_verified
from functions.core.capture import Capture
from functions.core.jsonio import dumps
from functions.core.layout import (
    DEFAULT_MAX_INSTANCES,
    METRIC_ARTIFACT_INTEGRITY_FAILURES,
    METRIC_SHADOW_AGREEMENT,
    METRIC_SHADOW_DIFFERENCE,
    METRIC_SHADOW_ERRORS,
    METRIC_SHADOW_LATENCY,
    METRIC_SHADOW_PREDICTIONS,
    METRIC_VERSION_ERRORS,
    METRIC_VERSION_LATENCY,
    METRIC_VERSION_PREDICTIONS,
)
from functions.core.onnx_model import ModelFormatError, OnnxModel, PredictionError
from functions.core.registry import MAX_VERSION, ModelNotFound, Registry, VersionNotFound, is_model_name
from functions.core.schema import FeatureSchema, SchemaError
from functions.inference import emf

SERVICE_NAME = os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-inference")
logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Shipyard"), service=SERVICE_NAME)

# Reads publish no metric by design; Powertools would warn on each of them.
warnings.filterwarnings("ignore", message="No application metrics to publish")

# Version numbers are stored zero-padded to 10 digits; anything larger cannot exist.
MAX_SESSIONS = 16
MAX_ALIAS_ENTRIES = 1024
ROUTING_KEY_HEADER = "X-Routing-Key"  # a caller's stable key for canary routing (else the request id)
METRIC_PREDICTED_CLASS = "PredictedClass"  # per version and class: instances predicted as that class
METRIC_PREDICTED_VALUE = "PredictedValue"  # per version (regression): the predicted values


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
                 alias_ttl: float = 60.0, alias_miss_ttl: float = 2.0, max_instances: int = DEFAULT_MAX_INSTANCES,
                 clock: Callable[[], float] = time.monotonic, shadow_background: bool = True):
        self.registry = registry
        self.s3 = s3
        self.bucket = bucket
        self.capture = capture
        self.alias_ttl = alias_ttl
        # A miss (no production version, or no such model) is never kept longer than a hit.
        self.alias_miss_ttl = min(alias_miss_ttl, alias_ttl)
        self.max_instances = max_instances
        self.clock = clock
        self._sessions: OrderedDict[tuple[str, int], OnnxModel] = OrderedDict()
        # model -> (expires at on self.clock, production version or None, ModelNotFound message or None,
        #           the running release or None)
        self._aliases: dict[str, tuple[float, int | None, str | None, dict | None]] = {}
        # Shadow candidates loading off the request path: (model, version) -> _Load
        self.shadow_background = shadow_background
        self._shadow_loads: dict[tuple[str, int], _Load] = {}

    @classmethod
    def from_env(cls, **overrides) -> ModelServer:
        import boto3

        kwargs: dict[str, Any] = {
            "alias_ttl": float(os.environ.get("ALIAS_TTL_SECONDS") or 60),
            "alias_miss_ttl": float(os.environ.get("ALIAS_MISS_TTL_SECONDS") or 2),
            "max_instances": int(os.environ.get("MAX_INSTANCES") or DEFAULT_MAX_INSTANCES),
        }
        kwargs.update(overrides)
        registry = kwargs.pop("registry", None) or Registry.from_env()
        s3 = kwargs.pop("s3", None) or boto3.client("s3")
        bucket = kwargs.pop("bucket", None) or os.environ["ARTIFACT_BUCKET"]
        capture = kwargs.pop("capture", None) or Capture.from_env()
        return cls(registry, s3, bucket, capture, **kwargs)

    def production(self, name: str) -> int:
        """The production version, read from the registry at most once per ALIAS_TTL_SECONDS per model."""
        return self.serving(name)[0]

    def serving(self, name: str) -> tuple[int, dict | None]:
        """The production version and the running release (canary or shadow, or None), read from the
        registry at most once per ALIAS_TTL_SECONDS per model.

        One GetItem (the model item: its aliases and its ``release``) per cache entry. A miss — no
        production version yet (409) or an unknown model (404) — is kept only
        ALIAS_MISS_TTL_SECONDS, so a first promotion serves within seconds; ``GET /models/{name}``
        refreshes the entry at once (``saw``). A release started or ended is therefore seen within
        ALIAS_TTL_SECONDS by each warm container.
        """
        hit = self._aliases.get(name)
        if hit is None or self.clock() >= hit[0]:
            try:
                item = self.registry.get_model(name)
                hit = self.saw(name, item["aliases"].get("production"), release=item.get("release"))
            except ModelNotFound as exc:
                hit = self.saw(name, None, not_found=str(exc))
        _, version, not_found, release = hit
        if not_found is not None:
            raise ModelNotFound(not_found)
        if version is None:
            raise ApiError(409, f"model {name!r} has no production version yet; train and promote one, "
                                "or pin a version with ?version=N")
        return int(version), release

    def saw(self, name: str, production: Any, *, not_found: str | None = None,
            release: Any = ...) -> tuple[float, int | None, str | None, dict | None]:
        """Cache what a registry read just said of ``name``'s production alias and running release (or
        that the model is unknown): a version for ALIAS_TTL_SECONDS, a miss for
        ALIAS_MISS_TTL_SECONDS. Every read of the model item goes through here, so predict serves
        what ``GET /models/{name}`` answered.

        ``release`` omitted (``GET /models`` reads aliases only): a cached release is kept, with its
        entry's expiry, while production is unchanged (every production move ends a release), so a
        release ended meanwhile is still seen within ALIAS_TTL_SECONDS."""
        if name not in self._aliases and len(self._aliases) >= MAX_ALIAS_ENTRIES:
            self._aliases.clear()  # bounded memory under many distinct (unknown) names
        version = None if production is None else int(production)
        ttl = self.alias_ttl if version is not None else self.alias_miss_ttl
        expires = self.clock() + ttl
        if release is ...:
            old = self._aliases.get(name)
            release = None
            if old is not None and old[1] == version and old[3] is not None:
                expires, release = min(expires, old[0]), old[3]
        entry = (expires, version, not_found, release if isinstance(release, dict) else None)
        self._aliases[name] = entry
        return entry

    def model(self, name: str, version: int) -> OnnxModel:
        """The verified model of one version, loaded once per warm Lambda."""
        key = (name, version)
        if key in self._sessions:
            self._sessions.move_to_end(key)
            return self._sessions[key]
        return self._keep(key, self._load(name, version))

    def _keep(self, key: tuple[str, int], loaded: OnnxModel) -> OnnxModel:
        self._sessions[key] = loaded
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return loaded

    def shadow_model(self, name: str, version: int) -> OnnxModel | None:
        """A shadow candidate's model, loaded at most once per warm container and never on a caller's
        time: the first shadowed request starts the load in a thread and is not shadowed; the
        requests while it loads are not either (None). A load that failed raises its error (a
        ShadowError) for ALIAS_TTL_SECONDS, then is tried again."""
        key = (name, version)
        loaded = self._sessions.get(key)
        if loaded is not None:
            return loaded
        job = self._shadow_loads.get(key)
        if job is None or (job.error is not None and job.retry_at and self.clock() >= job.retry_at):
            if len(self._shadow_loads) >= MAX_SESSIONS:
                self._shadow_loads.clear()
            job = self._shadow_loads[key] = _Load()
            if self.shadow_background:
                threading.Thread(target=job.run, args=(self._load, name, version), daemon=True,
                                 name=f"shadow-load-{name}-v{version}").start()
                return None
            job.run(self._load, name, version)
        if not job.done.is_set():
            return None
        if job.error is not None:
            if job.retry_at == 0.0:
                job.retry_at = self.clock() + self.alias_ttl
            raise job.error
        del self._shadow_loads[key]
        return self._keep(key, job.model)

    def join_loads(self, timeout: float = 30.0) -> None:
        """Wait for the shadow loads under way (tests, benchmarks)."""
        for job in list(self._shadow_loads.values()):
            job.done.wait(timeout)

    def _load(self, name: str, version: int) -> OnnxModel:
        """Read, verify and open one version's model (no caching)."""
        record = version_record(self.registry, name, version)
        if not record.get("artifact_key") or not record.get("schema"):
            raise ApiError(404, f"model {name!r} version {version} has no model artifact (status "
                                f"{record.get('status')!r}); expected a trained version")
        try:
            # Exactly the object version the registry recorded (an overwrite of the key is never
            # served); versions recorded without one read the key's current object.
            data = get_verified(self.s3, self.bucket, record["artifact_key"], record.get("artifact_sha256"),
                                record.get("artifact_version_id"))
        except IntegrityError:
            # Before any model dimension: the metric carries the service dimension only, which
            # the stack's alarm watches (infra/endpoint.py metric_artifact_integrity_failures).
            metrics.add_metric(name=METRIC_ARTIFACT_INTEGRITY_FAILURES, unit=MetricUnit.Count, value=1)
            raise
        except (ClientError, BotoCoreError) as exc:
            raise ApiError(503, f"model {name!r} version {version}: artifact unavailable ({exc})") from exc
        try:
            loaded = OnnxModel.from_bytes(data, FeatureSchema.from_dict(record["schema"]))
        except (SchemaError, ModelFormatError) as exc:
            raise ApiError(503, f"model {name!r} version {version} cannot be served: {exc}") from exc
        return loaded


class _Load:
    """One shadow candidate's load, maybe in a thread."""

    __slots__ = ("done", "model", "error", "retry_at")

    def __init__(self):
        self.done = threading.Event()
        self.model: OnnxModel | None = None
        self.error: BaseException | None = None
        self.retry_at = 0.0

    def run(self, load: Callable[[str, int], OnnxModel], name: str, version: int) -> None:
        try:
            self.model = load(name, version)
        except BaseException as exc:  # noqa: BLE001  (raised on the next shadowed request, counted there)
            self.error = exc
        finally:
            self.done.set()


def version_record(registry: Registry, name: str, version: int) -> dict:
    """The version's record; for an unknown model, ModelNotFound rather than VersionNotFound."""
    try:
        return registry.get_version(name, version)
    except VersionNotFound:
        registry.get_model(name)  # an unknown model says so rather than "no version"
        raise


_server: ModelServer | None = None  # the warm Lambda's one ModelServer, built on first use


def server() -> ModelServer:
    """The warm ModelServer, built from the environment on first use."""
    global _server
    if _server is None:
        _server = ModelServer.from_env()
    return _server


def reset(**overrides) -> ModelServer | None:
    """Drop the warm state; with overrides (clock, registry, s3, ...) build it now (tests)."""
    global _server
    _server = ModelServer.from_env(**overrides) if overrides else None
    return _server


# ---- answers -----------------------------------------------------------------------------------


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer (orjson-written, see functions.core.jsonio)."""
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=dumps(body), headers=headers)


def error_response(status: int, message: str) -> Response:
    """An error answer of the contract: JSON ``{"message": ...}``."""
    return json_response(status, {"message": message})


def model_name(raw: str) -> str:
    """The decoded model name of the path; names that cannot be a model are unknown models.

    API Gateway REST APIs keep the path percent-encoded and Powertools matches on it, so the
    segment is decoded here. Invalid names never reach DynamoDB.
    """
    name = unquote(raw)
    if not is_model_name(name):
        raise ModelNotFound("unknown model: a model name is 1 to 255 printable characters without '#'")
    return name


def check_version(name: str, version: int) -> int:
    """``version`` if it can exist (at most MAX_VERSION), else VersionNotFound."""
    if version > MAX_VERSION:
        raise VersionNotFound(f"model {name!r} has no version above {MAX_VERSION}")
    return version


# ---- what the routes do (shared by both resolvers) ---------------------------------------------


def list_models() -> Response:
    srv = server()
    models = srv.registry.list_models()
    for m in models:  # a fresh read of every alias: what predict serves from now on
        srv.saw(m["name"], m["production"])
    return json_response(200, {"models": models})


def get_model(name: str) -> Response:
    srv = server()
    registry = srv.registry
    name = model_name(name)
    try:
        model = registry.get_model(name)
    except ModelNotFound as exc:
        srv.saw(name, None, not_found=str(exc))
        raise
    aliases = {"production": None, **(model.get("aliases") or {})}
    release = model.get("release") if isinstance(model.get("release"), dict) else None
    srv.saw(name, aliases["production"], release=release)  # a fresh read: predict serves what this answer says
    versions = [{k: v.get(k) for k in ("version", "status", "metrics", "created_at")}
                for v in registry.list_versions(name)]
    return json_response(200, {"name": name, "aliases": aliases, "versions": versions,
                                "release": public_release(release)})


RELEASE_PUBLIC_KEYS = ("id", "mode", "version", "production", "percent", "bake", "started_at", "tolerance")


def public_release(release: dict | None) -> dict | None:
    """What ``GET /models/{name}`` shows of the running release: no execution ARN (the release loop's
    business, and an account detail), never a task token."""
    if not release:
        return None
    return {k: release.get(k) for k in RELEASE_PUBLIC_KEYS if k != "tolerance" or release.get(k) is not None}


def get_version(name: str, version: int) -> Response:
    registry = server().registry
    name = model_name(name)
    return json_response(200, version_record(registry, name, check_version(name, version)))


MAX_ID_LENGTH = 128
IDS_EXPECTED = f"a string of 1 to {MAX_ID_LENGTH} printable characters"


def request_id(event: Any) -> str:
    """API Gateway's request id (a UUID) of ``event``, else a random one (a request without one)."""
    if isinstance(event, dict):
        ctx = event.get("requestContext")
        if isinstance(ctx, dict):
            rid = ctx.get("requestId")
            if isinstance(rid, str) and rid:
                return rid
    return uuid.uuid4().hex


_SUFFIXES: list[str] = []


def inference_ids(ids: Any, n: int, event: Any) -> list[str]:
    """One inference id per instance: the caller's ``ids`` (checked: a list of ``n`` unique strings of
    1 to 128 printable characters; otherwise a 400 saying what was expected), or, when the caller
    sent none (absent or null), ``<request id>-<index>``: unique across requests (API Gateway's
    request id is a UUID) and cheap (~25 µs for 1000 instances, warm)."""
    if ids is None:
        if len(_SUFFIXES) < n:  # "-0", "-1", …: written once per warm container (str(i) is most of the cost)
            _SUFFIXES.extend(f"-{i}" for i in range(len(_SUFFIXES), n))
        return list(map(request_id(event).__add__, _SUFFIXES[:n]))
    if type(ids) is not list:
        raise ApiError(400, f'"ids" must be a list of strings, one per instance (got {_json_type(ids)}); '
                            f'send {{"instances": [...], "ids": ["a", "b", ...]}}')
    if len(ids) != n:
        raise ApiError(400, f'"ids" has {len(ids)} entr{"y" if len(ids) == 1 else "ies"} but "instances" has {n}; '
                            "send one id per instance")
    for i, one in enumerate(ids):
        if type(one) is not str or not (0 < len(one) <= MAX_ID_LENGTH and one.isprintable()):
            raise ApiError(400, _bad_id(i, one))
    if len(set(ids)) != n:
        first: dict[str, int] = {}
        for i, one in enumerate(ids):
            if one in first:
                raise ApiError(400, f"ids[{i}] is repeated (the same as ids[{first[one]}]); "
                                    "ids must be unique within a request")
            first[one] = i
    return ids


def _bad_id(i: int, value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        finite = abs(value) < 10 ** 30 if isinstance(value, int) else math.isfinite(value) and abs(value) < 1e30
        shown = str(value) if finite else "17"
        return f'ids[{i}] must be {IDS_EXPECTED}, got a number: send ids as strings, e.g. "{shown}"'
    if type(value) is str:
        what = ("an empty string" if not value else f"{len(value)} characters" if len(value) > MAX_ID_LENGTH
                else "a string with unprintable characters")
        return f"ids[{i}] must be {IDS_EXPECTED}, got {what}"
    return f"ids[{i}] must be {IDS_EXPECTED}, got {_json_type(value)}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def routing_key(event: Any) -> str:
    """The key a canary routes on: the ``X-Routing-Key`` header (any case) when the caller sent one,
    else API Gateway's request id, else a random one (a request without an event)."""
    if isinstance(event, dict):
        headers = event.get("headers")
        if isinstance(headers, dict):
            key = headers.get(ROUTING_KEY_HEADER)
            if key is None:
                wanted = ROUTING_KEY_HEADER.lower()
                key = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == wanted), None)
            if isinstance(key, str) and key:
                return key
        ctx = event.get("requestContext")
        if isinstance(ctx, dict) and ctx.get("requestId"):
            return str(ctx["requestId"])
    return uuid.uuid4().hex


def bucket(release_id: Any, key: str) -> float:
    """Where ``key`` falls in [0, 100) for one release: sha256 of ``"<release id>:<key>"``, its first
    8 bytes as a fraction of 2**64. Stable across requests and containers; a new release reshuffles."""
    digest = hashlib.sha256(f"{release_id}:{key}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") * 100.0 / 18446744073709551616.0


def canary_takes(release: dict, key: str) -> bool:
    """True when the canary release's candidate answers the caller of ``key``."""
    try:
        percent = float(release.get("percent") or 0)
    except (TypeError, ValueError):
        return False
    return percent > 0 and bucket(release.get("id"), key) < percent


def server_side(exc: BaseException) -> bool:
    """An error of the version, not of the caller's request: artifact unavailable/integrity,
    cannot be served, anything unexpected (a 5xx)."""
    if isinstance(exc, ApiError):
        return exc.status >= 500
    return not isinstance(exc, (SchemaError, PredictionError, ModelNotFound, VersionNotFound))


def version_documents(name: str, version: int, n: int, latency_ms: float, result: dict) -> list[dict]:
    """The per-version EMF documents of one answered request: VersionPredictions, VersionLatency and
    the prediction distribution (PredictedClass per class, or PredictedValue)."""
    dims = emf.version_dims(name, version)
    values: dict[str, tuple[str, Any]] = {METRIC_VERSION_PREDICTIONS: ("Count", n),
                                          METRIC_VERSION_LATENCY: ("Milliseconds", latency_ms)}
    predictions = result.get("predictions") or []
    if "classes" in result:
        docs = emf.documents(dims, values)
        counts: dict[str, int] = {}
        for p in predictions:
            counts[str(p)] = counts.get(str(p), 0) + 1
        for cls, count in counts.items():
            docs += emf.documents({**dims, "Class": cls}, {METRIC_PREDICTED_CLASS: ("Count", count)})
        return docs
    values[METRIC_PREDICTED_VALUE] = ("None", predictions)
    return emf.documents(dims, values)


def shadow_score(srv: ModelServer, name: str, release: dict, instances: list, result: dict,
                 production_model: OnnxModel, production_feeds: Any) -> tuple[dict | None, list[dict]]:
    """Score ``instances`` with the shadow candidate after production answered. Never raises: any
    failure is a ShadowErrors count and a log line. Returns (what capture keeps beside production's
    answer or None, the EMF documents)."""
    started = time.perf_counter()
    version = int(release["version"])
    dims = emf.version_dims(name, version)
    try:
        model = srv.shadow_model(name, version)
        if model is None:
            return None, []  # loading off the request path: not shadowed yet
        # The same features (the usual retrain): production's feeds, already checked, are reused.
        same = model.schema is production_model.schema or model.schema == production_model.schema
        shadow = model.predict(production_feeds if same else model.schema.to_feeds(instances))
        values: dict[str, tuple[str, Any]] = {METRIC_SHADOW_PREDICTIONS: ("Count", len(instances))}
        ours, theirs = result.get("predictions") or [], shadow.get("predictions") or []
        if len(ours) != len(theirs):
            raise PredictionError(f"shadow answered {len(theirs)} predictions for {len(ours)}")
        if "classes" in result:
            values[METRIC_SHADOW_AGREEMENT] = ("None", [1 if a == b else 0 for a, b in zip(ours, theirs)])
        else:
            diffs = [abs(float(b) - float(a)) for a, b in zip(ours, theirs)]
            values[METRIC_SHADOW_DIFFERENCE] = ("None", diffs)
            tolerance = release.get("tolerance")
            if tolerance is not None:
                values[METRIC_SHADOW_AGREEMENT] = ("None", [1 if d <= float(tolerance) else 0 for d in diffs])
        values[METRIC_SHADOW_LATENCY] = ("Milliseconds", (time.perf_counter() - started) * 1000)
        kept = {"version": version, "predictions": theirs}
        if "probabilities" in shadow:
            kept["probabilities"] = shadow["probabilities"]
        return kept, emf.documents(dims, values)
    except Exception as exc:  # noqa: BLE001  (the shadow never changes the caller's answer)
        logger.warning("shadow scoring failed", extra={"model": name, "shadow_version": version,
                                                       "error": f"{type(exc).__name__}: {exc}"})
        return None, emf.documents(dims, {METRIC_SHADOW_ERRORS: ("Count", 1)})


def predict(name: str, instances: list, version: int | None, event: Any = None, ids: Any = None) -> Response:
    """One prediction. ``version`` None: production, or — while a release runs — a canary's candidate
    for the callers its weight routes to it (``routing_key(event)``), production plus a shadow
    scoring for a shadow release. Pinned versions are never rerouted nor shadowed.

    ``ids``: the caller's inference ids (``"ids"`` beside ``"instances"``), None when not sent:
    see ``inference_ids``. The answer and the capture carry them as ``inference_ids``."""
    srv = server()
    name = model_name(name)
    n = len(instances)
    if n > srv.max_instances:
        raise ApiError(413, f"{n} instances in one request; at most {srv.max_instances} are accepted, "
                            "split the request")
    answer_ids = inference_ids(ids, n, event)
    release = None
    if version is None:
        version, release = srv.serving(name)
        if release is not None and release.get("mode") == "canary" and canary_takes(release, routing_key(event)):
            version = int(release["version"])
    else:
        check_version(name, version)
    started = time.perf_counter()
    try:
        model = srv.model(name, version)
        feeds = model.schema.to_feeds(instances)
        result = model.predict(feeds)
    except Exception as exc:
        if server_side(exc):
            emf.emit(emf.documents(emf.version_dims(name, version), {METRIC_VERSION_ERRORS: ("Count", 1)}))
        raise
    latency_ms = (time.perf_counter() - started) * 1000
    body = {"model": name, "version": version, **result, "inference_ids": answer_ids}
    metrics.add_dimension(name="model", value=name)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=n)
    docs = version_documents(name, version, n, latency_ms, result)
    shadow = None
    if release is not None and release.get("mode") == "shadow" and int(release["version"]) != version:
        shadow, shadow_docs = shadow_score(srv, name, release, instances, result, model, feeds)
        docs += shadow_docs
    emf.emit(docs)
    srv.capture.record(name, version, instances, result, shadow=shadow, inference_ids=answer_ids)
    return json_response(200, body, headers={"X-Model-Version": str(version)})


# ---- errors: always JSON {"message": ...}, never a traceback -----------------------------------


def install_error_handlers(resolver: APIGatewayRestResolver) -> None:
    """The error answers of the contract, on a resolver (the serving one and the validating one)."""

    @resolver.exception_handler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message)

    @resolver.exception_handler(ModelNotFound)
    def _model_not_found(exc: ModelNotFound):
        return error_response(404, f"{exc}; GET /models lists the models")

    @resolver.exception_handler(VersionNotFound)
    def _version_not_found(exc: VersionNotFound):
        return error_response(404, f"{exc}; GET /models/{{name}} lists its versions")

    @resolver.exception_handler(SchemaError)
    def _schema_error(exc: SchemaError):
        return error_response(400, str(exc))

    @resolver.exception_handler(PredictionError)
    def _prediction_error(exc: PredictionError):
        return error_response(400, str(exc))

    @resolver.exception_handler(IntegrityError)
    def _integrity_error(exc: IntegrityError):
        logger.error("artifact integrity check failed", extra={"detail": str(exc)})
        return error_response(503, f"the model artifact failed its sha256 check and will not be served: {exc}")

    @resolver.exception_handler([binascii.Error, UnicodeDecodeError])
    def _undecodable_body(exc: Exception):
        # isBase64Encoded bodies that are not base64, or bytes that are not UTF-8.
        return error_response(400, "malformed request: body cannot be decoded "
                                   f"({type(exc).__name__}); expected UTF-8 JSON")

    @resolver.not_found
    def _route_not_found(exc: Exception):
        event = resolver.current_event
        return error_response(404, f"no route for {event.http_method} {event.path}; routes are GET /models, "
                                   "GET /models/{name}, GET /models/{name}/versions/{version}, "
                                   "POST /models/{name}/predict")

    @resolver.exception_handler(Exception)
    def _unexpected(exc: Exception):
        logger.exception("unexpected error")
        return error_response(500, "internal error; the request was logged")
