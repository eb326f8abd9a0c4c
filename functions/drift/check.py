"""One drift check of one model, end to end: what the drift function (and ``shipyard drift check``) runs.

    registry ──production version──► models/<m>/v<N>/baseline.json
    capture/<m>/YYYY/MM/DD/HH/…  ──newest rows──► check_drift ──► drift/<m>/<timestamp>.json
                                                             ├─► registry drift item (D#<timestamp>)
                                                             ├─► metrics (namespace Shipyard, EMF)
                                                             └─► "Drift Detected" event (when drifted)

The window is the **most recent** ``window`` captured rows (``drift.window`` in cdk.json, default
500): capture objects are read newest first, one UTC day prefix at a time, going back at most
``lookback_days`` (default 7), until enough rows are in; the newest ``window`` of them are checked.
Every captured row counts, whichever version served it: drift is about what production traffic
looks like, compared with what the production version was trained on.

A check that cannot decide (no production version, fewer than ``min_rows`` rows) still writes its
report and registry item, with ``skipped: true`` and the reason; an inconsistent state (the
production version has no baseline, an unknown model) raises :class:`DriftCheckError`.

The retraining side (``retrain_input``) lives here too: the retrain function starts the pipeline on
the model's most recent dataset (``functions.pipeline.execution.latest_dataset``) when a
``Drift Detected`` event arrives.
numpy, boto3 and Powertools only: this module runs in Lambda.
"""
from __future__ import annotations

import json
import logging
import math
import os
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from functions.core.artifacts import (
    ACCESS_DENIED_CODES,
    NOT_FOUND_CODES,
    IntegrityError,
    describe_s3_error,
    get_verified,
)
from functions.core.checkevent import model_settings
from functions.core.drift import NUMBER, STRING, check_drift
from functions.core.eventbus import EventNotDelivered, put_event
from functions.core.layout import (
    CAPTURE_PREFIX,
    DEFAULT_DRIFT_LOOKBACK_DAYS,
    DEFAULT_DRIFT_MIN_ROWS,
    DEFAULT_DRIFT_SHARE,
    DEFAULT_DRIFT_WINDOW,
    DRIFT_DETECTED,
    DRIFT_PREFIX,
    METRIC_CHECKS_SKIPPED,
    METRIC_DRIFT_DETECTED,
    METRIC_DRIFT_SCORE,
    METRIC_DRIFT_THRESHOLD,
    METRIC_DRIFTED_SHARE,
    METRIC_ROWS_CHECKED,
    METRICS_NAMESPACE,
    models_prefix,
)
from functions.core.registry import utc_iso
from functions.core.report import current_distributions, write_report
from functions.core.report import report_key as html_report_key
from functions.pipeline.execution import execution_input

logger = logging.getLogger(__name__)

class DriftCheckError(Exception):
    """The check cannot run: unknown model, missing or unreadable baseline, bad settings."""


class BaselineMissing(DriftCheckError):
    """The production version has no ``baseline.json``."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DriftSettings:
    """Per-model settings of a check (from ``drift`` in cdk.json, via ``DRIFT_MODELS``)."""

    window: int = DEFAULT_DRIFT_WINDOW
    share: float = DEFAULT_DRIFT_SHARE
    min_rows: int = DEFAULT_DRIFT_MIN_ROWS
    lookback_days: int = DEFAULT_DRIFT_LOOKBACK_DAYS

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or self.window < 1:
            raise DriftCheckError(f"window must be an integer >= 1, got {self.window!r}")
        if not 0 < float(self.share) <= 1:
            raise DriftCheckError(f"share must be within (0, 1], got {self.share!r}")
        if not isinstance(self.min_rows, int) or self.min_rows < 1:
            raise DriftCheckError(f"min_rows must be an integer >= 1, got {self.min_rows!r}")
        if not isinstance(self.lookback_days, int) or self.lookback_days < 0:
            raise DriftCheckError(f"lookback_days must be an integer >= 0, got {self.lookback_days!r}")


def settings_from_env(model: str, environ: Mapping[str, str] | None = None) -> DriftSettings:
    """Settings of *model* from ``DRIFT_MODELS`` (JSON model -> {window, share, ...}),
    ``DRIFT_MIN_ROWS`` and ``DRIFT_LOOKBACK_DAYS``."""
    env = os.environ if environ is None else environ
    spec = model_settings(env, "DRIFT_MODELS", model, DriftCheckError, what="drift monitoring")
    try:
        min_rows = int(env.get("DRIFT_MIN_ROWS") or DEFAULT_DRIFT_MIN_ROWS)
        lookback = int(env.get("DRIFT_LOOKBACK_DAYS") or DEFAULT_DRIFT_LOOKBACK_DAYS)
    except ValueError as err:
        raise DriftCheckError(f"DRIFT_MIN_ROWS / DRIFT_LOOKBACK_DAYS must be integers: {err}") from None
    return DriftSettings(window=int(spec.get("window", DEFAULT_DRIFT_WINDOW)),
                         share=float(spec.get("share", DEFAULT_DRIFT_SHARE)),
                         min_rows=min_rows, lookback_days=lookback)


# --------------------------------------------------------------------------- capture window


@dataclass
class CaptureWindow:
    """The newest captured rows of a model, as columns for ``check_drift``."""

    columns: dict[str, np.ndarray]
    rows: int
    objects_read: int = 0
    lines_read: int = 0
    bad_lines: int = 0
    bad_instances: int = 0
    first_captured_at: str | None = None
    last_captured_at: str | None = None
    served_versions: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"objects_read": self.objects_read, "lines_read": self.lines_read,
                "bad_lines": self.bad_lines, "bad_instances": self.bad_instances,
                "first_captured_at": self.first_captured_at, "last_captured_at": self.last_captured_at,
                "served_versions": dict(self.served_versions)}


def _capture_objects(s3, bucket: str, model: str, *, now: datetime, lookback_days: int) -> Iterable[str]:
    """Keys under ``capture/<model>/`` newest first: one day prefix (UTC) at a time, back to the limit."""
    for back in range(lookback_days + 1):
        day = now - timedelta(days=back)
        prefix = f"{CAPTURE_PREFIX}{model}/{day:%Y/%m/%d}/"
        found: list[tuple[datetime, str]] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found.extend((o["LastModified"], o["Key"]) for o in page.get("Contents", []))
        # Firehose keys start with the hour and end with a timestamp, so the key orders them;
        # LastModified breaks ties between objects of one hour written by different writers.
        for _, key in sorted(found, key=lambda t: (t[1].rsplit("/", 1)[0], t[0], t[1]), reverse=True):
            yield key


def _number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return math.nan
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return math.nan
    return math.nan


def _instance_values(instance: Any, names: list[str]) -> list[Any] | None:
    """One instance as values in feature order (missing keys -> None); None when malformed."""
    if isinstance(instance, dict):
        return [instance.get(n) for n in names]
    if isinstance(instance, list) and len(instance) == len(names):
        return instance
    return None


def read_capture_window(s3, bucket: str, model: str, features: list[tuple[str, str]], rows: int, *,
                        now: datetime | None = None, lookback_days: int = DEFAULT_DRIFT_LOOKBACK_DAYS,
                        ) -> CaptureWindow:
    """The newest *rows* captured instances of *model* as columns (one per feature).

    ``features`` is ``[(name, "number"|"string"), ...]`` in schema order (arrays in requests
    follow it). Numeric cells become floats (null, non-numbers -> NaN, i.e. missing), string cells
    ``str`` or None. Lines that are not JSON and instances that fit neither form are counted and
    left out.
    """
    now = now or datetime.now(UTC)
    names = [n for n, _ in features]
    chunks: list[list[tuple[str | None, Any, list[Any]]]] = []  # per object, chronological
    total = 0
    win = CaptureWindow(columns={}, rows=0)
    for key in _capture_objects(s3, bucket, model, now=now, lookback_days=lookback_days):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", errors="replace")
        win.objects_read += 1
        chunk: list[tuple[str | None, Any, list[Any]]] = []
        for line in body.splitlines():
            if not line.strip():
                continue
            win.lines_read += 1
            try:
                record = json.loads(line)
                instances = record["instances"]
                if not isinstance(instances, list):
                    raise TypeError("instances is not a list")
            except (ValueError, KeyError, TypeError):
                win.bad_lines += 1
                continue
            for inst in instances:
                values = _instance_values(inst, names)
                if values is None:
                    win.bad_instances += 1
                    continue
                chunk.append((record.get("captured_at"), record.get("version"), values))
        chunks.append(chunk)
        total += len(chunk)
        if total >= rows:
            break
    ordered = [r for chunk in reversed(chunks) for r in chunk][-rows:] if rows > 0 else []
    win.rows = len(ordered)
    if ordered:
        stamps = [r[0] for r in ordered if isinstance(r[0], str)]
        if stamps:
            win.first_captured_at, win.last_captured_at = min(stamps), max(stamps)
        for _, version, _ in ordered:
            k = str(version)
            win.served_versions[k] = win.served_versions.get(k, 0) + 1
    for j, (name, ftype) in enumerate(features):
        cells = [r[2][j] for r in ordered]
        if ftype == NUMBER:
            win.columns[name] = np.fromiter((_number(v) for v in cells), dtype=float, count=len(cells))
        else:
            win.columns[name] = np.array([None if v is None else str(v) for v in cells], dtype=object)
    return win


# --------------------------------------------------------------------------- registry and baseline


def _baseline_artifact(record: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """What training recorded for baseline.json: ``lineage.artifacts["baseline.json"]`` (key, sha256)."""
    arts = ((record or {}).get("lineage") or {}).get("artifacts") or {}
    return arts.get("baseline.json") or {}


def baseline_key(model: str, version: int, record: Mapping[str, Any] | None = None) -> str:
    """The key training recorded in lineage, else ``models/<model>/v<N>/baseline.json`` (next to model.onnx)."""
    record = record or {}
    if _baseline_artifact(record).get("key"):
        return str(_baseline_artifact(record)["key"])
    artifact = record.get("artifact_key")
    if artifact:
        return posixpath.join(posixpath.dirname(str(artifact)), "baseline.json")
    return models_prefix(model, version) + "baseline.json"


def load_baseline(s3, bucket: str, key: str, model: str, version: int, sha256: str | None,
                  version_id: str | None = None) -> dict:
    """The baseline's JSON, read only if its bytes have the sha256 training recorded in lineage; the
    S3 object version it recorded (``version_id``) when there is one, so an overwrite is not read."""
    try:
        body = get_verified(s3, bucket, key, sha256 or "", version_id)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code in NOT_FOUND_CODES:
            raise BaselineMissing(
                f"model {model!r} production version {version} has no drift baseline at s3://{bucket}/{key}"
                + (f" (version {version_id})" if version_id else "") + f" ({code}); "
                "the training pipeline writes it next to model.onnx: retrain the model, or promote a "
                "version that has one") from None
        if code in ACCESS_DENIED_CODES:
            raise DriftCheckError(
                f"model {model!r} production version {version}: the drift baseline "
                f"{describe_s3_error(err, bucket, key, version_id)}") from None
        raise
    except IntegrityError as err:
        why = ("its lineage records no sha256 for baseline.json (lineage.artifacts)" if not sha256
               else "it is not the file training wrote")
        raise DriftCheckError(f"model {model!r} production version {version}: the drift baseline cannot be "
                              f"trusted, {why}: {err}; retrain the model") from None
    try:
        baseline = json.loads(body)
    except ValueError as err:
        raise DriftCheckError(f"baseline s3://{bucket}/{key} is not valid JSON: {err}") from None
    if not isinstance(baseline, dict) or not isinstance(baseline.get("features"), dict):
        raise DriftCheckError(f"baseline s3://{bucket}/{key} has no 'features' object; expected the output "
                              "of functions.core.baseline.build_baseline")
    return baseline


def _baseline_features(baseline: Mapping[str, Any], record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Baseline features with their types, in the version schema's order (arrays follow it)."""
    feats = baseline["features"]
    schema = (record.get("schema") or {}).get("features") or []
    order = [f["name"] for f in schema if isinstance(f, dict) and f.get("name") in feats]
    order += [n for n in feats if n not in order]
    out = []
    for name in order:
        ftype = feats[name].get("type")
        if ftype not in (NUMBER, STRING):
            raise DriftCheckError(f"baseline feature {name!r} has unknown type {ftype!r}")
        out.append((name, ftype))
    return out


def report_key(model: str, now: datetime) -> str:
    """``drift/<model>/<UTC timestamp>.json``; lexical order is time order (no ':' in the key)."""
    now = now.astimezone(UTC)
    return f"{DRIFT_PREFIX}{model}/{now:%Y-%m-%dT%H-%M-%S}.{now.microsecond // 1000:03d}Z.json"


def record_check(registry, report: Mapping[str, Any]) -> dict:
    """Append the check's summary to the registry's drift history (:meth:`Registry.put_drift_check`:
    item pk ``MODEL#<model>``, sk ``D#<checked_at>#<8 hex>``). See :func:`drift_history`."""
    check = {"version": report.get("version"), "checked_at": report["checked_at"], "rows": report["rows"],
             "skipped": report["skipped"], "reason": report.get("reason"),
             "drift_detected": report["drift_detected"], "drifted_share": report["drifted_share"],
             "drifted_features": list(report.get("drifted_features") or []), "report_key": report["report_key"]}
    return registry.put_drift_check(report["model"], check)


def drift_history(registry, model: str, limit: int | None = None) -> list[dict]:
    """Drift checks of *model*, newest first (:meth:`Registry.drift_history`, paginated)."""
    return registry.drift_history(model, limit)


# --------------------------------------------------------------------------- metrics and events


def emit_metrics(report: Mapping[str, Any], namespace: str = METRICS_NAMESPACE) -> None:
    """Publish the check's metrics as CloudWatch EMF lines (Powertools), one per dimension set.

    ``service`` is deliberately not a dimension: alarms and the dashboard address the metrics by
    ``Model`` (and ``Feature``) only.
    """
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    model = str(report["model"])
    metrics = EphemeralMetrics(namespace=namespace, service="")
    metrics.add_dimension(name="Model", value=model)
    metrics.add_metric(name=METRIC_ROWS_CHECKED, unit=MetricUnit.Count, value=float(report["rows"]))
    metrics.add_metric(name=METRIC_CHECKS_SKIPPED, unit=MetricUnit.Count, value=1.0 if report["skipped"] else 0.0)
    if not report["skipped"]:
        metrics.add_metric(name=METRIC_DRIFTED_SHARE, unit=MetricUnit.NoUnit, value=float(report["drifted_share"]))
        metrics.add_metric(name=METRIC_DRIFT_DETECTED, unit=MetricUnit.Count,
                           value=1.0 if report["drift_detected"] else 0.0)
    metrics.flush_metrics()
    for name, entry in (report.get("features") or {}).items():
        if entry.get("reason") is not None and not entry.get("drifted"):
            continue  # not evaluated (no baseline values): no score to publish
        metrics.add_dimension(name="Model", value=model)
        metrics.add_dimension(name="Feature", value=str(name)[:1024])
        metrics.add_metric(name=METRIC_DRIFT_SCORE, unit=MetricUnit.NoUnit, value=float(entry["value"]))
        metrics.add_metric(name=METRIC_DRIFT_THRESHOLD, unit=MetricUnit.NoUnit, value=float(entry["threshold"]))
        metrics.flush_metrics()


def drift_event_detail(report: Mapping[str, Any], bucket: str) -> dict:
    return {"model": report["model"], "version": report["version"], "checked_at": report["checked_at"],
            "rows": report["rows"], "drifted_share": report["drifted_share"], "share": report["share"],
            "drifted_features": list(report.get("drifted_features") or []),
            "report": {"bucket": bucket, "key": report["report_key"]}}


def send_drift_event(events, report: Mapping[str, Any], bucket: str, event_bus: str = "default") -> str:
    """PutEvents ``Drift Detected`` (source ``shipyard``); returns the event id."""
    try:
        return put_event(events, DRIFT_DETECTED, drift_event_detail(report, bucket), event_bus=event_bus)
    except EventNotDelivered as err:
        raise DriftCheckError(f"EventBridge refused the Drift Detected event of model {report['model']!r}: "
                              f"{err.code}: {err.error_message}") from None


# --------------------------------------------------------------------------- the HTML report


def html_report(s3, bucket: str, registry, model: str, *, now: datetime | None = None) -> str | None:
    """Write ``reports/<model>/<ts>.html`` (:func:`functions.core.report.write_report`); its key, or
    None when it failed: a report failure is logged and never fails the check."""
    try:
        return write_report(s3, bucket, registry, model, now=now)
    except Exception:  # noqa: BLE001 - the check's JSON report, item, metrics and event stand
        logger.exception("model %r: the HTML report could not be written", model)
        return None


# --------------------------------------------------------------------------- the check


def _skipped(rows: int, share: float, reason: str) -> dict[str, Any]:
    return {"rows": rows, "window": None, "min_rows": None, "share": float(share), "drift_detected": False,
            "drifted_share": 0.0, "drifted_features": [], "skipped": True, "reason": reason, "features": {}}


def run_check(model: str, *, registry, s3, bucket: str, settings: DriftSettings | None = None,
              events=None, event_bus: str = "default", now: datetime | None = None,
              emit: Callable[[Mapping[str, Any]], None] | None = emit_metrics) -> dict[str, Any]:
    """Check *model* now: write the report, record it, publish metrics, send the event when drifted.

    Returns the report (docs/monitoring.md "Report": the shape of docs/drift.md plus ``checked_at``,
    ``report_key``, ``baseline_key``, ``capture`` and, when checked, ``distributions`` (reference vs
    current shares per feature, for plots); the returned dict also names ``html_report_key``, the
    HTML report written after the JSON one (None if that failed), docs/reports.md). ``events=None``
    sends no event (the report still says ``drift_detected``); ``emit=None`` publishes no metrics.
    """
    settings = settings or DriftSettings()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    # One read: ModelNotFound for a model neither configured nor stored, else its aliases.
    version = registry.get_model(model)["aliases"].get("production")
    base: dict[str, Any] = {"model": model, "version": None}
    extra: dict[str, Any] = {"baseline_key": None, "capture": None}
    if version is None:
        body = _skipped(0, settings.share, f"model {model!r} has no production version yet: nothing to compare")
    else:
        version = int(version)
        base["version"] = version
        record = registry.get_version(model, version)
        key = baseline_key(model, version, record)
        artifact = _baseline_artifact(record)
        baseline = load_baseline(s3, bucket, key, model, version, artifact.get("sha256"), artifact.get("version_id"))
        features = _baseline_features(baseline, record)
        window = read_capture_window(s3, bucket, model, features, settings.window, now=now,
                                     lookback_days=settings.lookback_days)
        body = check_drift(baseline, window.columns, min_rows=settings.min_rows, share=settings.share)
        if not body["skipped"]:  # reference vs current shares per feature, for the HTML report's plots
            body["distributions"] = current_distributions(baseline, window.columns)
        if body["skipped"]:
            body["reason"] = (f"{window.rows} captured rows in the last {settings.lookback_days} days, fewer than "
                              f"min_rows={settings.min_rows}: not checked")
        extra = {"baseline_key": key, "capture": {"requested_rows": settings.window, **window.summary()}}
    report: dict[str, Any] = {**base, "rows": body["rows"], "window": body["window"],
                              "drift_detected": body["drift_detected"], "drifted_share": body["drifted_share"],
                              "features": body["features"], "drifted_features": body["drifted_features"],
                              "skipped": body["skipped"], "reason": body["reason"], "share": body["share"],
                              "min_rows": settings.min_rows, "checked_at": utc_iso(now),
                              "report_key": report_key(model, now), **extra}
    if body.get("distributions"):
        report["distributions"] = body["distributions"]
    # Where the HTML report of this check goes (written below, once this JSON is in place to be read).
    report["html_report_key"] = html_report_key(model, now)
    s3.put_object(Bucket=bucket, Key=report["report_key"], ContentType="application/json",
                  Body=json.dumps(report, allow_nan=False, indent=1).encode())
    record_check(registry, report)
    if html_report(s3, bucket, registry, model, now=now) is None:
        report["html_report_key"] = None  # the JSON names the key it was meant for; nothing is there
    if emit is not None:
        emit(report)
    if report["drift_detected"] and events is not None:
        report["event_id"] = send_drift_event(events, report, bucket, event_bus)
    return report


# --------------------------------------------------------------------------- retraining


def retrain_input(model: str, spec: Mapping[str, Any], dataset: Mapping[str, Any], *,
                  trigger: Mapping[str, Any]) -> dict:
    """Execution input of a retraining run: the upload rule's shape
    (``functions.pipeline.execution.execution_input``) with ``force: true`` and
    ``trigger.source = "drift"``.

    ``force`` makes the pipeline claim the run per execution rather than per dataset object
    version: retraining on the dataset that trained the current version must not end in
    ``AlreadyHandled``.
    """
    return execution_input(
        model, spec, {k: dataset[k] for k in ("bucket", "key", "version_id", "size", "etag") if k in dataset},
        force=True, trigger={"source": "drift", **dict(trigger)})
