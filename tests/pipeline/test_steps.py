"""Pipeline step handlers on moto, without the local cloud: what Promote and MarkFailed do when
the alias has moved, event delivery retries, run claims. (A separate module from the local-cloud
tests: moto's mock resets process-wide state.)"""
from __future__ import annotations

import json

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
    steps.put_event(events, steps.REJECTED, {"model": "iris", "version": 2}, arn)
    steps.put_event(events, steps.FAILED, {"model": "iris", "version": None}, "manual")
    with_arn, without = events.entries
    assert with_arn == {"Source": "shipyard", "DetailType": "Model Rejected", "EventBusName": "shipyard-bus",
                        "Detail": '{"model": "iris", "version": 2}', "Resources": [arn]}
    assert "Resources" not in without and without["EventBusName"] == "shipyard-bus"


@pytest.mark.parametrize("code, error", [("ThrottlingException", "TransientError"), ("InternalFailure", "TransientError"),
                                         ("AccessDeniedException", "RuntimeError")])
def test_a_refused_pipeline_event_is_transient_only_when_a_retry_may_help(code, error):
    from functions.pipeline import steps

    events = RecordingEvents({"FailedEntryCount": 1, "Entries": [{"ErrorCode": code, "ErrorMessage": "no"}]})
    with pytest.raises(Exception) as info:
        steps.put_event(events, steps.FAILED, {"model": "iris"})
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
