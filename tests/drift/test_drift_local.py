"""The drift loop end to end on the local cloud, with the stack as `cdk synth` builds it:

upload → pipeline → production v1 → drifted traffic through the signed API (captured by Firehose)
→ `tick()` fires the drift schedule → report in drift/ + registry item + metrics → the drift alarm
goes to ALARM → SNS e-mail → Drift Detected → retrain rule → a pipeline run on the newest dataset
→ v2. Then `shipyard drift check` against the same cloud through AWS_ENDPOINT_URL.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests import models
from tests.pipeline import data

pytestmark = pytest.mark.slow

MODEL = "animals"
CONFIG = {
    "stack_name": "Shipyard",
    "alarm_email": "ops@example.com",
    "api": {"auth": "iam"},
    "models": {MODEL: {"target": "species", "task": "classification", "min_score": 0.6,
                       "drift": {"schedule": "rate(1 hour)", "threshold": 0.1, "share": 0.5, "window": 500,
                                 "retrain": True}}},
}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    from aws_cdk import App, Duration

    from infra.config import load_config
    from infra.stack import ShipyardStack, read_cdk_json_context
    from localcloud import LocalCloud, Template

    context = {k: v for k, v in read_cdk_json_context().items() if k != "shipyard"}
    outdir = tmp_path_factory.mktemp("cdk.out.drift.local")
    app = App(context=context, outdir=str(outdir), analytics_reporting=False)
    ShipyardStack(app, "Shipyard", config=load_config(CONFIG), build_layers=False,
                  pipeline_options={"retry_interval": Duration.seconds(1), "retry_backoff_rate": 1.0})
    assembly = Path(app.synth().directory)
    lines: list[str] = []
    c = LocalCloud(Template.load(assembly), aws_port=0, api_port=0, clock=False, log=lines.append)
    c.log_lines = lines
    c.start()
    try:
        yield c
    finally:
        c.stop()


def predict(cloud, instances) -> dict:
    url = cloud.outputs["ApiUrl"] + f"models/{MODEL}/predict"
    body = json.dumps({"instances": instances})
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(req)
    answer = requests.post(url, data=body, headers=dict(req.headers), timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.json()


def drifted_instances(n: int, seed: int = 11) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"x1": float(a), "x2": float(b), "colour": "green"}
            for a, b in zip(rng.normal(3.0, 1.0, n), rng.normal(12.0, 3.0, n))]


def executions(cloud) -> list[dict]:
    sfn = cloud.client("stepfunctions")
    arn = cloud.outputs["PipelineArn"]
    cloud.wait_for_executions(arn, timeout=300)
    return [sfn.describe_execution(executionArn=e["executionArn"])
            for e in sfn.list_executions(stateMachineArn=arn)["executions"]]


def test_drifted_traffic_to_alarm_and_retraining(cloud, monkeypatch, capsys):
    from functions.core.registry import Registry
    from functions.drift.check import drift_history

    started = time.perf_counter()
    s3 = cloud.client("s3")
    registry = Registry(cloud.outputs["RegistryTableName"], client=cloud.client("dynamodb"), known_models=[MODEL],
                        audit_table=cloud.outputs["AuditTableName"])
    columns, rows = models.classification_table(n=800, seed=0)
    s3.put_object(Bucket=cloud.outputs["DataBucketName"], Key=f"datasets/{MODEL}/first.csv",
                  Body=data.to_csv(columns, rows))
    (first,) = executions(cloud)
    assert first["status"] == "SUCCEEDED", first
    assert registry.get_alias(MODEL, "production") == 1
    trained = time.perf_counter()

    # drifted traffic through the API: one request of 600 instances, captured through Firehose
    answer = predict(cloud, drifted_instances(600))
    assert answer["version"] == 1 and len(answer["predictions"]) == 600
    assert s3.list_objects_v2(Bucket=cloud.outputs["ArtifactBucketName"], Prefix=f"capture/{MODEL}/")["KeyCount"] >= 1

    # the hourly schedule fires
    fired = cloud.tick(now=time.time() + 3601)
    assert any("Schedule" in name or "drift" in name.lower() for name in fired), fired
    cloud.wait_idle()
    assert cloud.function_errors == [], cloud.function_errors
    (check,) = drift_history(registry, MODEL)
    assert check["drift_detected"] is True and check["version"] == 1 and check["rows"] == 500
    report = json.loads(s3.get_object(Bucket=cloud.outputs["ArtifactBucketName"],
                                      Key=check["report_key"])["Body"].read())
    assert report["model"] == MODEL and report["drift_detected"] is True
    assert {"x1", "x2", "colour"} == set(report["features"]) and report["features"]["colour"]["drifted"] is True
    checked = time.perf_counter()

    # the alarm: DriftedShare >= 0.5 → ALARM → SNS → e-mail (printed by the local cloud)
    changes = cloud.evaluate_alarms()
    drift_alarm = [c for c in changes if c["alarm"] == "Shipyard-animals-drift"]
    assert drift_alarm and drift_alarm[0]["to"] == "ALARM", changes
    others = [c for c in changes if c["to"] == "ALARM" and c["alarm"] != "Shipyard-animals-drift"]
    assert others == []  # no function error, throttle, 5XX or failed execution on the way
    mails = [n for n in cloud.notifications if "Shipyard-animals-drift" in (n["subject"] or "")]
    assert mails and mails[0]["to"] == "ops@example.com"
    assert json.loads(mails[0]["message"])["NewStateValue"] == "ALARM"

    # Drift Detected → retrain rule → retrain function → a pipeline run on the newest dataset
    runs = executions(cloud)
    retrains = [e for e in runs if json.loads(e["input"]).get("trigger", {}).get("source") == "drift"]
    assert len(retrains) == 1, [json.loads(e["input"]).get("trigger") for e in runs]
    retrain = retrains[0]
    payload = json.loads(retrain["input"])
    assert payload["dataset"]["key"] == f"datasets/{MODEL}/first.csv" and payload["force"] is True
    assert payload["trigger"]["report"]["key"] == check["report_key"]
    assert retrain["status"] == "SUCCEEDED", retrain
    v2 = registry.get_version(MODEL, 2)
    assert v2["execution_arn"] == retrain["executionArn"] and v2["status"] in ("production", "rejected")
    retrained = time.perf_counter()

    # `shipyard drift check` against the same cloud, found through AWS_ENDPOINT_URL and the stack name
    from infra import cli

    for key, value in cloud.environment().items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    assert cli.main(["drift", "check", MODEL]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "DRIFT DETECTED" in lines[0] and "500 rows checked" in lines[0]
    table = lines[1:-2]
    assert table[0].split()[:3] == ["feature", "type", "statistic"]
    drift_column = [row.split()[5] for row in table[2:]]
    assert drift_column == sorted(drift_column) and drift_column[0] == "DRIFTED"  # drifted features first
    bucket = cloud.outputs["ArtifactBucketName"]
    assert lines[-2].startswith(f"report: s3://{bucket}/drift/{MODEL}/")
    assert lines[-1].startswith(f"html report: s3://{bucket}/reports/{MODEL}/")  # docs/reports.md
    assert len(drift_history(registry, MODEL)) == 2
    assert cli.main(["drift", "check", "nope"]) == 1
    assert "model 'nope'" in capsys.readouterr().err
    print("\n" + out)
    print(f"[timing] train {trained - started:.1f}s, check {checked - trained:.1f}s, "
          f"alarm+retrain {retrained - checked:.1f}s, total {time.perf_counter() - started:.1f}s")
