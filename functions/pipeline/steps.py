"""The AWS side of each pipeline state: registry, S3 artifacts and events around the core.

Each function takes the state's input (a dict) and the clients it needs, and returns the state's
output: small JSON (Step Functions passes at most 256 KiB between states). Handlers
(``allocate.py``, ``train.py``, ``validate.py``, ``record.py``) only build clients and log.

Every write is safe to repeat, because Step Functions retries a state after transient errors and
a retried Lambda may already have done its work:

- allocate: a *run claim* item per (model, dataset object version) is put on condition; a second
  delivery of the same object version finds it and ends in ``AlreadyHandled``; a retry of the
  same execution finds its own claim and reuses (or completes) its allocation.
- train: artifacts are overwritten with identical bytes; ``record_candidate`` is idempotent.
- promote: a retry finds the alias already moved by this execution (the audit event's actor).
  Once the alias has moved the state must not fail: `Model Promoted` is sent with a few retries of
  the send alone, and a send that still fails is logged and reported in the output
  (``event_delivered: false``), never raised into the Catch (which would mark the run failed).
- mark_failed: a version that is production (e.g. Promote crashed after the move) is not marked
  failed and gets `Model Promoted`, not `Pipeline Failed`.
- reject / fail: ``record_rejection`` / ``record_failure`` are idempotent on the reason.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from functions.core import training
from functions.core.artifacts import (
    ACCESS_DENIED_CODES,
    NOT_FOUND_CODES,
    ArtifactUnreadable,
    describe_s3_error,
    get_verified,
    write_artifact,
)
from functions.core.dataset import DatasetError, check_size
from functions.core.eventbus import EventNotDelivered
from functions.core.eventbus import put_event as send_event
from functions.core.layout import (
    DEFAULT_MAX_DATASET_BYTES,
    DEFAULT_MIN_DATASET_ROWS,
    MODEL_AWAITING_APPROVAL,
    MODEL_PROMOTED,
    MODEL_REJECTED,
    PIPELINE_FAILED,
    models_prefix,
    release_alarm_names,
)
from functions.core.registry import (
    AWAITING_APPROVAL,
    RELEASE_MODES,
    AliasConflict,
    ApprovalError,
    InvalidTransition,
    Registry,
    ReleaseConflict,
    VersionNotFound,
    dataset_ref,
)

from .errors import PipelineInputError, TransientError, bounded, reraise_transient

SPEC_KEYS = ("target", "task", "estimator", "params", "metric", "min_score", "max_regression", "holdout")
EVENT_SEND_ATTEMPTS = 3
MAX_REASON_CHARS = 1200  # `<Error>: <message>`: a bounded message and an error name
EVENT_SEND_DELAY = 0.5  # seconds before the 2nd attempt, doubled for the next

logger = logging.getLogger(__name__)
_sleep = time.sleep


def check_input(event: Mapping[str, Any]) -> tuple[str, dict, dict]:
    """(model, spec, dataset) of an execution input, or PipelineInputError saying what is missing."""
    if not isinstance(event, Mapping):
        raise PipelineInputError(f"execution input must be an object, got {type(event).__name__}")
    model, spec, dataset = event.get("model"), event.get("spec"), event.get("dataset")
    if not isinstance(model, str) or not model:
        raise PipelineInputError("execution input lacks 'model' (the model name)")
    if not isinstance(spec, Mapping) or not spec.get("target"):
        raise PipelineInputError(f"execution input for {model!r} lacks 'spec' with at least 'target' "
                                 f"(expected keys {list(SPEC_KEYS)})")
    if not isinstance(dataset, Mapping) or not dataset.get("bucket") or not dataset.get("key"):
        raise PipelineInputError(f"execution input for {model!r} lacks 'dataset' with 'bucket' and 'key'")
    return model, dict(spec), dict(dataset)


# ---------------------------------------------------------------------------- allocate


def allocate(event: Mapping[str, Any], registry: Registry, *, execution_arn: str, events=None,
             execution_timeout: float | None = None) -> dict:
    """Claim this dataset object version for one run and allocate the version (status training).

    First, versions of the model left `training` past ``execution_timeout`` are marked failed
    (``sweep_stale``; needs ``events`` for their `Pipeline Failed`).
    """
    model, spec, dataset = check_input(event)
    if execution_timeout:
        sweep_stale(registry, events, model, execution_timeout=execution_timeout, execution_arn=execution_arn)
    if not dataset.get("version_id"):
        raise PipelineInputError(f"dataset s3://{dataset['bucket']}/{dataset['key']} has no version_id; the data "
                                 "bucket must be versioned so lineage can pin the exact bytes")
    ref = dataset_ref(dataset["bucket"], dataset["key"], dataset["version_id"])
    claim_id = ref + (f"#{execution_arn}" if event.get("force") else "")
    claim = registry.claim_run(model, claim_id, execution_arn=execution_arn, dataset=dataset)
    if not claim["claimed"]:
        if claim.get("execution_arn") != execution_arn:
            return {"duplicate": True, "version": None,
                    "duplicate_of": {"execution_arn": claim.get("execution_arn"),
                                     "version": claim.get("version"), "at": claim.get("at")},
                    "dataset_ref": ref}
        if claim.get("version"):  # a retry of this very state after it finished
            return _allocated(spec, model, int(claim["version"]), ref, execution_arn)
        # A retry after the claim but maybe after the allocation too: reuse a version of ours.
        mine = [v for v in registry.list_versions(model) if v.get("execution_arn") == execution_arn]
        if mine:
            version = int(mine[-1]["version"])
            registry.set_claim_version(model, claim_id, version)
            return _allocated(spec, model, version, ref, execution_arn)
    rec = registry.allocate_version(model, execution_arn=execution_arn, dataset=dataset,
                                    estimator=spec.get("estimator"), params=dict(spec.get("params") or {}))
    registry.set_claim_version(model, claim_id, rec["version"])
    return _allocated(spec, model, int(rec["version"]), ref, execution_arn)


def _allocated(spec: Mapping[str, Any], model: str, version: int, ref: str, execution_arn: str) -> dict:
    """Allocate's output; a sagemaker run also gets the name of its training job."""
    out: dict[str, Any] = {"duplicate": False, "version": version, "dataset_ref": ref}
    if (spec.get("compute") or {}).get("type") == "sagemaker":
        out["training_job_name"] = training_job_name(os.environ.get("TRAINING_JOB_PREFIX", "shipyard-"), model,
                                                     version, execution_arn)
    return out


# CreateTrainingJob's TrainingJobName: at most 63 characters matching this (SageMaker API reference).
TRAINING_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def training_job_name(prefix: str, model: str, version: int, execution_arn: str) -> str:
    """``<prefix><model>-v<N>-<hash of the execution>``: unique per version, the same for a retry of
    the same execution (CreateTrainingJob refuses a name used before), within SageMaker's 63
    characters. The prefix is the stack's (infra/trainjob.py), which its IAM policies are scoped
    to; model names may hold ``_``, job names may not."""
    tail = f"-v{int(version)}-{hashlib.sha256(execution_arn.encode()).hexdigest()[:8]}"
    room = 63 - len(prefix) - len(tail)
    name = prefix + model.replace("_", "-")[:max(room, 1)].rstrip("-") + tail
    if not TRAINING_JOB_NAME.match(name):
        raise PipelineInputError(f"training job name {name!r} (prefix {prefix!r}) is not a valid SageMaker job "
                                 f"name; expected {TRAINING_JOB_NAME.pattern}")
    return name


def sweep_stale(registry: Registry, events, model: str, *, execution_timeout: float, execution_arn: str,
                now: float | None = None) -> list[int]:
    """Mark failed the versions still `training` longer than an execution may run: their execution is over
    (timed out, aborted, or failed where no Catch reaches, e.g. ``States.Runtime``) without recording it.

    Defence in depth: every Catch already ends a run in MarkFailed. The write is conditional on the
    status still being `training`, so a version that moved on meanwhile (and production) is never touched.
    """
    now = time.time() if now is None else now
    swept = []
    for rec in registry.list_versions(model):
        started = _epoch(rec.get("created_at"))
        if rec.get("status") != "training" or rec.get("execution_arn") == execution_arn or started is None \
                or now - started <= execution_timeout:
            continue
        version = int(rec["version"])
        reason = (f"StaleTraining: still training {_duration(now - started)} after it was allocated "
                  f"({rec.get('created_at')}), past the pipeline's execution timeout of "
                  f"{_duration(execution_timeout)}: execution {rec.get('execution_arn')} ended without recording "
                  f"an outcome (see its history); found by {execution_arn}")
        try:
            registry.record_failure(model, version, reason, only_from=("training",))
        except (InvalidTransition, VersionNotFound):
            continue
        logger.warning("%s v%s was left training; marked failed: %s", model, version, reason)
        swept.append(version)
        if events is not None:
            detail = {"model": model, "version": version, "execution_arn": rec.get("execution_arn"), "reason": reason,
                      "error": "StaleTraining", "dataset": (rec.get("lineage") or {}).get("dataset"),
                      "status": "failed"}
            put_event_after_commit(events, PIPELINE_FAILED, detail, execution_arn)
    return swept


def _epoch(iso: Any) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


# ---------------------------------------------------------------------------- train


def read_dataset(s3, dataset: Mapping[str, Any], max_bytes: int) -> tuple[bytes, dict]:
    """The exact object version's bytes (size checked first) and what S3 said about it."""
    where = f"s3://{dataset['bucket']}/{dataset['key']} (version {dataset.get('version_id')})"
    kwargs = {"Bucket": dataset["bucket"], "Key": dataset["key"]}
    if dataset.get("version_id") and dataset["version_id"] != "null":
        kwargs["VersionId"] = dataset["version_id"]
    try:
        head = s3.head_object(**kwargs)
        check_size(int(head["ContentLength"]), max_bytes)
        obj = s3.get_object(**kwargs)
        data = obj["Body"].read()
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in NOT_FOUND_CODES:
            raise DatasetError(f"dataset {where} does not exist (deleted or overwritten before training?); "
                               "upload it again") from None
        if code in ACCESS_DENIED_CODES:
            action = "s3:GetObjectVersion" if "VersionId" in kwargs else "s3:GetObject"
            raise DatasetError(f"dataset {where} cannot be read: access denied ({action} refused, {code}); "
                               "only datasets/ of the stack's data bucket can be trained on") from None
        reraise_transient(err)
        raise
    got = obj.get("VersionId")
    if dataset.get("version_id") and got and got != dataset["version_id"]:
        raise DatasetError(f"dataset {where}: S3 returned version {got}, not the one the run was started for")
    return data, {"version_id": got or dataset.get("version_id"), "etag": str(obj.get("ETag", "")).strip('"'),
                  "size": len(data)}


def train(event: Mapping[str, Any], registry: Registry, s3, *, artifact_bucket: str,
          max_bytes: int = DEFAULT_MAX_DATASET_BYTES, min_rows: int = DEFAULT_MIN_DATASET_ROWS, code_version: str = "",
          execution_arn: str | None = None, compute: Mapping[str, Any] | None = None) -> dict:
    """Read the dataset, train (functions.core.training), write the artifacts, register the candidate.

    ``compute``: where it ran, recorded as ``lineage.compute`` (a SageMaker job: its name and instance type).
    """
    model, spec, dataset = check_input(event)
    version = int(event["version"])
    if spec.get("max_dataset_bytes"):  # the model's own limit (its compute.memory), within the function's
        max_bytes = min(max_bytes, int(spec["max_dataset_bytes"]))
    seen: dict = {}

    def read() -> bytes:  # training holds the only reference and drops the bytes once parsed
        data, info = read_dataset(s3, dataset, max_bytes)
        seen.update(info)
        return data

    result = training.train(read, spec, max_bytes=max_bytes, min_rows=min_rows)

    prefix = models_prefix(model, version)
    artifacts: dict[str, dict] = {}
    payloads = {
        "model.onnx": (result.onnx, "application/octet-stream"),
        "holdout.json": (result.holdout_json, "application/json"),
        "baseline.json": (_json(result.baseline), "application/json"),
    }
    lineage = {
        "dataset": {"bucket": dataset["bucket"], "key": dataset["key"], "version_id": seen["version_id"],
                    "sha256": result.dataset["sha256"], "rows": result.dataset["rows"],
                    "columns": result.dataset["columns"], "size": seen["size"], "etag": seen["etag"],
                    **({"dropped": result.dataset["dropped"]} if result.dataset.get("dropped") else {})},
        "execution_arn": execution_arn,
        "split": result.split,
        "libraries": result.libraries,
        "code_version": code_version,
        "estimator": spec.get("estimator"),
        "params": dict(spec.get("params") or {}),
        "spec": {k: spec[k] for k in SPEC_KEYS if k in spec},
        **({"compute": dict(compute)} if compute else {}),
    }
    # Written once (a retried step finds its own bytes there and carries on); each reference names
    # the object version, which is what validation and serving read.
    for name, (body, ctype) in payloads.items():
        artifacts[name] = _artifact_ref(write_artifact(s3, artifact_bucket, prefix + name, body, ctype))
    metrics_doc = {"model": model, "version": version, "schema": result.schema, "metrics": result.metrics,
                   "split": result.split, "dataset": lineage["dataset"], "libraries": result.libraries,
                   "artifacts": {k: v for k, v in artifacts.items()}}
    artifacts["metrics.json"] = _artifact_ref(write_artifact(s3, artifact_bucket, prefix + "metrics.json",
                                                             _json(metrics_doc), "application/json"))
    lineage["artifacts"] = artifacts
    registry.record_candidate(model, version, artifact_key=artifacts["model.onnx"]["key"],
                              artifact_sha256=artifacts["model.onnx"]["sha256"], schema=result.schema,
                              metrics=result.metrics, lineage=lineage,
                              artifact_version_id=artifacts["model.onnx"].get("version_id"))
    metric = result.metrics["metric"]
    return {"version": version, "artifact_key": artifacts["model.onnx"]["key"],
            "artifact_sha256": artifacts["model.onnx"]["sha256"],
            "artifact_version_id": artifacts["model.onnx"].get("version_id"), "metric": metric,
            "score": result.metrics.get(metric), "parity_passed": result.parity["passed"],
            "dataset_sha256": result.dataset["sha256"], "rows": result.dataset["rows"]}


# ---------------------------------------------------------------------------- validate


def validate(event: Mapping[str, Any], registry: Registry, s3, *, artifact_bucket: str,
             data_bucket: str | None = None) -> dict:
    """Score candidate and production on the candidate's holdout, production's own holdout and the
    model's trusted evaluation sets (onnxruntime only), and decide (functions/core/validation.py)."""
    from functions.core.onnx_model import OnnxModel
    from functions.core.schema import FeatureSchema
    from functions.core.validation import decide, schema_differences, score_on_holdout

    model, spec, _ = check_input(event)
    version = int(event["version"])
    cand = registry.get_version(model, version)
    arts = (cand.get("lineage") or {}).get("artifacts") or {}
    metric = spec.get("metric") or (cand.get("metrics") or {}).get("metric")
    spec["metric"] = metric
    holdout = json.loads(_verified(s3, artifact_bucket, arts["holdout.json"]))
    onnx = _verified(s3, artifact_bucket, model_artifact(cand))
    cand_schema = FeatureSchema.from_dict(cand["schema"])
    candidate_score, candidate_error, cand_model = None, None, None
    try:
        cand_model = OnnxModel.from_bytes(onnx, cand_schema)
        candidate_score = score_on_holdout(cand_model, holdout, metric)
    except (ValueError, KeyError) as err:
        candidate_error = str(err)

    production_version = registry.get_alias(model, "production")
    production_score = production_error = None
    prod_model = prod = None
    diffs: list[str] = []
    if production_version is not None and int(production_version) != version:
        prod = registry.get_version(model, int(production_version))
        diffs = schema_differences(cand["schema"], prod["schema"] or {})
        try:
            prod_onnx = _verified(s3, artifact_bucket, model_artifact(prod))
            prod_model = OnnxModel.from_bytes(prod_onnx, FeatureSchema.from_dict(prod["schema"]))
            production_score = score_on_holdout(prod_model, holdout, metric)
        except KeyError as err:
            production_error = f"the holdout lacks its feature {err}"
        except ArtifactUnreadable as err:
            production_error = f"its artifact cannot be read: {err}"
        except ClientError as err:
            reraise_transient(err)
            production_error = f"its artifact cannot be read ({err.response['Error'].get('Code')})"
        except Exception as err:  # noqa: BLE001 - recorded: schema, integrity or label mismatch
            production_error = f"{type(err).__name__}: {err}"
    else:
        production_version = None
    # The other sets both are scored on: production's own stored holdout (a dataset with flipped
    # labels scores well on its own holdout only), then each trusted evaluation set.
    if candidate_score is None:
        cand_model = None  # a candidate that cannot be scored is rejected; nothing to compare
    sets: list[tuple[str, Any]] = []
    if prod is not None and prod_model is not None and not diffs:
        prod_holdout_ref = ((prod.get("lineage") or {}).get("artifacts") or {}).get("holdout.json")
        if prod_holdout_ref:
            try:
                sets.append((f"production v{production_version}'s holdout",
                             json.loads(_verified(s3, artifact_bucket, prod_holdout_ref))))
            except Exception as err:  # noqa: BLE001 - recorded; it gates nothing
                sets.append((f"production v{production_version}'s holdout", f"{type(err).__name__}: {err}"))
    if data_bucket and cand_model is not None:
        sets += evaluation_sets(s3, data_bucket, model, spec, cand_schema.names)
    comparisons = [_compare(name, doc, cand_model, prod_model, metric) for name, doc in sets]
    decision = decide(spec, candidate_score=candidate_score, candidate_error=candidate_error,
                      parity=(cand.get("metrics") or {}).get("parity"), schema_diffs=diffs,
                      allow_schema_change=bool(event.get("allow_schema_change")),
                      production_version=production_version, production_score=production_score,
                      production_error=production_error, comparisons=comparisons)
    validation = {"candidate_score": candidate_score, "production_version": production_version,
                  "production_score": production_score, "promote": decision.promote, "reason": decision.reason,
                  "checks": decision.checks, "comparisons": comparisons}
    metrics = dict(cand.get("metrics") or {})
    metrics["validation"] = validation
    if candidate_score is not None:
        metrics[metric] = candidate_score
    if production_version is not None:
        metrics["production_version"] = int(production_version)
        metrics["production_" + metric] = production_score
    registry.record_validation(model, version, metrics)
    return {"version": version, "promote": decision.promote, "reason": decision.reason, "metric": metric,
            "candidate_score": candidate_score, "production_version": production_version,
            "production_score": production_score}


# An evaluation set larger than this is recorded as skipped (the Validate function's memory).
MAX_EVALUATION_BYTES = 50 * 2**20


def evaluation_sets(s3, data_bucket: str, model: str, spec: Mapping[str, Any],
                    names: list[str]) -> list[tuple[str, Any]]:
    """``(key, holdout document or the reason it cannot be used)`` for each trusted evaluation set
    (``evaluation/<model>/*.csv``, ``.csv.gz``) of the data bucket, in key order."""
    from functions.core.dataset import load_csv
    from functions.core.layout import EVALUATION_PREFIX
    from functions.core.validation import holdout_from_dataset

    prefix = f"{EVALUATION_PREFIX}{model}/"
    keys: list[tuple[str, int]] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=data_bucket, Prefix=prefix):
            keys += [(o["Key"], int(o["Size"])) for o in page.get("Contents", ())
                     if o["Key"].endswith((".csv", ".csv.gz"))]
    except ClientError as err:
        reraise_transient(err)
        return [(prefix, f"the evaluation sets cannot be listed ({err.response['Error'].get('Code')})")]
    out: list[tuple[str, Any]] = []
    for key, size in sorted(keys):
        if size > MAX_EVALUATION_BYTES:
            out.append((key, f"skipped: {size:,} bytes, more than {MAX_EVALUATION_BYTES:,}"))
            continue
        try:
            body = s3.get_object(Bucket=data_bucket, Key=key)["Body"].read()
            dataset = load_csv(body, target=spec["target"], task=spec.get("task", "classification"),
                               max_bytes=MAX_EVALUATION_BYTES, min_rows=1)
            out.append((key, holdout_from_dataset(dataset, names)))
        except ClientError as err:
            reraise_transient(err)
            out.append((key, describe_s3_error(err, data_bucket, key)))
        except KeyError as err:
            out.append((key, f"lacks the model's feature {err}"))
        except ValueError as err:  # DatasetError and the like: the file's own problem
            out.append((key, f"{type(err).__name__}: {err}"))
    return out


def _compare(name: str, doc: Any, cand_model, prod_model, metric: str) -> dict:
    """Candidate (and production) scored on one more set; a set that cannot be scored says why."""
    from functions.core.validation import score_on_holdout

    entry: dict[str, Any] = {"set": name, "candidate": None, "production": None}
    if isinstance(doc, str):
        entry["error"] = doc
        return entry
    entry["rows"] = len(doc.get("target") or ())
    for who, m in (("candidate", cand_model), ("production", prod_model)):
        if m is None:
            continue
        try:
            entry[who] = score_on_holdout(m, doc, metric)
        except Exception as err:  # noqa: BLE001 - recorded: a label or feature the model does not know
            entry.setdefault("error", f"{who}: {type(err).__name__}: {err}")
    if entry["production"] is None and prod_model is not None:
        entry["candidate_only"] = True  # production cannot be compared here: the set gates min_score only
    return entry


def _artifact_ref(written: Mapping[str, Any]) -> dict:
    """A lineage reference ``{"key", "sha256", "version_id"}`` (no version id: an unversioned bucket)."""
    return {k: v for k, v in written.items() if v is not None or k != "version_id"}


def model_artifact(record: Mapping[str, Any]) -> dict:
    """The version record's model.onnx reference (no version id: recorded before they were)."""
    return {"key": record["artifact_key"], "sha256": record["artifact_sha256"],
            "version_id": record.get("artifact_version_id")}


def _verified(s3, bucket: str, ref: Mapping[str, Any]) -> bytes:
    """The referenced artifact, exactly its recorded object version when there is one, sha256-checked."""
    try:
        return get_verified(s3, bucket, ref["key"], ref["sha256"], ref.get("version_id"))
    except ClientError as err:
        reraise_transient(err)
        if err.response.get("Error", {}).get("Code") in NOT_FOUND_CODES | ACCESS_DENIED_CODES:
            raise ArtifactUnreadable(describe_s3_error(err, bucket, ref["key"], ref.get("version_id"))) from None
        raise


# ---------------------------------------------------------------------------- record outcomes


def promote(event: Mapping[str, Any], registry: Registry, events, *, execution_arn: str) -> dict:
    """Atomically move production to the candidate (audit event, previous archived) + `Model Promoted`."""
    model, _, dataset = check_input(event)
    version = int(event["version"])
    validation = event.get("validation") or {}
    expected = validation.get("production_version")
    reason = f"pipeline: {validation.get('reason') or 'passed validation'}" + approved_by(event)
    try:
        moved = registry.promote(model, version, reason=reason, actor=execution_arn, expected=expected)
    except AliasConflict:
        last = registry.last_event(model, "production")
        if not (last and last.get("to_version") == version and last.get("actor") == execution_arn):
            raise
        moved = last  # a retry: this execution already moved the alias
    # The alias has moved: from here on nothing may fail the state (the Catch would mark it failed).
    detail = {"model": model, "version": version, "previous_version": moved.get("from_version"),
              "execution_arn": execution_arn, "reason": reason, "audit_seq": moved.get("seq"),
              "metric": validation.get("metric"), "score": validation.get("candidate_score"),
              "production_score": validation.get("production_score"), "dataset": dataset}
    error = put_event_after_commit(events, MODEL_PROMOTED, detail, execution_arn)
    out = {"promoted": True, "from_version": moved.get("from_version"), "to_version": version,
           "audit_seq": moved.get("seq"), "event_delivered": error is None}
    if error is not None:
        out["event_error"] = error
    return out


def put_event_after_commit(events, detail_type: str, detail: Mapping[str, Any],
                           execution_arn: str | None = None) -> str | None:
    """Send an event describing a change already committed: retry the send alone, never raise.

    Returns None once delivered, else the last error (also logged).
    """
    error = None
    for attempt in range(EVENT_SEND_ATTEMPTS):
        if attempt:
            _sleep(EVENT_SEND_DELAY * 2 ** (attempt - 1))
        try:
            put_event(events, detail_type, detail, execution_arn)
            return None
        except Exception as err:  # noqa: BLE001 - the change is committed; the event is best effort
            error = f"{type(err).__name__}: {err}"
            logger.warning("%s event for %s v%s not sent (attempt %d of %d): %s", detail_type,
                           detail.get("model"), detail.get("version"), attempt + 1, EVENT_SEND_ATTEMPTS, error)
    logger.error("%s event for %s v%s was not delivered after %d attempts; the registry change stands: %s",
                 detail_type, detail.get("model"), detail.get("version"), EVENT_SEND_ATTEMPTS, error)
    return error


def reject(event: Mapping[str, Any], registry: Registry, events, *, execution_arn: str) -> dict:
    model, _, dataset = check_input(event)
    version = int(event["version"])
    validation = event.get("validation") or {}
    reason = decision_reason(event) or validation.get("reason") or "rejected by validation"
    registry.record_rejection(model, version, reason)
    log_decision(registry, model, version, event, execution_arn)
    detail = {"model": model, "version": version, "execution_arn": execution_arn, "reason": reason,
              "metric": validation.get("metric"), "score": validation.get("candidate_score"),
              "production_version": validation.get("production_version"),
              "production_score": validation.get("production_score"), "dataset": dataset}
    put_event(events, MODEL_REJECTED, detail, execution_arn)
    return {"rejected": True, "version": version, "reason": reason}


def failure_reason(error: Mapping[str, Any] | None) -> str:
    """`<Error>: <message>` from a Step Functions Catch result (``{"Error", "Cause"}``)."""
    if not isinstance(error, Mapping):
        return "the pipeline failed without an error description"
    name = str(error.get("Error") or "Error")
    cause = error.get("Cause")
    message = cause
    if isinstance(cause, str):
        try:
            parsed = json.loads(cause)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, Mapping):
            job = training_job_failure(parsed)
            if job is not None:  # `.sync` hands over DescribeTrainingJob: its FailureReason is the reason
                return bounded(job, "the training job's log and the execution's history", limit=MAX_REASON_CHARS)
            message = parsed.get("errorMessage") or parsed.get("message") or cause
    message = str(message or "").strip()
    # The steps bound their own messages; this bounds what they cannot (runtime errors, a Cause from elsewhere).
    message = bounded(message, "the failed step's log and the execution's history")
    return bounded(f"{name}: {message}" if message else name, "the execution's history", limit=MAX_REASON_CHARS)


# SageMaker prefixes the failure file's text (functions/pipeline/trainjob.py writes `<Error>: <message>`)
# with the kind of failure and may append the exit code: "AlgorithmError: DatasetError: …, exit code: 1".
_JOB_FAILURE_KIND = re.compile(r"^(?:AlgorithmError|ClientError|CapacityError|InternalServerError):\s*")
_JOB_EXIT_CODE = re.compile(r",?\s*exit code:\s*-?\d+\s*$", re.IGNORECASE)
_ERROR_NAME = re.compile(r"^[A-Za-z_][\w.]*: ")


def training_job_failure(describe: Mapping[str, Any]) -> str | None:
    """`<Error>: <message>` from a failed or stopped training job's DescribeTrainingJob document (what a
    `createTrainingJob.sync` task's Cause holds); None when the document is not one."""
    if "TrainingJobStatus" not in describe and "FailureReason" not in describe:
        return None
    text = str(describe.get("FailureReason") or "").strip()
    inner = _JOB_EXIT_CODE.sub("", _JOB_FAILURE_KIND.sub("", text, count=1)).strip()
    if _ERROR_NAME.match(inner):
        return inner  # the job's own `<Error>: <message>`, e.g. DatasetError
    job = describe.get("TrainingJobName") or "?"
    status = describe.get("TrainingJobStatus") or "Failed"
    if text:
        return f"TrainingJobFailed: training job {job} ended {status}: {text}"
    secondary = describe.get("SecondaryStatus")
    return f"TrainingJobFailed: training job {job} ended {status}" + (f" ({secondary})" if secondary else "") + \
        " without a failure reason; see its log in /aws/sagemaker/TrainingJobs"


def mark_failed(event: Mapping[str, Any], registry: Registry, events, *, execution_arn: str,
                delete_alarms: Callable[[list[str]], Any] | None = None, alarm_prefix: str = "") -> dict:
    """Version -> failed with the error (when one was allocated) + `Pipeline Failed`. A release of the
    version is ended, and its two alarms deleted with `delete_alarms` (best effort) when given."""
    model = event.get("model") if isinstance(event, Mapping) else None
    run = (event.get("run") or {}) if isinstance(event, Mapping) else {}
    version = run.get("version")
    reason = failure_reason(event.get("error") if isinstance(event, Mapping) else None)
    status = None
    if model and version:
        try:
            status = registry.record_failure(model, int(version), reason)["status"]
            if end_own_release(registry, model, int(version), reason, execution_arn) and delete_alarms:
                names = release_alarm_names(alarm_prefix, model, int(version))
                try:
                    delete_alarms(names)
                except Exception as err:  # noqa: BLE001 - the failure is recorded; the alarms are clutter
                    logger.warning("release alarms %s not deleted: %s", names, err)
        except (InvalidTransition, VersionNotFound) as err:
            status = f"not marked: {err}"  # e.g. it was promoted before the failure
            promoted = _promoted_by(registry, model, int(version), execution_arn)
            if promoted is not None:
                return _promoted_after_failure(events, model, int(version), promoted, reason,
                                               event.get("dataset"), execution_arn)
    detail = {"model": model, "version": version, "execution_arn": execution_arn, "reason": reason,
              "error": (event.get("error") or {}).get("Error"), "dataset": event.get("dataset"),
              "status": status}
    put_event(events, PIPELINE_FAILED, detail, execution_arn)
    return {"failed": True, "version": version, "reason": reason}


def _promoted_by(registry: Registry, model: str, version: int, execution_arn: str) -> dict | None:
    """The audit event that made `version` production, if it is production now (else None)."""
    try:
        if registry.get_version(model, version)["status"] != "production":
            return None
    except VersionNotFound:
        return None
    last = registry.last_event(model, "production")
    if last and last.get("to_version") == version:
        return last
    return {"to_version": version, "from_version": None, "seq": None, "actor": None}


def _promoted_after_failure(events, model: str, version: int, moved: Mapping[str, Any], reason: str,
                            dataset: Any, execution_arn: str) -> dict:
    """A later error must not report a production version as failed: send `Model Promoted` instead."""
    logger.warning("%s v%s is production; the later error (%s) does not fail it", model, version, reason)
    detail = {"model": model, "version": version, "previous_version": moved.get("from_version"),
              "execution_arn": execution_arn, "reason": moved.get("reason"), "audit_seq": moved.get("seq"),
              "dataset": dataset, "after_error": reason}
    error = put_event_after_commit(events, MODEL_PROMOTED, detail, execution_arn)
    out = {"failed": False, "promoted": True, "version": version, "reason": reason,
           "event_delivered": error is None}
    if error is not None:
        out["event_error"] = error
    return out


# ---------------------------------------------------------------------------- manual approval


def await_approval(event: Mapping[str, Any], registry: Registry, events, sns, *, execution_arn: str,
                   topic_arn: str | None = None, now: float | None = None) -> dict:
    """Ask people to decide on the version (``AwaitApproval``, ``AwaitShadowDecision``: a
    ``.waitForTaskToken`` task; the task ends when someone sends the decision with the token).

    The token goes into the version's approval item (``Registry.request_approval``), never onto the
    version record. Sends `Model Awaiting Approval` and, with ``topic_arn``, a message to the alarm
    topic saying what to decide: the gate's scores, a shadow's numbers, the deadline and the commands.
    """
    model, spec, _ = check_input(event)
    version = int(event["version"])
    token = event.get("task_token")
    if not isinstance(token, str) or not token:
        raise PipelineInputError(f"await_approval for {model!r} v{version} got no task_token")
    timeout = int((spec.get("release") or {}).get("approval_timeout") or 86400)
    now = time.time() if now is None else now
    deadline = _iso(now + timeout)
    validation = event.get("validation") or {}
    release = event.get("release") or {}
    summary = {"metric": validation.get("metric"), "candidate_score": validation.get("candidate_score"),
               "production_version": validation.get("production_version"),
               "production_score": validation.get("production_score"), "gate": validation.get("reason"),
               "stage": "shadow" if release.get("mode") == "shadow" else "approval"}
    if release.get("mode") == "shadow":
        summary["shadow"] = release.get("numbers")
        summary["release_id"] = release.get("id")
    registry.request_approval(model, version, task_token=token, execution_arn=execution_arn, timeout_at=deadline,
                              summary=summary)
    registry.log_release_event(model, "approval_requested", version=version, actor=execution_arn,
                               reason=f"decide by {deadline}", timeout_at=deadline, summary=summary)
    detail = {"model": model, "version": version, "execution_arn": execution_arn, "timeout_at": deadline,
              **summary, "approve": f"shipyard approve {model} {version}",
              "reject": f"shipyard reject {model} {version} --reason \"…\""}
    put_event(events, MODEL_AWAITING_APPROVAL, detail, execution_arn)
    notified = False
    if topic_arn:
        sns.publish(TopicArn=topic_arn, Subject=f"Shipyard: {model} v{version} awaits approval"[:100],
                    Message=approval_message(model, version, summary, deadline, execution_arn))
        notified = True
    return {"requested": True, "version": version, "timeout_at": deadline, "notified": notified}


def approval_message(model: str, version: int, summary: Mapping[str, Any], deadline: str,
                     execution_arn: str) -> str:
    """The alarm topic's message: what to decide, on what numbers, until when, and how."""
    metric = summary.get("metric") or "score"
    lines = [f"Model {model} version {version} passed the gate and waits for a decision "
             f"(pipeline execution {execution_arn}).", ""]
    prod = summary.get("production_version")
    gate = f"Gate: {metric} {_num(summary.get('candidate_score'))} (candidate v{version})"
    gate += (f" vs {_num(summary.get('production_score'))} (production v{prod})" if prod is not None
             else ", no production version yet")
    lines.append(gate)
    if summary.get("gate"):
        lines.append(f"  {summary['gate']}")
    shadow = summary.get("shadow")
    if summary.get("stage") == "shadow":
        shadow = shadow or {}
        lines.append(f"Shadow: {int(shadow.get('samples') or 0)} predictions shadowed, agreement with "
                     f"production {_num(shadow.get('agreement'))}, {int(shadow.get('errors') or 0)} errors")
    lines += ["", f"Decide by {deadline}; without a decision by then the version is rejected.",
              f"  shipyard approve {model} {version}",
              f"  shipyard reject {model} {version} --reason \"…\""]
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def span(seconds: Any) -> str:
    """A configured duration as people write it: ``1 day``, ``6 h``, ``30 min``, ``45 s``."""
    seconds = int(seconds)
    for unit, name in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= unit and seconds % unit == 0:
            n = seconds // unit
            return f"{n} {name}{'s' if name == 'day' and n != 1 else ''}"
    return f"{seconds} s"


def approved(event: Mapping[str, Any], registry: Registry, events=None, *, execution_arn: str) -> dict:
    """``Approved``: the decision was approve; the version is a candidate again (awaiting_approval ->
    candidate; a retry finds it so) and the release log says who approved."""
    model, _, _ = check_input(event)
    version = int(event["version"])
    decision = event.get("decision") or {}
    if decision.get("decision") != "approve":
        raise PipelineInputError(f"Approved for {model!r} v{version} without an approve decision: {decision!r}")
    registry.record_approval(model, version)
    if not _decision_logged(registry, model, version, "approved"):
        registry.log_release_event(model, "approved", version=version, actor=str(decision.get("actor") or "unknown"),
                                   reason=decision.get("reason"), decided_at=decision.get("at"),
                                   execution_arn=execution_arn)
    return {"approved": True, "version": version, "actor": decision.get("actor")}


def approved_by(event: Mapping[str, Any]) -> str:
    """``; approved by <actor>[: <reason>]`` after a person's approve decision, else empty."""
    decision = event.get("decision") if isinstance(event, Mapping) else None
    if not isinstance(decision, Mapping) or decision.get("decision") != "approve":
        return ""
    reason = decision.get("reason")
    return f"; approved by {decision.get('actor') or 'unknown'}" + (f": {reason}" if reason else "")


def decision_reason(event: Mapping[str, Any]) -> str | None:
    """Why a person's decision ended the run: ``ApprovalTimedOut: no decision within <duration>``
    (the callback task timed out: ``approval_error``) or ``rejected by <actor>: <reason>``; None
    when no decision rejected it."""
    error = event.get("approval_error") if isinstance(event, Mapping) else None
    if isinstance(error, Mapping) and error.get("Error") == "States.Timeout":
        timeout = ((event.get("spec") or {}).get("release") or {}).get("approval_timeout") or 86400
        return f"ApprovalTimedOut: no decision within {span(timeout)}"
    decision = event.get("decision") if isinstance(event, Mapping) else None
    if isinstance(decision, Mapping) and decision.get("decision") == "reject":
        reason = decision.get("reason")
        return f"rejected by {decision.get('actor') or 'unknown'}" + (f": {reason}" if reason else "")
    return None


def log_decision(registry: Registry, model: str, version: int, event: Mapping[str, Any], execution_arn: str) -> None:
    """The release log's record of a rejecting decision: ``rejected`` (by the person) or
    ``approval_timed_out``; a timeout also closes the approval item (a late approve is refused, naming
    the timeout). Nothing for a rejection by the gate."""
    reason = decision_reason(event)
    if reason is None:
        return
    if reason.startswith("ApprovalTimedOut"):
        try:
            registry.decide(model, version, "reject", actor=execution_arn, reason=reason)
        except ApprovalError:
            pass  # decided just as it timed out, or a retry of this state
        registry.log_release_event(model, "approval_timed_out", version=version, actor=execution_arn, reason=reason)
    elif not _decision_logged(registry, model, version, "rejected"):
        decision = event.get("decision") or {}
        registry.log_release_event(model, "rejected", version=version, actor=str(decision.get("actor") or "unknown"),
                                   reason=decision.get("reason"), decided_at=decision.get("at"),
                                   execution_arn=execution_arn)


def _decision_logged(registry: Registry, model: str, version: int, kind: str) -> bool:
    """Whether the release log already says `kind` for the version since its approval was asked for
    (the approve/reject API logs the decision with the verified caller: functions/approval)."""
    for entry in reversed(registry.release_log(model)):
        if entry.get("version") != version:
            continue
        if entry.get("kind") == kind:
            return True
        if entry.get("kind") == "approval_requested":
            return False
    return False


def end_own_release(registry: Registry, model: str, version: int, reason: str, execution_arn: str, *,
                    kind: str = "release_failed") -> bool:
    """End the model's running release when it is this version's (MarkFailed): the release log says
    ``release_failed`` (``execution_ended``: ``release_orphaned``); a release of another version is left
    alone. True when the version had one."""
    release = registry.get_release(model)
    if not release or int(release.get("version") or 0) != int(version):
        return False
    try:
        registry.end_release(model, release["id"], reason=reason, actor=execution_arn, kind=kind)
    except ReleaseConflict:
        pass  # ended meanwhile
    return True


# ---------------------------------------------------------------------------- an execution that ended early

# The statuses a run leaves its version in while it still has work to do: what an execution that ended
# without recording an outcome strands.
OPEN_STATUSES = ("training", "candidate", AWAITING_APPROVAL, *RELEASE_MODES)
ENDED_ERRORS = {"ABORTED": "ExecutionAborted", "TIMED_OUT": "ExecutionTimedOut", "FAILED": "ExecutionFailed"}


def execution_ended(event: Mapping[str, Any], registry: Registry, events, *,
                    delete_alarms: Callable[[list[str]], Any] | None = None, alarm_prefix: str = "") -> dict:
    """A pipeline execution ended ABORTED, TIMED_OUT or FAILED (the EventBridge rule on Step Functions'
    `Execution Status Change`, ``action: execution_ended``): its Catch may never have run (StopExecution,
    the execution timeout, a local cloud restarted), so what the run still held is closed here.

    Every version of the model (from the execution's input) whose ``execution_arn`` is this execution and
    whose status is still open (training, candidate, awaiting_approval, canary, shadow) becomes `failed`
    with ``ExecutionAborted: …`` / ``ExecutionTimedOut: …`` / ``ExecutionFailed: …``; its running release is
    ended (release log ``release_orphaned``) and its two alarms deleted; an undecided approval is closed
    (rejected by the execution, so a late ``shipyard approve`` is refused); `Pipeline Failed` is sent per
    version. A version already recorded (MarkFailed ran, it was promoted or rejected) is left alone, so a
    FAILED execution that recorded its failure changes nothing and sends nothing; production is never moved.
    """
    arn = str(event.get("execution_arn") or "")
    status = str(event.get("status") or "")
    if status not in ENDED_ERRORS or not arn:
        return {"ended": False, "why": f"status {status!r} of {arn!r} needs nothing"}
    run = _execution_input(event.get("input"))
    model = run.get("model")
    if not isinstance(model, str) or not model:
        return {"ended": False, "why": "the execution's input names no model"}
    when = _stop_time(event.get("stop_date"))
    release = registry.get_release(model) or {}
    production = registry.get_alias(model)
    marked = []
    for rec in registry.list_versions(model):
        if rec.get("execution_arn") != arn or rec.get("status") not in OPEN_STATUSES:
            continue
        version = int(rec["version"])
        ours = bool(release) and (release.get("execution_arn") == arn or int(release.get("version") or 0) == version)
        reason = _ended_reason(status, when, event, release if ours else None, rec.get("status"), production)
        try:
            registry.record_failure(model, version, reason, only_from=OPEN_STATUSES)
        except (InvalidTransition, VersionNotFound):
            continue  # it moved on meanwhile (a decision, a promotion): its status says what happened
        if ours and release.get("id"):
            try:
                registry.end_release(model, release["id"], reason=reason, actor=arn, kind="release_orphaned")
            except ReleaseConflict:
                pass  # ended meanwhile
            if delete_alarms:
                names = release_alarm_names(alarm_prefix, model, int(release.get("version") or version))
                try:
                    delete_alarms(names)
                except Exception as err:  # noqa: BLE001 - the failure is recorded; the alarms are clutter
                    logger.warning("release alarms %s not deleted: %s", names, err)
        _close_approval(registry, model, version, arn, reason)
        logger.warning("%s v%s: execution %s ended %s; marked failed", model, version, arn, status)
        detail = {"model": model, "version": version, "execution_arn": arn, "reason": reason,
                  "error": ENDED_ERRORS[status], "status": "failed",
                  "dataset": run.get("dataset") or (rec.get("lineage") or {}).get("dataset")}
        put_event(events, PIPELINE_FAILED, detail, arn)
        marked.append(version)
    return {"ended": True, "model": model, "status": status, "failed": marked}


def _execution_input(raw: Any) -> dict:
    """The execution's input as the rule passes it (``detail.input``: a JSON string; a dict in tests)."""
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        doc = json.loads(raw) if isinstance(raw, str | bytes) and raw else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _stop_time(stop_date: Any) -> str:
    """``detail.stopDate`` (epoch milliseconds, a number or its text) as ISO UTC; now when absent."""
    try:
        return _iso(float(stop_date) / 1000)
    except (TypeError, ValueError):
        return _iso(time.time())


def _missing(value: Any) -> bool:
    return value is None or value in ("", "null")


def _ended_reason(status: str, when: str, event: Mapping[str, Any], release: Mapping[str, Any] | None,
                  version_status: Any, production: int | None) -> str:
    why = {"ABORTED": "stopped by an operator, or the local cloud restarted",
           "TIMED_OUT": "it ran past the pipeline's execution timeout"}.get(status)
    if why is None:  # FAILED where no Catch reached (e.g. States.Runtime) or MarkFailed itself failed
        said = [str(x) for x in (event.get("error"), event.get("cause")) if not _missing(x)]
        why = "failed: " + ": ".join(said) if said else "failed where no Catch reached"
    prod = f"production v{production} untouched" if production is not None else "no production version"
    if release:
        what = f"its {release.get('mode') or 'running'} release was ended, {prod}"
    elif version_status == AWAITING_APPROVAL:
        what = f"its approval was closed, {prod}"
    else:
        what = prod
    return bounded(f"{ENDED_ERRORS[status]}: the pipeline execution ended {status} at {when} before recording an "
                   f"outcome ({why}); {what}", "the execution's history", MAX_REASON_CHARS)


def _close_approval(registry: Registry, model: str, version: int, execution_arn: str, reason: str) -> None:
    """Reject the version's undecided approval for the ended execution (its task token is dead): a late
    ``shipyard approve``/``reject`` is told it was decided, by the execution, and why."""
    approval = registry.get_approval(model, version)
    if not approval or approval.get("decision") or approval.get("execution_arn") != execution_arn:
        return
    try:
        registry.decide(model, version, "reject", actor=execution_arn, reason=reason)
    except ApprovalError:
        return  # decided just now
    registry.log_release_event(model, "approval_closed", version=version, actor=execution_arn, reason=reason)


# EventBridge error codes of a refused entry that a retry of the state may get past.
TRANSIENT_EVENT_CODES = ("ThrottlingException", "InternalFailure", "InternalException")


def put_event(events, detail_type: str, detail: Mapping[str, Any], execution_arn: str | None = None) -> None:
    """Send one pipeline event on ``EVENT_BUS_NAME``; a refused entry is a TransientError when a retry may help."""
    try:
        send_event(events, detail_type, detail, event_bus=os.environ.get("EVENT_BUS_NAME", "default"),
                   execution_arn=execution_arn)
    except EventNotDelivered as err:
        if err.code in TRANSIENT_EVENT_CODES:
            raise TransientError(str(err)) from None
        raise RuntimeError(str(err)) from None


# ---------------------------------------------------------------------------- helpers


def _json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()

