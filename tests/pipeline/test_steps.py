"""Pipeline step handlers on moto, without the local cloud: what Promote and MarkFailed do when
the alias has moved, event delivery retries, run claims. (A separate module from the local-cloud
tests: moto's mock resets process-wide state.)"""
from __future__ import annotations

import json
import time

import pytest

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
    assert events.types() == [steps.MODEL_PROMOTED] and events.calls == 3
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
    assert events.types() == [steps.MODEL_PROMOTED]
    assert json.loads(events.sent[0]["Detail"])["audit_seq"] == 1
    assert moto_registry.get_version("iris", v)["status"] == "production"


def test_mark_failed_still_fails_a_candidate(moto_registry):
    from functions.pipeline import steps

    v = _candidate(moto_registry)
    events = FlakyEvents(failures=0)
    out = steps.mark_failed({"model": "iris", "run": {"version": v}, "error": {"Error": "Boom"}},
                            moto_registry, events, execution_arn="arn:x")
    assert out["failed"] is True and events.types() == [steps.PIPELINE_FAILED]
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


class RecordingEvents:
    """An EventBridge client that keeps every entry and answers with `answer` (default: accepted)."""

    def __init__(self, answer=None):
        self.entries, self.answer = [], answer

    def put_events(self, Entries):
        self.entries.extend(Entries)
        return self.answer or {"FailedEntryCount": 0, "Entries": [{"EventId": "e1"}]}


def test_pipeline_events_name_the_execution_and_the_configured_bus(monkeypatch):
    from functions.pipeline import steps

    monkeypatch.setenv("EVENT_BUS_NAME", "shipyard-bus")
    events = RecordingEvents()
    arn = "arn:aws:states:us-east-1:1:execution:p:run1"
    steps.put_event(events, steps.MODEL_REJECTED, {"model": "iris", "version": 2}, arn)
    steps.put_event(events, steps.PIPELINE_FAILED, {"model": "iris", "version": None}, "manual")
    with_arn, without = events.entries
    assert with_arn == {"Source": "shipyard", "DetailType": "Model Rejected", "EventBusName": "shipyard-bus",
                        "Detail": '{"model": "iris", "version": 2}', "Resources": [arn]}
    assert "Resources" not in without and without["EventBusName"] == "shipyard-bus"


@pytest.mark.parametrize("code, error", [("ThrottlingException", "TransientError"),
                                         ("InternalFailure", "TransientError"),
                                         ("AccessDeniedException", "RuntimeError")])
def test_a_refused_pipeline_event_is_transient_only_when_a_retry_may_help(code, error):
    from functions.pipeline import steps

    events = RecordingEvents({"FailedEntryCount": 1, "Entries": [{"ErrorCode": code, "ErrorMessage": "no"}]})
    with pytest.raises(Exception) as info:
        steps.put_event(events, steps.PIPELINE_FAILED, {"model": "iris"})
    assert type(info.value).__name__ == error
    assert str(info.value) == f"Pipeline Failed event not delivered: {code} no"


def test_the_run_claim_and_the_dataset_index_share_one_reference(moto_registry):
    from functions.core.registry import dataset_ref
    from functions.pipeline import steps

    event = {"model": "iris", "spec": STEP_SPEC, "dataset": STEP_DATASET}
    out = steps.allocate(event, moto_registry, execution_arn="arn:1")
    assert out["dataset_ref"] == dataset_ref("data", "datasets/iris/a.csv", "v1")
    (rec,) = moto_registry.versions_from_dataset("data", "datasets/iris/a.csv", "v1")
    assert rec["version"] == out["version"]
    claim = moto_registry.claim_run("iris", out["dataset_ref"], execution_arn="arn:2", dataset=STEP_DATASET)
    assert claim["claimed"] is False and claim["execution_arn"] == "arn:1" and claim["version"] == out["version"]


# ---------------------------------------------------------------------------- bounded failures


class LambdaContext:
    function_name, memory_limit_in_mb, function_version = "Train", 3008, "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:Train"
    aws_request_id, log_group_name = "req-1", "/aws/lambda/Train"


@pytest.fixture
def function_log(capsys, monkeypatch):
    """What the step's logger writes (its handler keeps the stdout of whenever it was made)."""
    import sys

    from functions.pipeline.runtime import logger

    class Stdout:  # sys.stdout as it is when written to: capsys's during the test
        def write(self, text):
            return sys.stdout.write(text)

        def flush(self):
            sys.stdout.flush()

    for handler in logger._logger.handlers:
        monkeypatch.setattr(handler, "stream", Stdout())
    return lambda: capsys.readouterr().out


def _handler(fn):
    from functions.pipeline.runtime import step

    return step(lambda event, context: fn())


def _raises(fn) -> BaseException:
    with pytest.raises(BaseException) as info:
        _handler(fn)({"model": "iris"}, LambdaContext())
    return info.value


def test_a_huge_error_message_is_cut_in_the_step_keeping_its_type_and_logging_the_full_text(function_log):
    from functions.core.dataset import DatasetError
    from functions.pipeline.errors import MAX_MESSAGE_CHARS

    tree = "node " * 130_000  # like a converter that prints a whole tree (650 KB)

    def convert():
        raise DatasetError(f"cannot convert: {tree}")

    err = _raises(convert)
    assert type(err) is DatasetError  # the same error: Retry/Catch match its name; DatasetError is not retried
    message = str(err)
    assert len(message) <= MAX_MESSAGE_CHARS and message.startswith("cannot convert: node node")
    assert "[cut: 650,016 characters in all; the full text is in the function's log (/aws/lambda/Train, " \
           "request req-1)]" in message
    assert tree in function_log()  # the function's log has all of it


def test_an_error_whose_str_is_not_its_message_is_cut_under_the_same_name():
    from functions.pipeline.errors import MAX_MESSAGE_CHARS

    class ConvertError(Exception):
        def __str__(self):
            return "x" * 5000

    err = _raises(lambda: (_ for _ in ()).throw(ConvertError()))
    assert type(err).__name__ == "ConvertError" and len(str(err)) <= MAX_MESSAGE_CHARS and "[cut: 5,000" in str(err)
    assert type(_raises(lambda: {}["k" * 3000])).__name__ == "KeyError"


def test_a_throttle_with_a_long_message_stays_a_transient_error():
    from botocore.exceptions import ClientError

    def throttled():
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow " * 1000},
                           "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")

    err = _raises(throttled)
    assert type(err).__name__ == "TransientError" and len(str(err)) <= 1000
    assert str(err).startswith("ClientError: An error occurred (SlowDown)")


def test_short_errors_and_results_pass_unchanged():
    from functions.core.dataset import DatasetError

    err = _raises(lambda: (_ for _ in ()).throw(DatasetError("dataset is empty")))
    assert str(err) == "dataset is empty"
    assert _handler(lambda: {"version": 3})({"model": "iris"}, LambdaContext()) == {"version": 3}


def test_a_result_too_large_to_pass_between_states_is_a_bounded_error(function_log):
    from functions.pipeline.errors import MAX_MESSAGE_CHARS, MAX_RESULT_BYTES

    result = {"trees": ["leaf"] * 100_000}
    err = _raises(lambda: result)
    assert type(err).__name__ == "StepResultTooLarge" and len(str(err)) <= MAX_MESSAGE_CHARS
    assert str(err).startswith(f"the step's result is 800,011 bytes, more than the {MAX_RESULT_BYTES:,} a step may")
    lines = [json.loads(line) for line in function_log().splitlines() if "bytes in full, part" in line]
    assert len(lines) == 21 and all(len(json.dumps(line)) < 256 * 1024 for line in lines)  # CloudWatch's event limit
    assert "".join(line["full_text"] for line in lines) == json.dumps(result)  # the whole result is in the log


def test_failure_reason_is_bounded_whatever_the_cause():
    from functions.pipeline import steps

    cause = json.dumps({"errorType": "Boom", "errorMessage": "m" * 700_000})
    reason = steps.failure_reason({"Error": "Boom", "Cause": cause})
    assert reason.startswith("Boom: mmm") and len(reason) <= steps.MAX_REASON_CHARS
    assert "[cut: 700,000 characters in all" in reason
    long_name = steps.failure_reason({"Error": "E" * 5000, "Cause": "x"})
    assert len(long_name) <= steps.MAX_REASON_CHARS


# ---------------------------------------------------------------------------- stale training versions


def test_allocate_marks_failed_the_versions_left_training_past_the_execution_timeout(moto_registry):
    from datetime import UTC, datetime

    from functions.core import registry as registry_mod
    from functions.pipeline import steps

    for hours, arn in ((3, "arn:stuck"), (0.5, "arn:running")):
        v = moto_registry.allocate_version("iris", execution_arn=arn, dataset=STEP_DATASET)["version"]
        then = registry_mod.utc_iso(datetime.fromtimestamp(time.time() - hours * 3600, UTC))
        moto_registry.client.update_item(TableName="registry", Key={"pk": {"S": "MODEL#iris"},
                                                                    "sk": {"S": registry_mod._vsk(v)}},
                                         UpdateExpression="SET created_at = :t",
                                         ExpressionAttributeValues={":t": {"S": then}})
    old_candidate = _candidate(moto_registry, "arn:old-candidate")
    events = FlakyEvents(failures=0)
    event = {"model": "iris", "spec": STEP_SPEC, "dataset": {**STEP_DATASET, "version_id": "v2"}}
    out = steps.allocate(event, moto_registry, execution_arn="arn:new", events=events, execution_timeout=7200)
    stuck, running, candidate, new = moto_registry.list_versions("iris")
    assert out["version"] == new["version"] == 4 and new["status"] == "training"
    assert stuck["status"] == "failed" and stuck["reason"].startswith("StaleTraining: still training 3.0 h after ")
    assert ("past the pipeline's execution timeout of 2.0 h: execution arn:stuck ended without recording"
            in stuck["reason"])
    assert running["status"] == "training" and candidate["status"] == "candidate"  # within the timeout; not training
    (sent,) = events.sent
    detail = json.loads(sent["Detail"])
    assert sent["DetailType"] == "Pipeline Failed" and detail["version"] == 1 and detail["reason"] == stuck["reason"]
    assert detail["execution_arn"] == "arn:stuck" and detail["status"] == "failed"
    # a second sweep finds nothing: the write was conditional on `training`
    assert steps.sweep_stale(moto_registry, events, "iris", execution_timeout=7200, execution_arn="arn:x") == []
    assert old_candidate == 3


def test_train_holds_a_dataset_to_its_models_own_limit(moto_registry):
    """The execution input carries the model's limit (its compute.memory); the Train function's
    own limit still caps it, and the refusal comes before the object is read."""
    import boto3

    from functions.core.dataset import DatasetError
    from functions.pipeline import steps
    from tests.pipeline import data

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="data-bucket")
    s3.put_bucket_versioning(Bucket="data-bucket", VersioningConfiguration={"Status": "Enabled"})
    body = data.animals()
    vid = s3.put_object(Bucket="data-bucket", Key="datasets/iris/a.csv", Body=body)["VersionId"]
    v = moto_registry.allocate_version("iris", execution_arn="arn:x", dataset=STEP_DATASET)["version"]
    event = {"model": "iris", "version": v,
             "dataset": {"bucket": "data-bucket", "key": "datasets/iris/a.csv", "version_id": vid},
             "spec": {"target": "species", "task": "classification", "max_dataset_bytes": len(body) - 1}}
    too_large = f"dataset is too large: {len(body):,} bytes .* the limit is {len(body) - 1:,}"
    with pytest.raises(DatasetError, match=too_large):
        steps.train(event, moto_registry, s3, artifact_bucket="a", max_bytes=10 * len(body))
    event["spec"]["max_dataset_bytes"] = 100 * len(body)  # the function's own limit is the smaller
    with pytest.raises(DatasetError, match=f"the limit is {2 * len(body) // 3:,}"):
        steps.train(event, moto_registry, s3, artifact_bucket="a", max_bytes=2 * len(body) // 3)
