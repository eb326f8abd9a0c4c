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
    "over the size limit": (data.animals(n=2000), "dataset is too large: 9"),
}


def test_bad_datasets_fail_with_a_reason_and_never_touch_production(cloud, run, registry):
    production = registry.get_alias("animals")
    assert production is not None  # the promote test ran first in this module
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
        failed = [e for e in events_of(cloud, "Pipeline Failed") if e["detail"]["execution_arn"] == execution["executionArn"]]
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
    states = [e["stateEnteredEventDetails"]["name"] for e in _history(cloud, second_arn) if e["type"].endswith("StateEntered")]
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
    r = run("prices", data.prices(seed=21), "by-hand.csv")
    first = r.execution()
    # the latest upload, already trained by its rule: deduplicated
    assert cli.main(["train", "prices", "--wait"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("arn:aws:states:") and out[1] == f"already handled by {first['executionArn']} (use --force to train again)"
    # --force trains it again, as a new version with the same dataset lineage
    assert cli.main(["train", "prices", "--dataset", f"s3://{r.bucket}/{r.key}", "--force", "--wait"]) == 0
    arn, verdict = capsys.readouterr().out.splitlines()
    versions = registry.versions_from_dataset(r.bucket, r.key, r.version_id)
    assert len(versions) == 2 and arn in {v["execution_arn"] for v in versions}
    assert verdict.startswith("prices v") and (" promoted: " in verdict or " rejected: " in verdict)
    (mine,) = [v for v in versions if v["execution_arn"] == arn]
    assert mine["lineage"]["dataset"]["sha256"] == r.sha256
    assert cli.main(["lineage", "prices", str(mine["version"])]) == 0
    text = capsys.readouterr().out
    assert f"s3://{r.bucket}/{r.key} (version {r.version_id}" in text and f"execution  {arn}" in text
    assert cli.main(["train", "prices", "--dataset", "s3://nope"]) == 1
    assert "expected s3://bucket/key" in capsys.readouterr().err


# ---------------------------------------------------------------------------- steps on moto (no local cloud)

STEP_DATASET = {"bucket": "data", "key": "datasets/iris/a.csv", "version_id": "v1"}
STEP_SPEC = {"target": "species", "metric": "accuracy"}


class FlakyEvents:
    """An EventBridge client whose first `failures` PutEvents calls fail (None: all of them)."""

    def __init__(self, failures=None, how="client"):
        self.failures, self.how, self.calls, self.sent = failures, how, 0, []

    def put_events(self, Entries):
        from botocore.exceptions import ClientError

        self.calls += 1
        if self.failures is None or self.calls <= self.failures:
            if self.how == "client":
                raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "nope"}}, "PutEvents")
            return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "boom"}]}
        self.sent.extend(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(self.calls)}]}

    def types(self):
        return [e["DetailType"] for e in self.sent]


@pytest.fixture
def moto_registry(monkeypatch):
    import boto3
    from moto import mock_aws

    from functions.core.registry import Registry
    from functions.pipeline import steps
    from tests.support import create_registry_table

    monkeypatch.setattr(steps, "_sleep", lambda s: None)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_registry_table(client, "registry")
        yield Registry("registry", client=client, known_models=["iris"])


def _candidate(reg, arn="arn:aws:states:us-east-1:1:execution:p:run1") -> int:
    v = reg.allocate_version("iris", execution_arn=arn, dataset=STEP_DATASET)["version"]
    reg.record_candidate("iris", v, artifact_key=f"models/iris/v{v}/model.onnx", artifact_sha256="ab" * 32,
                         schema={"features": []}, metrics={"metric": "accuracy", "accuracy": 0.9})
    return v


def _promote_input(version: int, production=None) -> dict:
    return {"model": "iris", "spec": STEP_SPEC, "dataset": STEP_DATASET, "version": version,
            "validation": {"promote": True, "reason": "ok", "production_version": production}}


@pytest.mark.parametrize("how", ["client", "failed-entry"])
def test_promote_does_not_fail_once_the_alias_moved_when_the_event_cannot_be_sent(moto_registry, how):
    from functions.pipeline import steps

    arn = "arn:aws:states:us-east-1:1:execution:p:run1"
    v = _candidate(moto_registry, arn)
    events = FlakyEvents(failures=None, how=how)
    out = steps.promote(_promote_input(v), moto_registry, events, execution_arn=arn)
    assert out["promoted"] is True and out["to_version"] == v
    assert out["event_delivered"] is False and out["event_error"]
    assert events.calls == steps.EVENT_SEND_ATTEMPTS  # the send alone was retried, the move was not
    assert moto_registry.get_alias("iris") == v and len(moto_registry.history("iris")) == 1


def test_promote_retries_the_event_send_alone(moto_registry):
    from functions.pipeline import steps

    arn = "arn:aws:states:us-east-1:1:execution:p:run1"
    v = _candidate(moto_registry, arn)
    events = FlakyEvents(failures=2)
    out = steps.promote(_promote_input(v), moto_registry, events, execution_arn=arn)
    assert out["event_delivered"] is True and "event_error" not in out
    assert events.types() == [steps.PROMOTED] and events.calls == 3
    assert len(moto_registry.history("iris")) == 1


def test_mark_failed_after_the_move_reports_the_promotion_not_a_failure(moto_registry):
    from functions.pipeline import steps

    arn = "arn:aws:states:us-east-1:1:execution:p:run1"
    v = _candidate(moto_registry, arn)
    moto_registry.promote("iris", v, reason="pipeline: ok", actor=arn, expected=None)
    events = FlakyEvents(failures=0)
    failure = {"model": "iris", "dataset": STEP_DATASET, "run": {"version": v},
               "error": {"Error": "States.Timeout", "Cause": "Promote timed out"}}
    out = steps.mark_failed(failure, moto_registry, events, execution_arn=arn)
    assert out["failed"] is False and out["promoted"] is True and out["reason"].startswith("States.Timeout")
    assert events.types() == [steps.PROMOTED]
    assert json.loads(events.sent[0]["Detail"])["audit_seq"] == 1
    assert moto_registry.get_version("iris", v)["status"] == "production"


def test_mark_failed_still_fails_a_candidate(moto_registry):
    from functions.pipeline import steps

    v = _candidate(moto_registry)
    events = FlakyEvents(failures=0)
    out = steps.mark_failed({"model": "iris", "run": {"version": v}, "error": {"Error": "Boom"}},
                            moto_registry, events, execution_arn="arn:x")
    assert out["failed"] is True and events.types() == [steps.FAILED]
    assert moto_registry.get_version("iris", v)["status"] == "failed"


def test_allocate_claims_the_dataset_version_once(moto_registry):
    from functions.pipeline import steps

    event = {"model": "iris", "spec": STEP_SPEC, "dataset": STEP_DATASET}
    first = steps.allocate(event, moto_registry, execution_arn="arn:1")
    assert first == {"duplicate": False, "version": 1, "dataset_ref": "s3://data/datasets/iris/a.csv?versionId=v1"}
    assert steps.allocate(event, moto_registry, execution_arn="arn:1")["version"] == 1  # a retry of the state
    dup = steps.allocate(event, moto_registry, execution_arn="arn:2")
    assert dup["duplicate"] is True and dup["duplicate_of"]["execution_arn"] == "arn:1"
    assert dup["duplicate_of"]["version"] == 1
    forced = steps.allocate({**event, "force": True}, moto_registry, execution_arn="arn:3")
    assert forced["duplicate"] is False and forced["version"] == 2
    assert [v["execution_arn"] for v in moto_registry.list_versions("iris")] == ["arn:1", "arn:3"]


def test_promote_retry_finds_its_own_move_with_one_query(moto_registry, monkeypatch):
    from functions.pipeline import steps

    arn = "arn:aws:states:us-east-1:1:execution:p:run1"
    v = _candidate(moto_registry, arn)
    first = steps.promote(_promote_input(v), moto_registry, FlakyEvents(failures=0), execution_arn=arn)
    monkeypatch.setattr(moto_registry, "history", None)  # the retry must not read the whole audit log
    again = steps.promote(_promote_input(v), moto_registry, FlakyEvents(failures=0), execution_arn=arn)
    assert again["audit_seq"] == first["audit_seq"] == 1 and again["to_version"] == v
    other = _candidate(moto_registry, "arn:other")
    with pytest.raises(steps.AliasConflict):
        steps.promote(_promote_input(other), moto_registry, FlakyEvents(failures=0), execution_arn="arn:other")
