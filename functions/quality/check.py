"""One model quality check, end to end: what the quality function (and ``shipyard quality check``) runs.

    capture/<m>/YYYY/MM/DD/HH/…   (artifacts: predictions with their inference ids)  ─┐
    labels/<m>/*.csv              (data: inference_id + the target column)          ─┴► join ──► per version:
        score (the gate's metric, functions.core.metrics), confusion matrix | residuals
    ──► quality/<m>/<checked_at>.json, registry item (Q#…), metrics (ModelQuality, LabelledCount,
        LabelCoverage), "Quality Degraded" event when the production version's score breaks min_score

The join (docs/quality.md):

- captures are read back ``window + late_lookback`` seconds; a prediction captured at or after
  ``now - window`` is *in the window*;
- a label whose id names a prediction in the window is **matched**; one whose prediction is older
  than the window is **late**; one whose id is in no capture read is **unmatched**;
- a row without an id, without a target, or with a target that is not a number (regression) or not
  one of the model's classes (classification) is **malformed**; a file that is not a CSV with
  the ``inference_id`` and target columns counts all its rows as malformed and is named in
  ``labels.malformed_files``; an id labelled twice is a **duplicate** (the last label wins).

Nothing about labels is fatal: the counts are the report. numpy, boto3 and Powertools only (Lambda).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from functions.core import metrics as metric_functions
from functions.core.checkevent import model_settings
from functions.core.eventbus import EventNotDelivered, put_event
from functions.core.layout import CAPTURE_PREFIX, METRICS_NAMESPACE, VERSION_DIMENSION
from functions.core.registry import utc_iso
from functions.quality import (
    ID_COLUMN,
    LABELS_PREFIX,
    METRIC_LABEL_COVERAGE,
    METRIC_LABELLED_COUNT,
    METRIC_MODEL_QUALITY,
    QUALITY_DEGRADED,
    QUALITY_PREFIX,
    RETRAIN_MODES,
)

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_SECONDS = 7 * 86400
DEFAULT_MIN_LABELS = 200
DEFAULT_LATE_LOOKBACK_SECONDS = 7 * 86400  # captures read before the window, to tell late from unmatched
MAX_MALFORMED_EXAMPLES = 10


class QualityCheckError(Exception):
    """The check cannot run: unknown model, model without a quality block, bad settings."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class QualitySettings:
    """Per-model settings of a check (``quality`` in cdk.json and the model's spec, via ``QUALITY_MODELS``)."""

    target: str
    task: str = "classification"
    metric: str = "accuracy"
    min_score: float = 0.0
    min_labels: int = DEFAULT_MIN_LABELS
    window: int = DEFAULT_WINDOW_SECONDS
    retrain: str | None = None
    late_lookback: int = DEFAULT_LATE_LOOKBACK_SECONDS

    def __post_init__(self) -> None:
        if self.task not in ("classification", "regression"):
            raise QualityCheckError(f"task must be classification or regression, got {self.task!r}")
        try:
            metric_functions.task_of(self.metric)
        except ValueError as err:
            raise QualityCheckError(str(err)) from None
        if metric_functions.task_of(self.metric) != self.task:
            raise QualityCheckError(f"metric {self.metric!r} is not a {self.task} metric")
        if not isinstance(self.min_labels, int) or self.min_labels < 1:
            raise QualityCheckError(f"min_labels must be an integer >= 1, got {self.min_labels!r}")
        if not isinstance(self.window, int) or self.window < 1:
            raise QualityCheckError(f"window must be a whole number of seconds >= 1, got {self.window!r}")
        if self.retrain is not None and self.retrain not in RETRAIN_MODES:
            raise QualityCheckError(f"retrain must be null or one of {list(RETRAIN_MODES)}, got {self.retrain!r}")

    @property
    def higher_is_better(self) -> bool:
        return metric_functions.higher_is_better(self.metric)

    def breaks(self, score: float | None) -> bool:
        """True when *score* breaks ``min_score`` as the gate reads it: below it (accuracy, f1,
        roc_auc, r2), above it for the errors rmse/mae (where a ``min_score`` of 0 sets no ceiling)."""
        if score is None:
            return False
        if self.higher_is_better:
            return score < self.min_score
        return self.min_score > 0 and score > self.min_score


def settings_document(spec: Any) -> dict:
    """A ``ModelSpec`` with a ``quality`` block (infra/config.py) as ``QUALITY_MODELS`` carries it."""
    q = spec.quality
    return {"target": spec.target, "task": spec.task, "metric": spec.metric,
            "min_score": q.min_score if q.min_score is not None else spec.min_score,
            "min_labels": q.min_labels, "window": q.window, "retrain": q.retrain}


def settings_from_env(model: str, environ: Mapping[str, str] | None = None) -> QualitySettings:
    """Settings of *model* from ``QUALITY_MODELS`` (JSON model -> settings) and ``QUALITY_LATE_LOOKBACK``."""
    env = os.environ if environ is None else environ
    spec = model_settings(env, "QUALITY_MODELS", model, QualityCheckError,
                          what="quality monitoring (a 'quality' block in cdk.json)")
    try:
        late = int(env.get("QUALITY_LATE_LOOKBACK") or DEFAULT_LATE_LOOKBACK_SECONDS)
    except ValueError as err:
        raise QualityCheckError(f"QUALITY_LATE_LOOKBACK must be an integer number of seconds: {err}") from None
    try:
        return QualitySettings(target=str(spec["target"]), task=spec.get("task", "classification"),
                               metric=spec.get("metric", "accuracy"), min_score=float(spec.get("min_score") or 0.0),
                               min_labels=int(spec.get("min_labels", DEFAULT_MIN_LABELS)),
                               window=int(spec.get("window", DEFAULT_WINDOW_SECONDS)),
                               retrain=spec.get("retrain") or None, late_lookback=late)
    except (KeyError, TypeError, ValueError) as err:
        raise QualityCheckError(f"QUALITY_MODELS[{model!r}] is not valid settings: {err}") from None


# --------------------------------------------------------------------------- captured predictions


@dataclass
class Captured:
    """One captured prediction."""

    version: Any
    captured_at: datetime | None
    instance: Any
    prediction: Any
    probabilities: list | None
    classes: list | None
    in_window: bool


@dataclass
class Captures:
    """Predictions captured back to the lookback, by inference id."""

    by_id: dict[str, Captured] = field(default_factory=dict)
    in_window: int = 0           # predictions captured in the window (with or without an id)
    without_ids: int = 0         # of those, predictions that carry no inference id (cannot be joined)
    objects_read: int = 0
    lines_read: int = 0
    bad_lines: int = 0

    def summary(self) -> dict[str, Any]:
        return {"objects_read": self.objects_read, "lines_read": self.lines_read, "bad_lines": self.bad_lines,
                "without_ids": self.without_ids, "predictions": len(self.by_id)}


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _key_hour(key: str) -> datetime | None:
    """``capture/<m>/YYYY/MM/DD/HH/…``: the hour Firehose delivered the object in."""
    parts = key.split("/")
    try:
        return datetime(int(parts[2]), int(parts[3]), int(parts[4]), int(parts[5]), tzinfo=UTC)
    except (IndexError, ValueError):
        return None


def _capture_keys(s3, bucket: str, model: str, *, start: datetime, now: datetime) -> Iterable[str]:
    """Keys under ``capture/<model>/``, one UTC day prefix at a time from *start*'s day to today's, oldest first."""
    day = start.date()
    while day <= now.date():
        prefix = f"{CAPTURE_PREFIX}{model}/{day:%Y/%m/%d}/"
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        yield from sorted(keys)
        day += timedelta(days=1)


def parse_capture_lines(body: str, key: str, caps: Captures, *, window_start: datetime,
                        lookback_start: datetime) -> None:
    """Add one capture object's predictions (JSON lines) to *caps*."""
    hour = _key_hour(key)
    for line in body.splitlines():
        if not line.strip():
            continue
        caps.lines_read += 1
        try:
            record = json.loads(line)
            instances = record["instances"]
            predictions = record["predictions"]
            if not isinstance(instances, list) or not isinstance(predictions, list):
                raise TypeError("instances/predictions are not lists")
        except (ValueError, KeyError, TypeError):
            caps.bad_lines += 1
            continue
        stamp = _parse_time(record.get("captured_at")) or hour
        if stamp is not None and stamp < lookback_start:
            continue
        in_window = stamp is None or stamp >= window_start
        ids = record.get("inference_ids")
        ids = ids if isinstance(ids, list) else []
        probabilities = record.get("probabilities")
        probabilities = probabilities if isinstance(probabilities, list) else None
        classes = record.get("classes") if isinstance(record.get("classes"), list) else None
        for i, prediction in enumerate(predictions):
            if in_window:
                caps.in_window += 1
            iid = ids[i] if i < len(ids) else None
            if iid is None or iid == "":
                if in_window:
                    caps.without_ids += 1
                continue
            caps.by_id[str(iid)] = Captured(
                version=record.get("version"), captured_at=stamp,
                instance=instances[i] if i < len(instances) else None,
                prediction=prediction[0] if isinstance(prediction, list) and len(prediction) == 1 else prediction,
                probabilities=probabilities[i] if probabilities is not None and i < len(probabilities) else None,
                classes=classes, in_window=in_window)


def read_captures(s3, bucket: str, model: str, *, now: datetime, window: int, late_lookback: int) -> Captures:
    """Every prediction captured from ``now - window - late_lookback`` on, by inference id."""
    window_start = now - timedelta(seconds=window)
    lookback_start = window_start - timedelta(seconds=late_lookback)
    caps = Captures()
    for key in _capture_keys(s3, bucket, model, start=lookback_start, now=now):
        hour = _key_hour(key)
        if hour is not None and hour + timedelta(hours=1) < lookback_start:
            continue
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", errors="replace")
        caps.objects_read += 1
        parse_capture_lines(body, key, caps, window_start=window_start, lookback_start=lookback_start)
    return caps


# --------------------------------------------------------------------------- labels


@dataclass
class Labels:
    """Ground truth read from ``labels/<model>/``: id -> (raw target, file key), and the counts."""

    by_id: dict[str, tuple[str, str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    rows: int = 0
    malformed: int = 0
    duplicates: int = 0
    malformed_files: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)  # why rows were malformed (the first few)

    def bad(self, why: str, n: int = 1) -> None:
        self.malformed += n
        if len(self.examples) < MAX_MALFORMED_EXAMPLES:
            self.examples.append(why)


def _parse_target(value: str, task: str) -> Any:
    """The label as the task reads it (regression: a finite float), or None when it cannot be."""
    value = value.strip()
    if not value:
        return None
    if task == "regression":
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return value


def parse_label_file(data: bytes, key: str, target: str, task: str, labels: Labels) -> None:
    """Add one label file's rows to *labels*; never raises."""
    labels.files.append(key)
    try:
        text = data.decode("utf-8-sig")
        if "\x00" in text:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte: not a text file")
    except UnicodeDecodeError:
        rows = max(1, data.count(b"\n"))
        labels.rows += rows
        labels.bad(f"{key}: not a UTF-8 CSV file ({rows} rows counted malformed)", rows)
        labels.malformed_files.append(key)
        return
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        labels.malformed_files.append(key)
        labels.bad(f"{key}: empty file", 0)
        return
    try:
        reader = csv.reader(io.StringIO("\n".join(lines)))
        header = [h.strip() for h in next(reader)]
        body = list(reader)
    except csv.Error as err:
        labels.rows += len(lines)
        labels.bad(f"{key}: not a CSV file ({err})", len(lines))
        labels.malformed_files.append(key)
        return
    if ID_COLUMN not in header or target not in header:
        missing = [c for c in (ID_COLUMN, target) if c not in header]
        rows = len(lines) - 1 if len(header) > 1 and missing != [ID_COLUMN, target] else len(lines)
        labels.rows += rows
        labels.bad(f"{key}: no column {' or '.join(repr(m) for m in missing)} in the header "
                   f"(expected {ID_COLUMN!r} and the target {target!r})", rows)
        labels.malformed_files.append(key)
        return
    id_at, target_at = header.index(ID_COLUMN), header.index(target)
    for n, row in enumerate(body, start=2):
        labels.rows += 1
        iid = row[id_at].strip() if id_at < len(row) else ""
        raw = row[target_at] if target_at < len(row) else ""
        if not iid:
            labels.bad(f"{key} line {n}: no {ID_COLUMN}")
            continue
        if _parse_target(raw, task) is None:
            labels.bad(f"{key} line {n}: target {raw!r} is " + ("missing" if not raw.strip() else
                                                                  f"not a number ({task})"))
            continue
        if iid in labels.by_id:
            labels.duplicates += 1
        labels.by_id[iid] = (raw.strip(), key)


def read_labels(s3, bucket: str, model: str, target: str, task: str, *, since: datetime | None = None) -> Labels:
    """Every label file under ``labels/<model>/`` (oldest first, so a later label of an id wins);
    files last modified before *since* cannot label a prediction of the lookback and are not read."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{LABELS_PREFIX}{model}/"):
        for o in page.get("Contents", []):
            if o["Key"].endswith("/"):
                continue
            if since is not None and o["LastModified"] < since:
                continue
            found.append((o["LastModified"], o["Key"]))
    labels = Labels()
    for _, key in sorted(found):
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        parse_label_file(data, key, target, task, labels)
    return labels


# --------------------------------------------------------------------------- join and scores


@dataclass
class Pair:
    """A captured prediction with its label."""

    inference_id: str
    version: str
    instance: Any
    prediction: Any
    probabilities: list | None
    classes: list | None
    label: Any
    label_file: str


@dataclass
class Joined:
    pairs: list[Pair] = field(default_factory=list)
    unmatched: int = 0
    late: int = 0
    malformed: int = 0  # labels of a matched prediction that are not one of the model's classes
    examples: list[str] = field(default_factory=list)


def _as_class(raw: str, classes: list | None) -> Any:
    """A CSV label as one of the model's classes (``"1"`` -> 1 for numeric classes); None if none."""
    if not classes:
        return raw
    for c in classes:
        if isinstance(c, bool):
            continue
        if str(c) == raw:
            return c
        if isinstance(c, (int, float)):
            try:
                if float(raw) == float(c):
                    return c
            except ValueError:
                pass
    return None


def join(caps: Captures, labels: Labels, task: str) -> Joined:
    """Labels joined with captured predictions by inference id (module docstring)."""
    out = Joined()
    for iid, (raw, key) in labels.by_id.items():
        cap = caps.by_id.get(iid)
        if cap is None:
            out.unmatched += 1
            continue
        if not cap.in_window:
            out.late += 1
            continue
        if task == "regression":
            label = _parse_target(raw, task)
        else:
            label = _as_class(raw, cap.classes)
            if label is None:
                out.malformed += 1
                if len(out.examples) < MAX_MALFORMED_EXAMPLES:
                    out.examples.append(f"{key}: label {raw!r} of {iid} is not one of the model's classes "
                                        f"{cap.classes}")
                continue
        out.pairs.append(Pair(iid, str(cap.version), cap.instance, cap.prediction, cap.probabilities,
                              cap.classes, label, key))
    return out


def residual_summary(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Residuals ``label - prediction``: count, mean (signed: the bias), mae, rmse, and the 50th/90th/99th
    percentiles of the absolute residuals."""
    r = y_true - y_pred
    a = np.abs(r)
    return {"count": int(r.size), "mean": float(np.mean(r)), "mae": float(np.mean(a)),
            "rmse": float(math.sqrt(float(np.mean(r ** 2)))), "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99))}


def confusion_matrix(y_true: list, y_pred: list, classes: list | None) -> dict[str, Any]:
    """Rows are labels, columns predictions, both in the order of ``classes`` (the model's; else the
    sorted values seen)."""
    labels = list(classes) if classes else sorted({*y_true, *y_pred}, key=str)
    for v in (*y_true, *y_pred):  # a prediction outside the classes (should not happen) still counts
        if v not in labels:
            labels.append(v)
    index = {c: i for i, c in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in zip(y_true, y_pred):
        matrix[index[t]][index[p]] += 1
    return {"labels": labels, "matrix": matrix}


def score_version(pairs: list[Pair], settings: QualitySettings) -> dict[str, Any]:
    """``{"labelled", "score", "confusion_matrix" | "residuals"[, "error"]}`` of one version's pairs."""
    entry: dict[str, Any] = {"labelled": len(pairs), "score": None}
    if not pairs:
        return entry
    y_true = [p.label for p in pairs]
    y_pred = [p.prediction for p in pairs]
    try:
        if settings.task == "regression":
            t = np.asarray(y_true, dtype=float)
            pr = np.asarray(y_pred, dtype=float)
            entry["residuals"] = residual_summary(t, pr)
            entry["score"] = metric_functions.score(settings.metric, t, pr)
        else:
            classes = next((p.classes for p in pairs if p.classes), None)
            entry["confusion_matrix"] = confusion_matrix(y_true, y_pred, classes)
            probabilities = None
            if metric_functions.needs_probabilities(settings.metric):
                if any(p.probabilities is None for p in pairs):
                    raise ValueError("roc_auc needs the captured probabilities, and some predictions have none")
                probabilities = [p.probabilities for p in pairs]
            entry["score"] = metric_functions.score(settings.metric, y_true, y_pred, probabilities=probabilities,
                                                    classes=classes)
    except (ValueError, TypeError) as err:
        entry["score"] = None
        entry["error"] = str(err)
    if entry["score"] is not None and not math.isfinite(entry["score"]):
        entry["score"], entry["error"] = None, f"{settings.metric} is not finite"
    return entry


# --------------------------------------------------------------------------- report


def report_key(model: str, now: datetime) -> str:
    """``quality/<model>/<UTC timestamp>.json``; lexical order is time order (no ':' in the key)."""
    now = now.astimezone(UTC)
    return f"{QUALITY_PREFIX}{model}/{now:%Y-%m-%dT%H-%M-%S}.{now.microsecond // 1000:03d}Z.json"


def evaluate(model: str, *, production: int | None, caps: Captures, labels: Labels, settings: QualitySettings,
             now: datetime) -> dict[str, Any]:
    """The report (docs/quality.md, "Report"), without ``report_key``/``retrain``: the join, every
    version's score, the production version's verdict."""
    joined = join(caps, labels, settings.task)
    by_version: dict[str, list[Pair]] = {}
    for p in joined.pairs:
        by_version.setdefault(p.version, []).append(p)
    versions = {v: score_version(pairs, settings)
                for v, pairs in sorted(by_version.items(), key=lambda kv: (len(kv[0]), kv[0]))}
    matched = len(joined.pairs)
    prod = versions.get(str(production)) if production is not None else None
    labelled = prod["labelled"] if prod else 0
    score = prod["score"] if prod else None
    reason = None
    if production is None:
        reason = f"model {model!r} has no production version yet: nothing to judge"
    elif labelled < settings.min_labels:
        reason = (f"{labelled} labelled predictions of production v{production} in the window, fewer than "
                  f"min_labels={settings.min_labels}: not judged")
    elif score is None:
        reason = f"the {settings.metric} of v{production} cannot be computed: {prod.get('error')}"
    skipped = reason is not None
    degraded = not skipped and settings.breaks(score)
    window_start = now - timedelta(seconds=settings.window)
    return {
        "model": model, "checked_at": utc_iso(now),
        "window": {"start": utc_iso(window_start), "end": utc_iso(now)},
        "metric": settings.metric, "higher_is_better": settings.higher_is_better,
        "min_score": settings.min_score, "min_labels": settings.min_labels,
        "labels": {"files": len(labels.files), "rows": labels.rows, "matched": matched,
                   "unmatched": joined.unmatched, "malformed": labels.malformed + joined.malformed,
                   "duplicates": labels.duplicates, "late": joined.late,
                   "malformed_files": list(labels.malformed_files),
                   "malformed_examples": (labels.examples + joined.examples)[:MAX_MALFORMED_EXAMPLES]},
        "captured": caps.in_window,
        "coverage": (matched / caps.in_window) if caps.in_window else None,
        "capture": caps.summary(),
        "versions": versions,
        "version": production, "score": score, "degraded": degraded, "skipped": skipped, "reason": reason,
        "retrain": None,
    }


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The registry item of a check: the report without the per-version matrices/residuals."""
    out = {k: v for k, v in report.items() if k not in ("versions", "capture")}
    out["versions"] = {v: {k: e[k] for k in ("labelled", "score") if k in e}
                       for v, e in (report.get("versions") or {}).items()}
    out["labels"] = {k: v for k, v in (report.get("labels") or {}).items() if k != "malformed_examples"}
    return out


# --------------------------------------------------------------------------- metrics and events


def emit_metrics(report: Mapping[str, Any], namespace: str = METRICS_NAMESPACE) -> None:
    """Publish the check's metrics as EMF lines (Powertools). ``ModelQuality`` only for a version with
    at least ``min_labels`` labelled predictions and a score, so an alarm that treats missing data as
    not breaching never fires on too few labels."""
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    model = str(report["model"])
    min_labels = int(report["min_labels"])
    m = EphemeralMetrics(namespace=namespace, service="")
    m.add_dimension(name="Model", value=model)
    m.add_metric(name=METRIC_LABELLED_COUNT, unit=MetricUnit.Count, value=float(report["labels"]["matched"]))
    if report.get("coverage") is not None:
        m.add_metric(name=METRIC_LABEL_COVERAGE, unit=MetricUnit.NoUnit, value=float(report["coverage"]))
    prod = (report.get("versions") or {}).get(str(report.get("version")))
    if prod and prod.get("score") is not None and prod["labelled"] >= min_labels:
        m.add_metric(name=METRIC_MODEL_QUALITY, unit=MetricUnit.NoUnit, value=float(prod["score"]))
    m.flush_metrics()
    for version, entry in (report.get("versions") or {}).items():
        m.add_dimension(name="Model", value=model)
        m.add_dimension(name=VERSION_DIMENSION, value=str(version))
        m.add_metric(name=METRIC_LABELLED_COUNT, unit=MetricUnit.Count, value=float(entry["labelled"]))
        if entry.get("score") is not None and entry["labelled"] >= min_labels:
            m.add_metric(name=METRIC_MODEL_QUALITY, unit=MetricUnit.NoUnit, value=float(entry["score"]))
        m.flush_metrics()


def event_detail(report: Mapping[str, Any], bucket: str) -> dict:
    return {"model": report["model"], "version": report["version"], "metric": report["metric"],
            "score": report["score"], "min_score": report["min_score"],
            "labelled": (report["versions"].get(str(report["version"])) or {}).get("labelled", 0),
            "checked_at": report["checked_at"], "report_key": report["report_key"],
            "report": {"bucket": bucket, "key": report["report_key"]}, "retrain": report.get("retrain_mode")}


def send_event(events, report: Mapping[str, Any], bucket: str, event_bus: str = "default") -> str:
    """PutEvents ``Quality Degraded`` (source ``shipyard``); returns the event id."""
    try:
        return put_event(events, QUALITY_DEGRADED, event_detail(report, bucket), event_bus=event_bus)
    except EventNotDelivered as err:
        raise QualityCheckError(f"EventBridge refused the Quality Degraded event of model {report['model']!r}: "
                                f"{err.code}: {err.error_message}") from None


def write_html_report(report: Mapping[str, Any], *, s3, bucket: str, registry, now: datetime) -> str | None:
    """``reports/<model>/<ts>.html`` (:func:`functions.core.report.write_report`, which reads the quality
    history and the newest quality JSON: call it after both are written); its key, or None when it
    failed: a report failure is logged and never fails the check."""
    try:
        from functions.core.report import write_report

        return write_report(s3, bucket, registry, report["model"], now=now)
    except Exception:  # noqa: BLE001 - the check's JSON report, item, metrics and event stand
        logger.exception("model %r: the HTML report could not be written (the quality check itself is done)",
                         report["model"])
        return None


# --------------------------------------------------------------------------- the check


def run_check(model: str, *, registry, s3, bucket: str, data_bucket: str, settings: QualitySettings,
              events=None, event_bus: str = "default", now: datetime | None = None,
              emit: Callable[[Mapping[str, Any]], None] | None = emit_metrics,
              html: bool = True) -> dict[str, Any]:
    """Check *model* now: join, score, write the report, record it, publish metrics, send the event
    when degraded. ``events=None`` sends no event; ``emit=None`` publishes no metrics."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    production = registry.get_model(model)["aliases"].get("production")  # ModelNotFound for unknown models
    production = int(production) if production is not None else None
    caps = read_captures(s3, bucket, model, now=now, window=settings.window, late_lookback=settings.late_lookback)
    since = now - timedelta(seconds=settings.window + settings.late_lookback)
    labels = read_labels(s3, data_bucket, model, settings.target, settings.task, since=since)
    report = evaluate(model, production=production, caps=caps, labels=labels, settings=settings, now=now)
    report["report_key"] = report_key(model, now)
    if report["degraded"] and settings.retrain:
        report["retrain"] = {"mode": settings.retrain, "requested": events is not None}
    s3.put_object(Bucket=bucket, Key=report["report_key"], ContentType="application/json",
                  Body=json.dumps(report, allow_nan=False, indent=1, default=str).encode())
    registry.put_quality_check(model, summary(report))
    if emit is not None:
        emit(report)
    if html:
        report["html_report_key"] = write_html_report(report, s3=s3, bucket=bucket, registry=registry, now=now)
    if report["degraded"] and events is not None:
        report["event_id"] = send_event(events, {**report, "retrain_mode": settings.retrain}, bucket, event_bus)
    return report
