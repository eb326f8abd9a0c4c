"""Uploads function: says what happened to an upload under ``datasets/`` that started no run.

Target of one EventBridge rule on every ``Object Created`` under ``datasets/`` of the data bucket
(infra/uploads.py). The per-model upload rules (infra/pipeline.py ``dataset_key_pattern``) start
the pipeline for ``datasets/<model>/…`` ending ``.csv`` or ``.csv.gz``; anything else there starts
nothing, and without this function nobody would hear of it. ``classify`` decides (no AWS, no
environment: the unit tests call it), the handler logs its message and emits its metric:

- ``dataset``: ``datasets/<model>/…`` ending ``.csv`` / ``.csv.gz`` (its model's rule starts the
  run): DEBUG, no metric.
- ``unowned``: under ``datasets/<folder>/`` where no model is named ``<folder>`` (``datasets/penguin/``
  for model ``penguins``), or a ``.csv``/``.csv.gz`` directly under ``datasets/``: WARNING naming the
  key, its prefix, the configured models and the closest model name; metric ``UnownedUploads``
  (alarmed: a training run was lost).
- ``ignored``: in a model's folder but not a dataset file (``notes.txt``, ``data.CSV``, a folder
  placeholder ``…/``), any folder placeholder, a non-CSV file directly under ``datasets/``:
  "ignored: not a dataset file (.csv or .csv.gz)" at INFO (WARNING when it looks like a dataset with
  the wrong case, ``.CSV``, or is a placeholder of a folder no model owns); metric ``IgnoredUploads``.

Metrics are EMF lines (Powertools ``EphemeralMetrics``, as the drift check's): namespace
``Shipyard``, one dimension ``Bucket`` (the data bucket, so two stacks in one account do not
share an alarm), no ``service`` dimension. The function calls no AWS API.

Environment: SHIPYARD_MODELS (JSON list of the configured model names), POWERTOOLS_SERVICE_NAME,
POWERTOOLS_METRICS_NAMESPACE.
"""
from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from aws_lambda_powertools import Logger

from functions.core.layout import DATASET_SUFFIXES, DATASETS_PREFIX, METRICS_NAMESPACE

# The metrics (namespace Shipyard, dimension Bucket); infra/uploads.py alarms on the first.
METRIC_UNOWNED_UPLOADS = "UnownedUploads"  # an upload under datasets/<folder>/ no model owns (or datasets/x)
METRIC_IGNORED_UPLOADS = "IgnoredUploads"  # not a dataset file in a model's folder; folder placeholders

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-uploads"))

DATASET, UNOWNED, IGNORED = "dataset", "unowned", "ignored"
NOT_A_DATASET = "ignored: not a dataset file (.csv or .csv.gz)"
_SUFFIXES = " or ".join(DATASET_SUFFIXES)


class UploadEventError(ValueError):
    """The event is not an S3 ``Object Created`` event with a bucket name and an object key."""


@dataclass(frozen=True)
class Verdict:
    """What an upload under ``datasets/`` became, and what to say about it."""

    verdict: str
    """``dataset`` (its model's rule starts a run), ``unowned`` or ``ignored``."""
    key: str
    prefix: str
    """``datasets/<folder>/`` the key is under (``datasets/`` for a key directly under it)."""
    model: str | None
    """The model owning ``prefix``, or ``None``."""
    closest: str | None
    """For a prefix no model owns: the configured model whose name is closest, if one looks meant."""
    models: list[str]
    message: str
    level: int
    """``logging.DEBUG`` / ``INFO`` / ``WARNING``."""
    metric: str | None
    """``UnownedUploads``, ``IgnoredUploads`` or ``None`` (a dataset)."""

    def as_dict(self) -> dict:
        out = asdict(self)
        out["level"] = logging.getLevelName(self.level)
        return out


def closest_model(name: str, models: Sequence[str]) -> str | None:
    """The configured model *name* most likely meant (``penguin`` → ``penguins``, ``Iris`` → ``iris``)."""
    if not name:
        return None
    lowered = {m.lower(): m for m in models}
    if name.lower() in lowered:
        return lowered[name.lower()]
    found = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[found[0]] if found else None


def _strip_suffix(name: str) -> str:
    for suffix in sorted(DATASET_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name.rsplit(".", 1)[0] if "." in name.strip(".") else name


def _listing(models: Sequence[str]) -> str:
    return ", ".join(models) if models else "none (context.shipyard.models in cdk.json is empty)"


def classify(key: str, models: Sequence[str]) -> Verdict:
    """Which of dataset / unowned / ignored the upload *key* under ``datasets/`` is, with its message.

    A key is owned by model ``m`` when it starts ``datasets/m/`` (sub-folders included, as the
    upload rule's wildcard); owned keys ending ``.csv`` or ``.csv.gz`` (case as written) are datasets.
    A folder placeholder (a key ending ``/``) holds no data, so it is ``ignored`` wherever it is.
    """
    models = list(models)
    verdict = dict(key=key, models=models, model=None, closest=None)
    rest = key[len(DATASETS_PREFIX):] if key.startswith(DATASETS_PREFIX) else key
    folder, sep, name = rest.partition("/")
    prefix = f"{DATASETS_PREFIX}{folder}/" if sep else DATASETS_PREFIX
    owned = bool(sep) and folder in models
    placeholder = key.endswith("/")
    expected = f"{DATASETS_PREFIX}<model>/<name>{DATASET_SUFFIXES[0]} (or {DATASET_SUFFIXES[1]})"

    if owned:
        verdict.update(prefix=prefix, model=folder)
        if key.endswith(DATASET_SUFFIXES) and not placeholder:
            return Verdict(verdict=DATASET, message=f"dataset upload {key} for model '{folder}': its upload "
                           "rule starts the pipeline", level=logging.DEBUG, metric=None, **verdict)
        if placeholder:
            what = "a folder placeholder"
            level = logging.INFO
        elif key.lower().endswith(DATASET_SUFFIXES):
            base = name.rsplit("/", 1)[-1]
            fixed = _strip_suffix(base) + next(s for s in sorted(DATASET_SUFFIXES, key=len, reverse=True)
                                               if base.lower().endswith(s))
            what = f"the suffix is case-sensitive: rename it to {fixed}"
            level = logging.WARNING
        else:
            what = f"only keys ending {_SUFFIXES} are datasets"
            level = logging.INFO
        return Verdict(verdict=IGNORED, message=f"{NOT_A_DATASET}: {key} is under model '{folder}''s prefix "
                       f"{prefix} but started no pipeline run ({what})", level=level,
                       metric=METRIC_IGNORED_UPLOADS, **verdict)

    if not sep:  # directly under datasets/: in no model's folder
        stem = _strip_suffix(folder)
        closest = closest_model(stem, models)
        verdict.update(prefix=prefix, closest=closest)
        if placeholder or not folder:  # the datasets/ folder itself
            return Verdict(verdict=IGNORED, message=f"ignored: {key} is the folder placeholder of {DATASETS_PREFIX}",
                           level=logging.INFO, metric=METRIC_IGNORED_UPLOADS, **verdict)
        if not key.lower().endswith(DATASET_SUFFIXES):  # a README beside the model folders: no data lost
            return Verdict(verdict=IGNORED, message=(
                f"{NOT_A_DATASET}: {key} is directly under {DATASETS_PREFIX}, in no model's folder, and started "
                "no pipeline run"), level=logging.INFO, metric=METRIC_IGNORED_UPLOADS, **verdict)
        hint = f" Did you mean {DATASETS_PREFIX}{closest}/{folder} (model '{closest}')?" if closest else ""
        return Verdict(verdict=UNOWNED, message=(
            f"unowned upload: {key} is directly under {DATASETS_PREFIX}, in no model's folder, so it started no "
            f"pipeline run.{hint} Expected {expected}; configured models: {_listing(models)}"),
            level=logging.WARNING, metric=METRIC_UNOWNED_UPLOADS, **verdict)

    closest = closest_model(folder, models)
    hint = f" Did you mean {DATASETS_PREFIX}{closest}/ (model '{closest}')?" if closest else ""
    verdict.update(prefix=prefix, closest=closest)
    if placeholder:
        return Verdict(verdict=IGNORED, message=(
            f"ignored: {key} is a folder placeholder under {prefix}, which no model owns: uploads there start "
            f"no pipeline run.{hint} Configured models: {_listing(models)}"),
            level=logging.WARNING, metric=METRIC_IGNORED_UPLOADS, **verdict)
    return Verdict(verdict=UNOWNED, message=(
        f"unowned upload: {key} is under {prefix}, which no model owns, so it started no pipeline run.{hint} "
        f"Expected {expected}, or add the model to cdk.json and deploy; configured models: {_listing(models)}"),
        level=logging.WARNING, metric=METRIC_UNOWNED_UPLOADS, **verdict)


def parse_event(event: Any) -> tuple[str, str]:
    """``(bucket, key)`` of an S3 ``Object Created`` event as EventBridge delivers it."""
    detail = event.get("detail") if isinstance(event, dict) else None
    bucket = ((detail or {}).get("bucket") or {}).get("name") if isinstance(detail, dict) else None
    key = ((detail or {}).get("object") or {}).get("key") if isinstance(detail, dict) else None
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        raise UploadEventError("expected an S3 Object Created event with detail.bucket.name and "
                               f"detail.object.key, got {json.dumps(event, default=str)[:300]}")
    return bucket, key


def models_from_env() -> list[str]:
    raw = os.environ.get("SHIPYARD_MODELS") or "[]"
    try:
        models = json.loads(raw)
    except ValueError:
        models = None
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise UploadEventError(f"SHIPYARD_MODELS must be a JSON list of model names, got {raw!r}")
    return models


def emit_metric(name: str, bucket: str, namespace: str | None = None) -> None:
    """One EMF line: *name* = 1 (Count), dimension ``Bucket``, without Powertools' ``service``."""
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    metrics = EphemeralMetrics(namespace=namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE")
                               or METRICS_NAMESPACE, service="")
    metrics.add_dimension(name="Bucket", value=bucket)
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1.0)
    metrics.flush_metrics()


@logger.inject_lambda_context
def handler(event: dict, context: Any) -> dict:
    bucket, key = parse_event(event)
    verdict = classify(key, models_from_env())
    log = {logging.DEBUG: logger.debug, logging.INFO: logger.info}.get(verdict.level, logger.warning)
    log(verdict.message, extra={
        "bucket": bucket, "key": key, "verdict": verdict.verdict, "prefix": verdict.prefix,
        "model": verdict.model, "closest_model": verdict.closest, "models": verdict.models,
        "metric": verdict.metric, "event_id": event.get("id")})
    if verdict.metric:
        emit_metric(verdict.metric, bucket)
    return {**verdict.as_dict(), "bucket": bucket}

