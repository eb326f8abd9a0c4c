"""The pipeline end to end on the local cloud: S3 upload → EventBridge rule → the synthesized state
machine (moto's executing Step Functions) → the real handlers in Lambda workers → registry, S3, events.

Tests in this module share one local cloud; each uses its own model or asserts relative to the
versions it created.
"""
from __future__ import annotations

import hashlib
import json

import pytest

from tests.pipeline import data
from tests.pipeline.conftest import events_of


def _history(cloud, execution_arn: str) -> list[dict]:
    sfn = cloud.client("stepfunctions")
    return sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]


def _artifact(cloud, key: str) -> bytes:
    return cloud.client("s3").get_object(Bucket=cloud.outputs["ArtifactBucketName"], Key=key)["Body"].read()


def _version_of(registry, model: str, run) -> dict:
    (rec,) = registry.versions_from_dataset(run.bucket, run.key, run.version_id)
    return registry.get_version(model, rec["version"])


def test_upload_trains_validates_and_promotes_a_string_labelled_classifier(cloud, run, registry):
    r = run("animals", data.animals())
    execution = r.execution()
    assert execution["status"] == "SUCCEEDED", execution
    v = _version_of(registry, "animals", r)
    assert v["status"] == "production" and registry.get_alias("animals") == v["version"]
    # lineage: the exact object version and its bytes
    ds = v["lineage"]["dataset"]
    assert (ds["bucket"], ds["key"], ds["version_id"], ds["sha256"]) == (r.bucket, r.key, r.version_id, r.sha256)
    assert ds["rows"] == 240 and ds["columns"] == 4
    assert v["execution_arn"] == execution["executionArn"] == v["lineage"]["execution_arn"]
    assert v["estimator"] == "sklearn.linear_model.LogisticRegression" and v["params"] == {"max_iter": 500}
    lin = v["lineage"]
    assert lin["split"]["seed"] == int(r.sha256[:8], 16) and lin["split"]["holdout_rows"] == 48
    assert {"numpy", "scikit-learn", "skl2onnx", "onnxruntime", "python"} <= set(lin["libraries"])
    assert len(lin["code_version"]) == 16
    # schema: string feature, string classes
    assert {"name": "colour", "type": "string", "categories": ["blue", "green", "red"]} in v["schema"]["features"]
    assert v["schema"]["classes"] == ["cat", "dog", "fish"]
    # metrics: candidate score, parity recorded, validation recorded
    m = v["metrics"]
    assert m["metric"] == "accuracy" and m["accuracy"] > 0.8 and m["parity"]["passed"] is True
    assert m["validation"]["promote"] is True and m["validation"]["production_version"] is None
    # artifacts: present, sha256 as recorded
    for name in ("model.onnx", "metrics.json", "baseline.json", "holdout.json"):
        ref = lin["artifacts"][name]
        assert ref["key"] == f"models/animals/v{v['version']}/{name}"
        assert hashlib.sha256(_artifact(cloud, ref["key"])).hexdigest() == ref["sha256"]
    assert v["artifact_key"] == lin["artifacts"]["model.onnx"]["key"]
    assert v["artifact_sha256"] == lin["artifacts"]["model.onnx"]["sha256"]
    baseline = json.loads(_artifact(cloud, lin["artifacts"]["baseline.json"]["key"]))
    assert baseline["window"] == 50 and len(baseline["features"]["x1"]["quantiles"]) == 201
    assert set(baseline["features"]["colour"]["categories"]) == {"blue", "green", "red"}
    # audit: one alias move by this execution
    (event,) = [e for e in registry.history("animals") if e["to_version"] == v["version"]]
    assert event["actor"] == execution["executionArn"] and event["reason"].startswith("pipeline:")
    promoted = [e for e in events_of(cloud, "Model Promoted") if e["detail"]["version"] == v["version"]
                and e["detail"]["model"] == "animals"]
    assert len(promoted) == 1 and promoted[0]["source"] == "shipyard"
    assert promoted[0]["detail"]["dataset"]["version_id"] == r.version_id
