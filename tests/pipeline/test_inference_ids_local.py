"""Inference ids on the local cloud (issue 16): through the real API (SigV4, API Gateway, the inference
function as synthesized), a prediction's inference ids arrive in the captured object in the
artifacts bucket (Firehose -> ``capture/<model>/…``), the key ground-truth labels are joined on.

The model is published to the registry directly (no pipeline run: what is tested is serving and
capture)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests import models

MODEL = "animals"


@pytest.fixture(scope="module")
def served(cloud):
    from functions.core.artifacts import write_artifact
    from functions.core.registry import Registry

    trained = models.classifier()
    registry = Registry(cloud.outputs["RegistryTableName"], client=cloud.client("dynamodb"),
                        audit_table=cloud.outputs["AuditTableName"], known_models=[MODEL])
    bucket = cloud.outputs["ArtifactBucketName"]
    version = registry.allocate_version(MODEL, estimator="test", params={})["version"]
    key = f"models/{MODEL}/v{version}/model.onnx"
    written = write_artifact(cloud.client("s3"), bucket, key, trained.onnx)
    registry.record_candidate(MODEL, version, artifact_key=key, artifact_sha256=written["sha256"],
                              artifact_version_id=written["version_id"], schema=trained.schema.to_dict(),
                              metrics={"accuracy": 0.9}, lineage={})
    registry.promote(MODEL, version, reason="test", actor="tests")
    return trained, version


def call(cloud, path, body):
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    url = cloud.outputs["ApiUrl"].rstrip("/") + path
    data = json.dumps(body).encode()
    env = cloud.environment()
    session = boto3.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                            aws_session_token=env.get("AWS_SESSION_TOKEN"), region_name="us-east-1")
    req = AWSRequest(method="POST", url=url, data=data, headers={"Content-Type": "application/json"})
    SigV4Auth(session.get_credentials(), "execute-api", env.get("AWS_REGION") or "us-east-1").add_auth(req)
    request = urllib.request.Request(url, data=data, method="POST", headers=dict(req.headers.items()))
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def captured_lines(cloud) -> list[dict]:
    s3 = cloud.client("s3")
    bucket = cloud.outputs["ArtifactBucketName"]
    lines = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"capture/{MODEL}/"):
        for obj in page.get("Contents", []):
            text = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
            lines += [json.loads(line) for line in text.splitlines() if line.strip()]
    return lines


def test_inference_ids_arrive_in_the_captured_object(cloud, served):
    trained, version = served
    path = f"/models/{MODEL}/predict"
    records = trained.records(4)
    status, headers, generated = call(cloud, path, {"instances": records})
    assert status == 200, generated
    ids = generated["inference_ids"]
    request_id = headers.get("x-amzn-RequestId") or headers.get("X-Amzn-Requestid")
    assert ids == [f"{request_id}-{i}" for i in range(4)]
    status, _, sent = call(cloud, path, {"instances": trained.arrays(3), "ids": ["cust-7", "cust-1", "cust-9"]})
    assert status == 200 and sent["inference_ids"] == ["cust-7", "cust-1", "cust-9"]
    status, _, refused = call(cloud, path, {"instances": trained.arrays(2), "ids": [17, 18]})
    assert status == 400 and 'send ids as strings, e.g. "17"' in refused["message"]

    by_ids = {tuple(line["inference_ids"]): line for line in captured_lines(cloud)}
    assert len(by_ids) == 2  # the refused request was not captured
    first, second = by_ids[tuple(ids)], by_ids[("cust-7", "cust-1", "cust-9")]
    assert first["model"] == MODEL and first["version"] == version == generated["version"]
    assert first["instances"] == records and first["predictions"] == generated["predictions"]
    assert first["classes"] == generated["classes"] and first["probabilities"] == generated["probabilities"]
    assert second["predictions"] == sent["predictions"] and len(second["instances"]) == 3
