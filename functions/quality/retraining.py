"""Retraining on ``Quality Degraded`` (docs/quality.md, "Retraining"): what the quality retrain function runs.

``quality.retrain``:

- ``"dataset"``: the pipeline runs on the model's newest dataset, as drift retraining does
  (``functions.drift.check.retrain_input``: ``force`` so the dataset that trained production may
  train again), with ``trigger.source = "quality"``;
- ``"dataset+labels"``: the newest dataset's rows plus the labelled traffic (every captured
  instance of the window with its label as the target) are written to
  ``datasets/<model>/retrain-<ts>-with-labels.csv`` in the data bucket, with S3 object metadata
  naming the sources (base dataset key and version id, label files, labelled rows); the run is
  started on that object version with ``trigger = {"source": "quality", "base_dataset", "labels", …}``.
  The upload also matches the model's upload rule: both runs claim the same object version, so one
  trains and the other ends as a duplicate (``AlreadyHandled``), and the version's lineage names the
  combined dataset either way (its metadata names the sources; ``shipyard lineage`` prints them).
"""
from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.core.layout import DATASET_SUFFIXES, DATASETS_PREFIX
from functions.drift.check import retrain_input
from functions.pipeline.execution import execution_input, start
from functions.quality import WITH_LABELS_SUFFIX
from functions.quality.check import Pair, QualityCheckError, QualitySettings, join, read_captures, read_labels

MAX_METADATA_CHARS = 1500  # S3 user metadata is at most 2 KB in all


def base_dataset(s3, bucket: str, model: str) -> dict | None:
    """The newest current dataset under ``datasets/<model>/`` that is not itself a combined
    ``…-with-labels.csv`` (labelled traffic is added once, to a dataset someone uploaded). The shape of
    ``functions.pipeline.execution.latest_dataset``."""
    best = None
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=f"{DATASETS_PREFIX}{model}/"):
        for v in page.get("Versions", []):
            key = v["Key"]
            if not v.get("IsLatest") or not key.endswith(DATASET_SUFFIXES) or key.endswith(WITH_LABELS_SUFFIX):
                continue
            if best is None or (v["LastModified"], key) > (best["LastModified"], best["Key"]):
                best = v
    if best is None:
        return None
    return {"bucket": bucket, "key": best["Key"], "version_id": best.get("VersionId") or "null",
            "size": int(best.get("Size", 0)), "etag": str(best.get("ETag", "")).strip('"')}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def labelled_rows(pairs: list[Pair], header: list[str], target: str) -> tuple[list[list[str]], int]:
    """The labelled instances as rows of *header* (the target column holds the label); instances that
    fit neither form (a record, or an array in the feature order = header without the target) are
    left out and counted."""
    features = [c for c in header if c != target]
    rows, skipped = [], 0
    for p in pairs:
        inst = p.instance
        if isinstance(inst, Mapping):
            values = {f: inst.get(f) for f in features}
        elif isinstance(inst, list) and len(inst) == len(features):
            values = dict(zip(features, inst))
        else:
            skipped += 1
            continue
        values[target] = p.label
        rows.append([_cell(values.get(c)) for c in header])
    return rows, skipped


def combined_dataset(s3, *, data_bucket: str, artifact_bucket: str, model: str, settings: QualitySettings,
                     base: Mapping[str, Any], now: datetime) -> tuple[dict, dict]:
    """Write ``datasets/<model>/retrain-<ts>-with-labels.csv`` (base rows + labelled traffic); returns
    (the dataset as the execution input names it, the sources)."""
    kwargs = {"Bucket": base["bucket"], "Key": base["key"]}
    if base.get("version_id") and base["version_id"] != "null":
        kwargs["VersionId"] = base["version_id"]
    data = s3.get_object(**kwargs)["Body"].read()
    if base["key"].endswith(".gz"):
        data = gzip.decompress(data)
    text = data.decode("utf-8-sig")
    header = next(csv.reader(io.StringIO(text)), None)
    if not header or settings.target not in header:
        raise QualityCheckError(f"dataset s3://{base['bucket']}/{base['key']} has no header with the target "
                                f"{settings.target!r}; cannot add labelled traffic to it")
    caps = read_captures(s3, artifact_bucket, model, now=now, window=settings.window,
                         late_lookback=settings.late_lookback)
    labels = read_labels(s3, data_bucket, model, settings.target, settings.task,
                         since=now - timedelta(seconds=settings.window + settings.late_lookback))
    pairs = join(caps, labels, settings.task).pairs
    rows, skipped = labelled_rows(pairs, [h.strip() for h in header], settings.target)
    out = io.StringIO()
    out.write(text if text.endswith("\n") else text + "\n")
    csv.writer(out, lineterminator="\n").writerows(rows)
    files = sorted({p.label_file for p in pairs})
    key = f"{DATASETS_PREFIX}{model}/retrain-{now:%Y%m%dT%H%M%S}Z{WITH_LABELS_SUFFIX}"
    label_list = ",".join(files)
    if len(label_list) > MAX_METADATA_CHARS:
        label_list = label_list[:MAX_METADATA_CHARS] + f"…({len(files)} files)"
    metadata = {"shipyard-source": "quality", "base-dataset-key": base["key"],
                "base-dataset-version-id": str(base.get("version_id")), "label-files": label_list,
                "labelled-rows": str(len(rows))}
    body = out.getvalue().encode()
    put = s3.put_object(Bucket=data_bucket, Key=key, Body=body, ContentType="text/csv", Metadata=metadata)
    dataset = {"bucket": data_bucket, "key": key, "version_id": put.get("VersionId") or "null",
               "size": len(body), "etag": str(put.get("ETag", "")).strip('"')}
    sources = {"base_dataset": {k: base[k] for k in ("bucket", "key", "version_id") if k in base},
               "labels": {"files": files, "rows": len(rows), "skipped_instances": skipped}}
    return dataset, sources


def start_retraining(model: str, *, mode: str, spec: Mapping[str, Any], settings: QualitySettings, s3, sfn,
                     state_machine_arn: str, data_bucket: str, artifact_bucket: str, trigger: Mapping[str, Any],
                     now: datetime | None = None) -> dict:
    """Start the retraining run *mode* asks for: ``{"model", "mode", "dataset", "execution_arn"[, sources]}``."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    base = base_dataset(s3, data_bucket, model)
    if base is None:
        raise QualityCheckError(f"model {model!r} degraded but s3://{data_bucket}/{DATASETS_PREFIX}{model}/ holds no "
                                "dataset to retrain on; upload one (that starts the pipeline by itself)")
    if mode == "dataset":
        payload = retrain_input(model, spec, base, trigger={**dict(trigger), "source": "quality", "mode": mode})
        arn = start(sfn, state_machine_arn, payload, prefix="quality")
        return {"model": model, "mode": mode, "dataset": base, "execution_arn": arn}
    if mode != "dataset+labels":
        raise QualityCheckError(f"unknown quality.retrain mode {mode!r}; expected 'dataset' or 'dataset+labels'")
    dataset, sources = combined_dataset(s3, data_bucket=data_bucket, artifact_bucket=artifact_bucket, model=model,
                                        settings=settings, base=base, now=now)
    payload = execution_input(model, spec, dataset,
                              trigger={**dict(trigger), "source": "quality", "mode": mode, **sources})
    arn = start(sfn, state_machine_arn, payload, prefix="quality")
    return {"model": model, "mode": mode, "dataset": dataset, "execution_arn": arn, **sources}
