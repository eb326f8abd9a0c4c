"""Uploads function: says what happened to an upload under ``datasets/`` or ``batch/`` that started no run.

Target of one EventBridge rule on every ``Object Created`` under ``datasets/`` or ``batch/`` of the
data bucket (infra/uploads.py). The per-model upload rules start a run for their own keys only:
``datasets/<model>/…`` ending ``.csv`` or ``.csv.gz`` a pipeline run (infra/pipeline.py
``dataset_key_pattern``), ``batch/<model>/…`` ending ``.csv`` a batch scoring run (infra/batch.py
``batch_key_pattern``); anything else there starts nothing, and without this function nobody would
hear of it. ``classify`` decides (no AWS, no environment: the unit tests call it), the handler logs
its message and emits its metric. One ``Route`` per prefix says what starts what (``ROUTES``); the
verdicts are the same for both:

- ``dataset`` / ``batch``: ``<prefix><model>/…`` with one of the route's suffixes (its model's rule
  starts the run): DEBUG, no metric.
- ``unowned``: under ``<prefix><folder>/`` where no model is named ``<folder>`` (``datasets/penguin/``
  or ``batch/penguin/`` for model ``penguins``), or a CSV directly under the prefix: WARNING naming
  the key, its prefix, the configured models and the closest model name; metric ``UnownedUploads``
  (alarmed: a training or scoring run was lost).
- ``ignored``: in a model's folder but not one of the route's files (``notes.txt``, ``data.CSV``, in
  ``batch/`` also ``nightly.csv.gz``, a folder placeholder ``…/``), any folder placeholder, a non-CSV
  file directly under the prefix: "ignored: not a dataset file (.csv or .csv.gz)" / "ignored: not a
  batch input (.csv)" at INFO (WARNING when it looks like one with the wrong case, ``.CSV``, or
  compressed where only plain CSV is read, or is a placeholder of a folder no model owns); metric
  ``IgnoredUploads``.

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

from functions.core.layout import BATCH_PREFIX, DATASET_SUFFIXES, DATASETS_PREFIX, METRICS_NAMESPACE

# The metrics (namespace Shipyard, dimension Bucket); infra/uploads.py alarms on the first.
METRIC_UNOWNED_UPLOADS = "UnownedUploads"  # under <prefix><folder>/ no model owns, or a CSV directly under <prefix>
METRIC_IGNORED_UPLOADS = "IgnoredUploads"  # not a run's input in a model's folder; folder placeholders

# What the batch upload rules take (infra/batch.py batch_key_pattern: batch/<model>/*.csv): plain CSV
# only, Step Functions' CSV reader does not decompress. tests/infra/test_uploads_infra.py checks that
# classify says "started a run" exactly when a synthesized upload rule matches.
BATCH_SUFFIXES = (".csv",)

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-uploads"))

DATASET, BATCH, UNOWNED, IGNORED = "dataset", "batch", "unowned", "ignored"


@dataclass(frozen=True)
class Route:
    """One watched prefix: which keys under ``<prefix><model>/`` start which run."""

    prefix: str
    suffixes: tuple[str, ...]
    """The keys that start a run end with one of these (case as written)."""
    verdict: str
    """The verdict of a key that starts a run (``dataset``, ``batch``)."""
    noun: str
    """What such a key is: ``dataset file``, ``batch input``."""
    run: str
    """What it starts: ``pipeline run``, ``batch scoring run``."""
    unread: tuple[tuple[str, str], ...] = ()
    """Suffixes (lower case) that look like an input but are not read, with why."""

    @property
    def plural(self) -> str:
        """``datasets``, ``batch inputs``."""
        return f"{self.noun.removesuffix(' file')}s"

    @property
    def not_an_input(self) -> str:
        return f"ignored: not a {self.noun} ({' or '.join(self.suffixes)})"

    @property
    def expected(self) -> str:
        more = f" (or {', '.join(self.suffixes[1:])})" if len(self.suffixes) > 1 else ""
        return f"{self.prefix}<model>/<name>{self.suffixes[0]}{more}"

    def looks_like_input(self, key: str) -> bool:
        """Ends with one of the suffixes in any case, or with one of the unread ones."""
        lowered = key.lower()
        return lowered.endswith(self.suffixes) or lowered.endswith(tuple(s for s, _ in self.unread))


DATASETS = Route(DATASETS_PREFIX, DATASET_SUFFIXES, DATASET, "dataset file", "pipeline run")
BATCH_INPUTS = Route(BATCH_PREFIX, BATCH_SUFFIXES, BATCH, "batch input", "batch scoring run", unread=(
    (".csv.gz", "batch scoring reads plain CSV only, a gzip file is not read"),))
ROUTES = (DATASETS, BATCH_INPUTS)


class UploadEventError(ValueError):
    """The event is not an S3 ``Object Created`` event with a bucket name and an object key."""


@dataclass(frozen=True)
class Verdict:
    """What an upload under ``datasets/`` or ``batch/`` became, and what to say about it."""

    verdict: str
    """``dataset`` / ``batch`` (its model's rule starts a run), ``unowned`` or ``ignored``."""
    key: str
    prefix: str
    """``<route prefix><folder>/`` the key is under (``datasets/``, ``batch/`` for a key directly under it)."""
    model: str | None
    """The model owning ``prefix``, or ``None``."""
    closest: str | None
    """For a prefix no model owns: the configured model whose name is closest, if one looks meant."""
    models: list[str]
    message: str
    level: int
    """``logging.DEBUG`` / ``INFO`` / ``WARNING``."""
    metric: str | None
    """``UnownedUploads``, ``IgnoredUploads`` or ``None`` (a run's input, or a key under no route)."""

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


def _by_length(suffixes) -> list[str]:
    return sorted(suffixes, key=len, reverse=True)


def _strip_suffix(name: str, suffixes: Sequence[str] = DATASET_SUFFIXES) -> str:
    for suffix in _by_length(suffixes):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name.rsplit(".", 1)[0] if "." in name.strip(".") else name


def _near_miss(base: str, route: Route) -> str | None:
    """Why *base* (a file name that looks like an input) is not one, and its name as one."""
    lowered = base.lower()
    for suffix, why in sorted(route.unread, key=lambda u: len(u[0]), reverse=True):
        if lowered.endswith(suffix):
            return f"{why}: upload it uncompressed as {base[: -len(suffix)]}{route.suffixes[0]}"
    for suffix in _by_length(route.suffixes):
        if lowered.endswith(suffix):
            return f"the suffix is case-sensitive: rename it to {base[: -len(suffix)]}{suffix}"
    return None


def _listing(models: Sequence[str]) -> str:
    return ", ".join(models) if models else "none (context.shipyard.models in cdk.json is empty)"


def route_of(key: str) -> Route | None:
    """The route whose prefix *key* is under, or ``None``."""
    return next((r for r in ROUTES if key.startswith(r.prefix)), None)


def classify(key: str, models: Sequence[str]) -> Verdict:
    """Which of dataset / batch / unowned / ignored the upload *key* is, with its message.

    A key is owned by model ``m`` when it starts ``<prefix>m/`` (sub-folders included, as the upload
    rules' wildcards); owned keys ending one of the route's suffixes (case as written) start a run.
    A folder placeholder (a key ending ``/``) holds no data, so it is ``ignored`` wherever it is.
    """
    models = list(models)
    verdict = dict(key=key, models=models, model=None, closest=None)
    route = route_of(key)
    if route is None:  # the rule sends none: said, not counted
        return Verdict(verdict=IGNORED, prefix="", message=(
            f"ignored: {key} is under none of {', '.join(r.prefix for r in ROUTES)}, which this function watches"),
            level=logging.INFO, metric=None, **verdict)
    rest = key[len(route.prefix):]
    folder, sep, name = rest.partition("/")
    prefix = f"{route.prefix}{folder}/" if sep else route.prefix
    owned = bool(sep) and folder in models
    placeholder = key.endswith("/")
    starts = f"started no {route.run}"

    if owned:
        verdict.update(prefix=prefix, model=folder)
        if key.endswith(route.suffixes) and not placeholder:
            return Verdict(verdict=route.verdict, message=(
                f"{route.noun.split()[0]} upload {key} for model '{folder}': its upload rule starts the {route.run}"),
                level=logging.DEBUG, metric=None, **verdict)
        near = None if placeholder else _near_miss(name.rsplit("/", 1)[-1], route)
        if placeholder:
            what, level = "a folder placeholder", logging.INFO
        elif near:
            what, level = near, logging.WARNING
        else:
            what, level = f"only keys ending {' or '.join(route.suffixes)} are {route.plural}", logging.INFO
        return Verdict(verdict=IGNORED, message=f"{route.not_an_input}: {key} is under model '{folder}''s prefix "
                       f"{prefix} but {starts} ({what})", level=level, metric=METRIC_IGNORED_UPLOADS, **verdict)

    if not sep:  # directly under the prefix: in no model's folder
        stem = _strip_suffix(folder, (*route.suffixes, *(s for s, _ in route.unread)))
        closest = closest_model(stem, models)
        verdict.update(prefix=prefix, closest=closest)
        if placeholder or not folder:  # the prefix's folder itself
            return Verdict(verdict=IGNORED, message=f"ignored: {key} is the folder placeholder of {route.prefix}",
                           level=logging.INFO, metric=METRIC_IGNORED_UPLOADS, **verdict)
        if not route.looks_like_input(key):  # a README beside the model folders: no data lost
            return Verdict(verdict=IGNORED, message=(
                f"{route.not_an_input}: {key} is directly under {route.prefix}, in no model's folder, and {starts}"),
                level=logging.INFO, metric=METRIC_IGNORED_UPLOADS, **verdict)
        hint = f" Did you mean {route.prefix}{closest}/{folder} (model '{closest}')?" if closest else ""
        return Verdict(verdict=UNOWNED, message=(
            f"unowned upload: {key} is directly under {route.prefix}, in no model's folder, so it {starts}.{hint} "
            f"Expected {route.expected}; configured models: {_listing(models)}"),
            level=logging.WARNING, metric=METRIC_UNOWNED_UPLOADS, **verdict)

    closest = closest_model(folder, models)
    hint = f" Did you mean {route.prefix}{closest}/ (model '{closest}')?" if closest else ""
    verdict.update(prefix=prefix, closest=closest)
    if placeholder:
        return Verdict(verdict=IGNORED, message=(
            f"ignored: {key} is a folder placeholder under {prefix}, which no model owns: uploads there start "
            f"no {route.run}.{hint} Configured models: {_listing(models)}"),
            level=logging.WARNING, metric=METRIC_IGNORED_UPLOADS, **verdict)
    return Verdict(verdict=UNOWNED, message=(
        f"unowned upload: {key} is under {prefix}, which no model owns, so it {starts}.{hint} "
        f"Expected {route.expected}, or add the model to cdk.json and deploy; configured models: {_listing(models)}"),
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

