"""The AWS side of the batch scoring states (docs/batch.md): S3 reads and writes, the registry's
batch-run item, the ``Batch Scored`` event. The rules are in ``functions/core/batchscore.py``.

Environment (set by ``infra/batch.py``): ``REGISTRY_TABLE``, ``ARTIFACT_BUCKET``, ``DATA_BUCKET``,
``SHIPYARD_MODELS``, ``EVENT_BUS_NAME``, ``MAX_RAGGED_ROWS``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from typing import Any

from functions.core.batchscore import (
    BatchInputError,
    check_header,
    errors_name,
    field_counts,
    part_name,
    score_batch,
)
from functions.core.eventbus import put_event
from functions.core.layout import BATCH_SCORED, PREDICTIONS_PREFIX
from functions.core.registry import Registry, utc_iso
from functions.core.schema import FeatureSchema
from functions.pipeline.steps import failure_reason

# A version must have been trained to be scored with (a failed or training one has no model).
SCORABLE = ("candidate", "production", "archived", "rejected")
# Ragged rows are listed to every batch (in its BatchInput), so their number is bounded.
DEFAULT_MAX_RAGGED_ROWS = 500
# Output keys recorded on the registry item (summary.json lists them all).
MAX_KEYS_IN_REGISTRY = 1000
VERSION_METADATA = "shipyard-version"  # x-amz-meta-shipyard-version: a pinned version (shipyard batch --version)


def output_prefix(model: str, run: str) -> str:
    return f"{PREDICTIONS_PREFIX}{model}/{run}/"


class _Hashing(io.RawIOBase):
    """A streaming body read once: every byte goes through sha256 on its way to the CSV reader."""

    def __init__(self, body: Any) -> None:
        self.body, self.sha256, self.size = body, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.body.read(len(buffer))
        self.sha256.update(chunk)
        self.size += len(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)


def resolve_version(registry: Registry, model: str, pinned: Any) -> dict:
    """The version record to score with: ``pinned`` if given, else production; clear refusals."""
    if pinned not in (None, ""):
        try:
            version = int(pinned)
        except (TypeError, ValueError):
            raise BatchInputError(f"version must be a version number, got {pinned!r}") from None
        record = registry.get_version(model, version)
        if record.get("status") not in SCORABLE or not record.get("artifact_key"):
            raise BatchInputError(f"model {model!r} v{version} is {record.get('status')!r} and has no model to "
                                  f"score with; expected a trained version ({', '.join(SCORABLE)})")
        return record
    production = registry.get_alias(model)
    if production is None:
        raise BatchInputError(f"model {model!r} has no production version: train and promote one, or pin a "
                              "version (shipyard batch MODEL FILE --version N)")
    return registry.get_version(model, int(production))


def prepare(event: dict, registry: Registry, s3: Any) -> dict:
    """Resolve the version, read the input object version once (sha256, rows, ragged rows), check its
    header against the version's features; the run's BatchInput."""
    model, run, obj = event["model"], str(event["run_id"]), dict(event["object"])
    bucket, key = obj["bucket"], obj["key"]
    head = s3.head_object(Bucket=bucket, Key=key, **({"VersionId": obj["version_id"]} if obj.get("version_id") else {}))
    version_id = obj.get("version_id") or head.get("VersionId")
    pinned = event.get("version")
    if pinned in (None, ""):
        pinned = (head.get("Metadata") or {}).get(VERSION_METADATA)
    record = resolve_version(registry, model, pinned)
    schema = FeatureSchema.from_dict(record["schema"])
    body = s3.get_object(Bucket=bucket, Key=key, **({"VersionId": version_id} if version_id else {}))["Body"]
    hashing = _Hashing(body)
    text = io.TextIOWrapper(io.BufferedReader(hashing, 1 << 20), encoding="utf-8-sig", newline="")
    try:
        counts = field_counts(text)
    except UnicodeDecodeError as err:
        raise BatchInputError(f"s3://{bucket}/{key} is not UTF-8 text ({err.reason} at byte {err.start}); "
                              "expected a UTF-8 CSV") from None
    while hashing.readinto(bytearray(1 << 20)):  # the csv reader may stop before the last bytes
        pass
    check_header(counts["header"], schema.names)
    if counts["rows"] == 0:
        raise BatchInputError(f"s3://{bucket}/{key} has a header and no rows; expected at least one data row")
    limit = int(os.environ.get("MAX_RAGGED_ROWS") or DEFAULT_MAX_RAGGED_ROWS)
    ragged = counts["ragged"]
    if len(ragged) > limit:
        first = sorted(ragged)[:5]
        raise BatchInputError(f"{len(ragged)} rows do not have one field per header column (first at lines "
                              f"{[i + 2 for i in first]}), more than {limit}: is it a CSV with commas "
                              "(a semicolon-separated file reads as one column)?")
    return {
        "model": model, "run": run, "version": int(record["version"]),
        "artifact": {"key": record["artifact_key"], "sha256": record.get("artifact_sha256"),
                     "version_id": record.get("artifact_version_id")},
        "columns": counts["header"], "rows": counts["rows"], "lines_exact": counts["lines_exact"],
        "ragged": {str(k): v for k, v in ragged.items()},
        "object": {"bucket": bucket, "key": key, "version_id": version_id, "sha256": hashing.sha256.hexdigest(),
                   "size": hashing.size},
        "output_prefix": output_prefix(model, run),
        "started_at": utc_iso(),
    }


def score(event: dict, models: Any, s3: Any, data_bucket: str) -> dict:
    """One batch from the Distributed Map: ``{"BatchInput": …, "Items": […]}`` → part and errors CSVs."""
    batch, items = event["BatchInput"], event["Items"]
    model = models.model(batch["model"], int(batch["version"]))
    result = score_batch(model, int(batch["version"]), batch["columns"], items,
                         ragged={int(k): v for k, v in (batch.get("ragged") or {}).items()})
    out = result.summary()
    prefix = batch["output_prefix"]
    for name, body, field in ((part_name(result.first_index), result.part_csv, "part"),
                              (errors_name(result.first_index), result.errors_csv, "errors")):
        if body is not None:
            s3.put_object(Bucket=data_bucket, Key=prefix + name, Body=body, ContentType="text/csv")
            out[field] = prefix + name
    return out


def _json_array(s3: Any, bucket: str, key: str) -> list:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def collect(s3: Any, manifest_bucket: str, manifest_key: str) -> dict:
    """Totals of the Map run from its ResultWriter manifest and result files
    (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html)."""
    manifest = json.loads(s3.get_object(Bucket=manifest_bucket, Key=manifest_key)["Body"].read())
    bucket = manifest.get("DestinationBucket") or manifest_bucket
    files = manifest.get("ResultFiles") or {}
    totals = {"rows": 0, "scored": 0, "refused": 0, "failed_rows": 0, "batches": 0, "failed_batches": 0}
    kinds: Counter = Counter()
    parts, errors, failures = [], [], []
    for entry in files.get("SUCCEEDED") or []:
        for child in _json_array(s3, bucket, entry["Key"]):
            # WriterConfig COMPACT (infra/batch.py): the child's output itself; NONE: an entry with it
            # JSON-encoded under "Output" (and the child's whole Input beside it)
            out = json.loads(child["Output"] or "{}") if isinstance(child.get("Output"), str) else child
            totals["batches"] += 1
            for k in ("rows", "scored", "refused"):
                totals[k] += int(out.get(k) or 0)
            kinds.update(out.get("errors_by_kind") or {})
            if out.get("part"):
                parts.append(out["part"])
            if out.get("errors"):
                errors.append(out["errors"])
    for status in ("FAILED", "PENDING"):
        for entry in files.get(status) or []:
            for child in _json_array(s3, bucket, entry["Key"]):
                items = (json.loads(child.get("Input") or "{}").get("Items") or [])
                indices = [int(i["index"]) for i in items if isinstance(i, dict) and "index" in i]
                totals["batches"] += 1
                totals["failed_batches"] += 1
                totals["rows"] += len(items)
                totals["failed_rows"] += len(items)
                kinds["failed_batch"] += len(items)
                if len(failures) < 20:
                    failures.append({"first_line": min(indices) + 2 if indices else None, "rows": len(items),
                                     "error": child.get("Error") or status, "cause": (child.get("Cause") or "")[:300]})
    return {**totals, "errors_by_kind": dict(kinds), "parts": sorted(parts), "error_files": sorted(errors),
            "failed": failures}


def summarize(event: dict, registry: Registry, s3: Any, events: Any, data_bucket: str) -> dict:
    """summary.json, the registry's batch-run item (lineage) and ``Batch Scored``."""
    batch, map_out = event["batch"], event.get("map") or {}
    details = map_out.get("ResultWriterDetails") or {}
    if not details.get("Key"):
        raise BatchInputError(f"the Map state's output has no ResultWriterDetails (got keys {sorted(map_out)})")
    totals = collect(s3, details["Bucket"], details["Key"])
    if totals["failed_batches"] and batch.get("rows") and totals["rows"] < int(batch["rows"]):
        # failed batches whose result entries do not carry their Input: their rows are the rest
        missing = int(batch["rows"]) - totals["rows"]
        totals["rows"] += missing
        totals["failed_rows"] += missing
    status = "succeeded" if not totals["failed_batches"] else "partial"
    summary = {
        "model": batch["model"], "run": batch["run"], "status": status, "version": batch["version"],
        "input": batch["object"], "rows": totals["rows"], "scored": totals["scored"],
        "refused": totals["refused"], "failed_rows": totals["failed_rows"], "batches": totals["batches"],
        "failed_batches": totals["failed_batches"], "errors_by_kind": totals["errors_by_kind"],
        "lines_exact": batch.get("lines_exact", True), "outputs": totals["parts"],
        "error_files": totals["error_files"], "failed": totals["failed"], "artifact": batch.get("artifact"),
        "execution_arn": event.get("execution_arn"), "map_run_arn": map_out.get("MapRunArn"),
        "started_at": batch.get("started_at"), "finished_at": utc_iso(),
    }
    summary_key = batch["output_prefix"] + "summary.json"
    s3.put_object(Bucket=data_bucket, Key=summary_key, Body=json.dumps(summary, indent=1).encode(),
                  ContentType="application/json")
    record_run(registry, summary, summary_key)
    detail = {k: summary[k] for k in ("model", "run", "status", "version", "rows", "scored", "refused",
                                      "failed_rows", "errors_by_kind", "input")}
    detail.update(summary=f"s3://{data_bucket}/{summary_key}", output_prefix=f"s3://{data_bucket}/{batch['output_prefix']}")
    put_event(events, BATCH_SCORED, detail, event_bus=os.environ.get("EVENT_BUS_NAME", "default"),
              execution_arn=event.get("execution_arn"))
    return {"status": status, "summary": summary_key, **{k: summary[k] for k in (
        "rows", "scored", "refused", "failed_rows", "version")}}


def record_run(registry: Registry, summary: dict, summary_key: str | None) -> None:
    outputs = summary.get("outputs") or []
    item = {k: summary.get(k) for k in ("status", "version", "input", "rows", "scored", "refused", "failed_rows",
                                        "errors_by_kind", "execution_arn", "started_at", "finished_at", "reason")}
    item.update(output_prefix=summary.get("output_prefix") or output_prefix(summary["model"], summary["run"]),
                summary_key=summary_key, parts=len(outputs),
                output_keys=outputs[:MAX_KEYS_IN_REGISTRY], output_keys_complete=len(outputs) <= MAX_KEYS_IN_REGISTRY)
    registry.put_batch_run(summary["model"], summary["run"], {k: v for k, v in item.items() if v is not None})


def fail(event: dict, registry: Registry, events: Any) -> dict:
    """The run failed (a refusal, or the Map past its tolerated failures): the registry item says why."""
    reason = failure_reason(event.get("error"))  # the pipeline's: `<Error>: <message>`, bounded
    batch = event.get("batch") or {}
    obj = batch.get("object") or event.get("object") or {}
    summary = {"model": event["model"], "run": str(event["run_id"]), "status": "failed", "reason": reason,
               "version": batch.get("version"), "input": obj, "execution_arn": event.get("execution_arn"),
               "started_at": batch.get("started_at"), "finished_at": utc_iso()}
    record_run(registry, summary, None)
    put_event(events, BATCH_SCORED, {k: summary[k] for k in ("model", "run", "status", "reason", "version", "input")},
              event_bus=os.environ.get("EVENT_BUS_NAME", "default"), execution_arn=event.get("execution_arn"))
    return {"status": "failed", "reason": reason}


