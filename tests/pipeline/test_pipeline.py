"""The pipeline end to end on the local cloud: S3 upload → EventBridge rule → the synthesized state
machine (moto's executing Step Functions) → the real handlers in Lambda workers → registry, S3, events.

Tests in this module share one local cloud; each uses its own model or asserts relative to the
versions it created.
"""
from __future__ import annotations

import hashlib
import json
import time

import pytest

from tests.pipeline import data
from tests.pipeline.conftest import events_of

pytestmark = pytest.mark.slow


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


def test_regressor_is_promoted_with_its_metric(run, registry):
    r = run("prices", data.prices())
    assert r.execution()["status"] == "SUCCEEDED"
    v = _version_of(registry, "prices", r)
    assert v["status"] == "production" and "classes" not in v["schema"]
    assert v["metrics"]["metric"] == "r2" and v["metrics"]["r2"] > 0.9
    assert v["metrics"]["parity"]["passed"] is True


def test_min_score_not_met_is_rejected_with_the_reason(cloud, run, registry):
    r = run("strict", data.animals(seed=3))
    execution = r.execution()
    assert execution["status"] == "SUCCEEDED"  # a rejection is a successful run
    v = _version_of(registry, "strict", r)
    assert v["status"] == "rejected"
    assert "below min_score 0.999" in v["reason"] and v["reason"].startswith("accuracy ")
    assert registry.get_alias("strict") is None
    assert v["metrics"]["validation"]["candidate_score"] == v["metrics"]["accuracy"]
    rejected = [e for e in events_of(cloud, "Model Rejected") if e["detail"]["model"] == "strict"]
    assert rejected and rejected[-1]["detail"]["reason"] == v["reason"]


def test_schema_change_is_rejected_and_production_stays(cloud, run, registry):
    first = run("animals", data.animals(seed=4), "base.csv")
    assert first.execution()["status"] == "SUCCEEDED"
    production = registry.get_alias("animals")
    r = run("animals", data.animals_with_extra_column(), "wider.csv")
    assert r.execution()["status"] == "SUCCEEDED"
    v = _version_of(registry, "animals", r)
    assert v["status"] == "rejected"
    assert f"not compatible with production v{production}" in v["reason"] and "features added ['weight']" in v["reason"]
    assert registry.get_alias("animals") == production
    assert registry.get_version("animals", production)["status"] == "production"


BAD_DATASETS = {
    "empty": (b"", "dataset is empty"),
    "missing target": (b"x1,x2,colour\n" + b"1,2,red\n" * 30, "target column 'species' not found"),
    "too few rows": (data.animals(n=12), "too few rows: the dataset has 12 data rows, at least 20 are needed"),
    "single class": (b"x1,colour,species\n" + b"".join(b"%d,red,cat\n" % i for i in range(30)),
                     "classification needs at least 2 classes, but target column 'species' has only one"),
    "unparsable number": (data.replace_cell(data.animals(), 14, 1, "abc"),
                          "column 'x2' is numeric (239 of 240 values are numbers) but line 14 has a value that is "
                          "not a number: 'abc'"),
    "over the size limit": (data.animals(n=8000), "dataset is too large: 382,943 bytes"),
}


def test_bad_datasets_fail_with_a_reason_and_never_touch_production(cloud, run, registry):
    if registry.get_alias("animals") is None:  # run on its own: put a production version in place first
        assert run("animals", data.animals()).execution()["status"] == "SUCCEEDED"
    production = registry.get_alias("animals")
    assert production is not None
    runs = {name: run("animals", body, f"bad-{name.replace(' ', '-')}.csv") for name, (body, _) in BAD_DATASETS.items()}
    for name, r in runs.items():
        execution = r.execution()
        assert execution["status"] == "FAILED", (name, execution)
        v = _version_of(registry, "animals", r)
        expected = BAD_DATASETS[name][1]
        assert v["status"] == "failed" and v["reason"].startswith("DatasetError: "), (name, v["reason"])
        assert expected in v["reason"], (name, v["reason"])
        assert execution.get("cause") == v["reason"]
        # DatasetError is not retried: Train ran once
        train_runs = [e for e in _history(cloud, execution["executionArn"]) if e["type"] == "TaskStateEntered"
                      and e["stateEnteredEventDetails"]["name"] == "Train"]
        scheduled = [e for e in _history(cloud, execution["executionArn"]) if e["type"] == "LambdaFunctionScheduled"]
        assert len(train_runs) == 1 and len(scheduled) == 3, name  # Allocate, Train, MarkFailed
        failed = [e for e in events_of(cloud, "Pipeline Failed")
                  if e["detail"]["execution_arn"] == execution["executionArn"]]
        assert len(failed) == 1 and failed[0]["detail"]["reason"] == v["reason"], name
    assert registry.get_alias("animals") == production
    assert registry.get_version("animals", production)["status"] == "production"


def test_throttled_s3_is_retried_to_success(cloud, run, registry):
    body = data.prices(seed=9)
    key = "datasets/prices/throttled.csv"
    # 4 GETs exhaust the SDK's own retries (standard mode, 1 attempt + 3 retries): the step raises
    # TransientError, the state machine retries it after its backoff, the 5th GET succeeds.
    cloud.faults.fail_gets(key, 4)
    r = run("prices", body, "throttled.csv")
    execution = r.execution()
    assert execution["status"] == "SUCCEEDED", execution
    assert cloud.faults.hits[key] == 4
    history = _history(cloud, execution["executionArn"])
    failures = [json.loads(e["lambdaFunctionFailedEventDetails"].get("cause") or "{}")
                for e in history if e["type"] == "LambdaFunctionFailed"]
    assert [f.get("errorType") for f in failures] == ["TransientError"]
    assert "SlowDown" in failures[0]["errorMessage"]
    v = _version_of(registry, "prices", r)
    assert v["status"] in ("production", "rejected")  # trained once, validated
    assert len(registry.versions_from_dataset(r.bucket, r.key, r.version_id)) == 1


def test_promote_timing_out_after_moving_the_alias_ends_promoted_not_failed(cloud, run, registry, monkeypatch):
    from localcloud.lambda_runtime import Invocation

    real, faked = cloud.runtime.invoke, []

    def invoke(name, event):
        inv = real(name, event)
        if (isinstance(event, dict) and event.get("action") == "promote" and not faked and not inv.failed
                and (event.get("input") or {}).get("model") == "deadline"):
            # the function did its work (alias moved, event sent) and then ran out of time
            error = {"errorType": "Sandbox.Timedout",
                     "errorMessage": f"{inv.request_id} Task timed out after 30.00 seconds"}
            faked.append(inv)
            return Invocation(inv.request_id, json.dumps(error).encode(), error, inv.logs, inv.duration_ms)
        return inv

    monkeypatch.setattr(cloud.runtime, "invoke", invoke)
    r = run("deadline", data.prices(seed=31))
    execution = r.execution()
    assert faked, "Promote was never invoked"
    assert execution["status"] == "SUCCEEDED", execution
    states = [e["stateEnteredEventDetails"]["name"] for e in _history(cloud, execution["executionArn"])
              if e["type"].endswith("StateEntered")]
    assert states[-3:] == ["MarkFailed", "StillPromoted?", "PromotedDespiteError"], states
    v = _version_of(registry, "deadline", r)
    assert v["status"] == "production" and registry.get_alias("deadline") == v["version"]
    mine = [e for e in events_of(cloud) if e["detail"].get("execution_arn") == execution["executionArn"]]
    assert "Pipeline Failed" not in {e["detail-type"] for e in mine}
    after = [e for e in mine if e["detail-type"] == "Model Promoted" and e["detail"].get("after_error")]
    assert len(after) == 1 and after[0]["detail"]["after_error"].startswith("Sandbox.Timedout: ")


def test_an_upload_whose_pipeline_cannot_start_is_kept_in_the_dead_letter_queue_and_alarms(cloud, run):
    sqs = cloud.client("sqs")
    (queue_url,) = [url for lid, url in cloud.physical_ids.items()
                    if lid.startswith("EventDeadLetters") and "Policy" not in lid]
    cloud.faults.refuse("AWSStepFunctions.StartExecution", 1)
    r = run("prices", data.prices(seed=41), "refused.csv")
    cloud.wait_idle()
    assert cloud.faults.hits["AWSStepFunctions.StartExecution"] == 1
    assert r.executions(timeout=1) == []
    changes = cloud.evaluate_alarms()  # (before reading the message: a received message is not visible)
    assert [c["to"] for c in changes if c["alarm"] == "Shipyard-event-dead-letters"] == ["ALARM"]
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                   MessageAttributeNames=["All"]).get("Messages", [])
    (message,) = [m for m in messages if json.loads(m["Body"])["detail"]["object"].get("version-id") == r.version_id]
    event = json.loads(message["Body"])  # the S3 event itself: enough to start the run by hand
    assert event["detail-type"] == "Object Created" and event["detail"]["object"]["key"] == r.key
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == "NO_PERMISSIONS" and "StartExecution refused" in attributes["ERROR_MESSAGE"]
    assert attributes["TARGET_ARN"] == cloud.outputs["PipelineArn"] and ":rule/" in attributes["RULE_ARN"]
    sqs.purge_queue(QueueUrl=queue_url)
    later = time.time() + 301  # the next 5-minute period: the queue is empty
    (back,) = [c for c in cloud.evaluate_alarms(now=later) if c["alarm"] == "Shipyard-event-dead-letters"]
    assert back["to"] == "OK" and "1 datapoint(s) evaluated, 0 breaching [0]" in back["reason"]


def test_the_same_object_version_delivered_twice_trains_once(cloud, run, registry):
    r = run("prices", data.prices(seed=11), "twice.csv")
    first = r.execution()
    assert first["status"] == "SUCCEEDED"
    sfn = cloud.client("stepfunctions")
    # EventBridge delivers at least once: the same event again starts a second execution.
    second_arn = sfn.start_execution(stateMachineArn=cloud.outputs["PipelineArn"], name="redelivered",
                                     input=first["input"])["executionArn"]
    cloud.wait_for_executions(cloud.outputs["PipelineArn"])
    second = sfn.describe_execution(executionArn=second_arn)
    assert second["status"] == "SUCCEEDED"
    out = json.loads(second["output"])
    assert out["run"]["duplicate"] is True and out["run"]["duplicate_of"]["execution_arn"] == first["executionArn"]
    states = [e["stateEnteredEventDetails"]["name"] for e in _history(cloud, second_arn)
              if e["type"].endswith("StateEntered")]
    assert "Train" not in states and states[-1] == "AlreadyHandled"
    assert len(registry.versions_from_dataset(r.bucket, r.key, r.version_id)) == 1


def test_cli_train_starts_a_run_by_hand_and_lineage_shows_the_chain(cloud, run, registry, monkeypatch, tmp_path,
                                                                     capsys):
    from infra import cli
    from tests.pipeline.conftest import CONFIG

    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"shipyard": CONFIG}}))
    monkeypatch.chdir(tmp_path)
    for k, v in cloud.environment().items():
        monkeypatch.setenv(k, v)
    # "the latest upload" is decided by LastModified, which S3 lists in whole seconds: wait out the
    # second of any earlier upload in this module, so this one is the newest without a tie
    time.sleep(1.05)
    r = run("prices", data.prices(seed=21), "by-hand.csv")
    first = r.execution()
    # the latest upload, already trained by its rule: deduplicated
    assert cli.main(["train", "prices", "--wait"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("arn:aws:states:")
    assert out[1] == f"already handled by {first['executionArn']} (use --force to train again)"
    # --force trains it again, as a new version with the same dataset lineage
    status = cli.main(["train", "prices", "--dataset", f"s3://{r.bucket}/{r.key}", "--force", "--wait"])
    arn, verdict = capsys.readouterr().out.splitlines()
    versions = registry.versions_from_dataset(r.bucket, r.key, r.version_id)
    assert len(versions) == 2 and arn in {v["execution_arn"] for v in versions}
    assert verdict.startswith("prices v") and (" promoted: " in verdict or " rejected: " in verdict)
    assert status == (0 if " promoted: " in verdict else 3)  # `shipyard wait`'s exit status: 3 rejected
    (mine,) = [v for v in versions if v["execution_arn"] == arn]
    assert mine["lineage"]["dataset"]["sha256"] == r.sha256
    assert cli.main(["lineage", "prices", str(mine["version"])]) == 0
    text = capsys.readouterr().out
    assert f"s3://{r.bucket}/{r.key} (version {r.version_id}" in text and f"execution  {arn}" in text
    assert cli.main(["train", "prices", "--dataset", "s3://nope"]) == 1
    assert "expected s3://bucket/key" in capsys.readouterr().err


def test_cli_alias_moves_on_the_local_cloud_are_audited_with_the_callers_identity(cloud, registry, monkeypatch,
                                                                                   tmp_path, capsys):
    """promote 1→2→3, a retried promote, rollback twice, rollback --to, nothing left: through the CLI,
    the local endpoint's STS and DynamoDB (a model of its own, versions made directly in the registry)."""
    from infra import cli
    from tests.pipeline.conftest import CONFIG

    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"shipyard": CONFIG}}))
    monkeypatch.chdir(tmp_path)
    env = cloud.environment()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    model = "audited"
    versions = []
    for _ in range(4):
        v = registry.allocate_version(model)["version"]
        registry.record_candidate(model, v, artifact_key=f"models/{model}/v{v}/model.onnx", artifact_sha256="0" * 64,
                                  schema={"features": []}, metrics={"accuracy": 0.9})
        versions.append(v)
    v1, v2, v3, v4 = versions
    for v in (v1, v2, v3, v3):  # the last one a retried promote
        assert cli.main(["promote", model, str(v)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"{model}: v{v3} already serves production; nothing changed"
    assert cli.main(["rollback", model]) == 0 and cli.main(["rollback", model]) == 0
    assert registry.get_alias(model) == v1
    assert cli.main(["rollback", model]) == 1
    assert "nothing to roll back to" in capsys.readouterr().err
    assert cli.main(["promote", model, str(v4)]) == 0 and cli.main(["rollback", model, "--to", str(v2)]) == 1
    assert f"v{v2} is not on production's rollback path" in capsys.readouterr().err
    assert cli.main(["rollback", model, "--to", str(v1)]) == 0
    history = registry.history(model)
    assert [(e["kind"], e["from_version"], e["to_version"]) for e in history] == [
        ("promote", None, v1), ("promote", v1, v2), ("promote", v2, v3), ("rollback", v3, v2),
        ("rollback", v2, v1), ("promote", v1, v4), ("rollback", v4, v1)]
    me = f"arn:aws:iam::123456789012:user/{env['AWS_ACCESS_KEY_ID']}"
    assert {e["actor"] for e in history} == {me}
    assert cli.main(["lineage", model]) == 0
    assert f"v{v4} -> v{v1}  by {me}: rolled back by hand" in capsys.readouterr().out


def _predict(cloud, model: str, instances: list[dict]):
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = cloud.outputs["ApiUrl"] + f"models/{model}/predict"
    body = json.dumps({"instances": instances})
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(req)
    return requests.post(url, data=body, headers=dict(req.headers), timeout=120)


def _cold_inference(cloud) -> None:
    """The inference function's next request starts a cold container."""
    for name, spec in list(cloud.runtime.functions.items()):
        if spec.handler.startswith("functions.inference."):
            cloud.runtime.cold(name)


def test_an_overwritten_production_model_is_never_served_nor_breaks_the_next_run(cloud, run, registry):
    import csv
    import io

    s3, bucket = cloud.client("s3"), cloud.outputs["ArtifactBucketName"]
    first = run("sealed", data.prices(seed=11))
    assert first.execution()["status"] == "SUCCEEDED"
    v1 = _version_of(registry, "sealed", first)
    assert v1["status"] == "production"
    key, recorded = v1["artifact_key"], v1["artifact_version_id"]
    # the registry records each artifact's object version, in the record and in lineage
    assert recorded == s3.head_object(Bucket=bucket, Key=key)["VersionId"]
    assert v1["lineage"]["artifacts"]["model.onnx"]["version_id"] == recorded
    for ref in v1["lineage"]["artifacts"].values():
        assert s3.head_object(Bucket=bucket, Key=ref["key"])["VersionId"] == ref["version_id"]
    rows = list(csv.DictReader(io.StringIO(data.prices(n=3, seed=12).decode())))
    strings = {f["name"] for f in v1["schema"]["features"] if f.get("type") == "string"}
    instances = [{k: x if k in strings else float(x) for k, x in row.items() if k != "price"} for row in rows]

    # written once: the local cloud's S3 refuses a conditional overwrite, as S3 does
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"not a model", IfNoneMatch="*")
    # someone overwrites production's model.onnx (and its holdout) with other bytes
    s3.put_object(Bucket=bucket, Key=key, Body=b"not a model")
    holdout_key = v1["lineage"]["artifacts"]["holdout.json"]["key"]
    s3.put_object(Bucket=bucket, Key=holdout_key, Body=b"{}")
    _cold_inference(cloud)
    answer = _predict(cloud, "sealed", instances)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Model-Version"] == str(v1["version"]) and len(answer.json()["predictions"]) == 3
    _cold_inference(cloud)  # a second cold container too: nothing depends on a warm cache
    assert _predict(cloud, "sealed", instances).status_code == 200

    # the next run scores production (its recorded model and holdout) as usual
    second = run("sealed", data.prices(seed=13))
    assert second.execution()["status"] == "SUCCEEDED"
    v2 = _version_of(registry, "sealed", second)
    validation = v2["metrics"]["validation"]
    assert validation["production_version"] == v1["version"] and validation["production_score"] > 0.9
    held = [c for c in validation["comparisons"] if c["set"] == f"production v{v1['version']}'s holdout"]
    assert len(held) == 1 and "error" not in held[0] and held[0]["production"] > 0.9, validation
    assert v2["status"] == "production", v2["reason"]

    # a version record tampered with (it names other bytes): 503, never those bytes, and the alarm
    other = s3.put_object(Bucket=bucket, Key=v2["artifact_key"], Body=b"other bytes")["VersionId"]
    ddb, table = cloud.client("dynamodb"), cloud.outputs["RegistryTableName"]
    sk = {"S": f"V#{v2['version']:010d}"}
    ddb.update_item(TableName=table, Key={"pk": {"S": "MODEL#sealed"}, "sk": sk},
                    UpdateExpression="SET artifact_version_id = :o", ExpressionAttributeValues={":o": {"S": other}})
    try:
        _cold_inference(cloud)
        answer = _predict(cloud, "sealed", instances)
        assert answer.status_code == 503 and "sha256" in answer.json()["message"], answer.text
        cloud.wait_idle()
        changes = [c for c in cloud.evaluate_alarms() if c["alarm"] == "Shipyard-artifact-integrity"]
        assert [c["to"] for c in changes] == ["ALARM"], changes
    finally:
        ddb.update_item(TableName=table, Key={"pk": {"S": "MODEL#sealed"}, "sk": sk},
                        UpdateExpression="SET artifact_version_id = :v",
                        ExpressionAttributeValues={":v": {"S": v2["artifact_version_id"]}})
