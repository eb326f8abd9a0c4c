"""The pipeline's execution input, for anything that starts a run besides the S3 rule.

The EventBridge rule of each model builds this same shape with an input transformer
(``infra/pipeline.py``); ``shipyard train`` and drift retraining build it with these helpers::

    {"model": "iris",
     "spec": {"target", "task", "estimator", "params", "metric", "min_score", "max_regression",
              "holdout", "drift": {"threshold", "window"}, "compute": {"type", "memory"} or
              {"type": "sagemaker", "instance_type", "volume_gb", "max_runtime"},
              "max_dataset_bytes"},
     "dataset": {"bucket", "key", "version_id", "size", "etag"},
     "force": false,                 # optional: train even if this object version was trained before
     "allow_schema_change": false,   # optional: lift the schema-compatibility gate for this run
     "trigger": {"source": "cli", ...}}
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from functions.core.layout import DATASET_SUFFIXES, DATASETS_PREFIX


def spec_document(spec: Any) -> dict:
    """A ``ModelSpec`` (infra/config.py) as the execution input carries it."""
    drift = getattr(spec, "drift", None)
    return {
        "target": spec.target,
        "task": spec.task,
        "estimator": spec.estimator,
        "params": dict(spec.params),
        "metric": spec.metric,
        "min_score": spec.min_score,
        "max_regression": spec.max_regression,
        "holdout": spec.holdout,
        "drift": {"threshold": drift.threshold, "window": drift.window} if drift is not None else {},
        # The largest dataset this model's memory takes (the Train function's own limit still caps it);
        # compute routes the run (TrainOn) and, for sagemaker, sizes the training job.
        **({"max_dataset_bytes": compute.max_dataset_bytes, "compute": compute.document()}
           if (compute := getattr(spec, "compute", None)) is not None else {}),
        # The release (docs/release.md): approval, mode and their numbers, read by the state machine's choices.
        **({"release": release.document()} if (release := getattr(spec, "release", None)) is not None else {}),
    }


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"expected s3://bucket/key, got {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"expected s3://bucket/key, got {uri!r}")
    return bucket, key


def describe_dataset(s3, bucket: str, key: str, version_id: str | None = None) -> dict:
    """``{bucket, key, version_id, size, etag}`` of the object's current (or given) version."""
    kwargs = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    head = s3.head_object(**kwargs)
    return {"bucket": bucket, "key": key, "version_id": head.get("VersionId") or version_id,
            "size": int(head.get("ContentLength", 0)), "etag": str(head.get("ETag", "")).strip('"')}


def latest_dataset(s3, bucket: str, model: str) -> dict | None:
    """The newest current dataset (``.csv``/``.csv.gz``: what an upload trains on) under
    ``datasets/<model>/`` (None when there is none): bucket, key,
    version id, size, etag, last_modified — from one versions listing, so the caller needs
    ``s3:ListBucketVersions`` only.

    Newest means latest LastModified, then the greatest key. S3 lists LastModified in whole
    seconds, so two uploads within one second tie and the key decides.
    """
    best = None
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=f"{DATASETS_PREFIX}{model}/"):
        for v in page.get("Versions", []):
            if not v.get("IsLatest") or not v["Key"].endswith(DATASET_SUFFIXES):
                continue
            if best is None or (v["LastModified"], v["Key"]) > (best["LastModified"], best["Key"]):
                best = v
    if best is None:
        return None
    return {"bucket": bucket, "key": best["Key"], "version_id": best.get("VersionId") or "null",
            "size": int(best.get("Size", 0)), "etag": str(best.get("ETag", "")).strip('"'),
            "last_modified": best["LastModified"].astimezone(UTC).isoformat()}


def execution_input(model: str, spec: Mapping[str, Any], dataset: Mapping[str, Any], *, force: bool = False,
                    allow_schema_change: bool = False, trigger: Mapping[str, Any] | None = None) -> dict:
    doc: dict[str, Any] = {"model": model, "spec": dict(spec), "dataset": dict(dataset)}
    if force:
        doc["force"] = True
    if allow_schema_change:
        doc["allow_schema_change"] = True
    if trigger:
        doc["trigger"] = dict(trigger)
    return doc


def start(sfn, state_machine_arn: str, doc: Mapping[str, Any], prefix: str = "manual") -> str:
    """Start an execution named ``<prefix>-<model>-<random>``; returns its ARN."""
    import uuid

    name = f"{prefix}-{doc['model']}-{uuid.uuid4().hex[:12]}"[:80]
    return sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(doc))["executionArn"]
