"""``steps.execution_ended``: what a pipeline execution that ended ABORTED, TIMED_OUT or FAILED without
its Catch (StopExecution, the execution timeout, a local cloud restarted) left open is closed by the
EventBridge rule's Record action (docs/release.md "If the run's execution ends early")."""
import json

import pytest

from functions.core.layout import PIPELINE_FAILED
from functions.core.registry import ApprovalError
from functions.pipeline import steps
from tests.support import moto_registry

DATASET = {"bucket": "data", "key": "datasets/iris/a.csv", "version_id": "v1", "sha256": "ab" * 32}
RUN = "arn:aws:states:us-east-1:123456789012:execution:Pipeline:run-2"
STOPPED_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class Events:
    """An EventBridge client that keeps what it was sent."""

    def __init__(self):
        self.sent = []

    def put_events(self, Entries):  # noqa: N803 - boto3's name
        self.sent += [{**e, "Detail": json.loads(e["Detail"])} for e in Entries]
        return {"FailedEntryCount": 0, "Entries": [{"EventId": f"e{len(self.sent)}"}]}


@pytest.fixture
def reg():
    with moto_registry() as registry:
        yield registry


def candidate(reg, execution_arn):
    v = reg.allocate_version("iris", execution_arn=execution_arn, dataset=DATASET)["version"]
    reg.record_candidate("iris", v, artifact_key=f"models/iris/v{v}/model.onnx", artifact_sha256="cd" * 32,
                         schema={"features": []}, metrics={"accuracy": 0.9})
    return v


@pytest.fixture
def served(reg):
    """v1 production (an earlier run), v2 a candidate of RUN."""
    v1 = candidate(reg, "arn:aws:states:us-east-1:123456789012:execution:Pipeline:run-1")
    reg.promote("iris", v1, reason="first", actor="test")
    return v1, candidate(reg, RUN)


def ended(status="ABORTED", **extra):
    return {"action": "execution_ended", "execution_arn": RUN, "status": status, "stop_date": str(STOPPED_MS),
            "input": json.dumps({"model": "iris", "spec": {"target": "y"},
                                 "dataset": {"bucket": "data", "key": "datasets/iris/a.csv"}}),
            "error": "", "cause": "", **extra}


def run(reg, event, deleted=None):
    events = Events()
    out = steps.execution_ended(event, reg, events, alarm_prefix="Stack-",
                                delete_alarms=(deleted.append if deleted is not None else None))
    return out, events.sent


def test_aborted_canary_is_failed_its_release_ended_and_alarms_deleted(reg, served):
    v1, v2 = served
    reg.start_release("iris", v2, mode="canary", release_id="r1", expected_production=v1, execution_arn=RUN,
                      percent=50.0, bake=1800, actor=RUN, reason="gate passed")
    deleted = []
    out, sent = run(reg, ended(), deleted)

    assert out["failed"] == [v2]
    rec = reg.get_version("iris", v2)
    assert rec["status"] == "failed"
    assert rec["reason"].startswith("ExecutionAborted: the pipeline execution ended ABORTED at 2026-01-01T00:00:00Z "
                                    "before recording an outcome (stopped by an operator, or the local cloud "
                                    "restarted); its canary release was ended, production v1 untouched")
    assert reg.get_release("iris") is None
    assert reg.get_alias("iris") == v1 and reg.get_version("iris", v1)["status"] == "production"
    assert deleted == [[f"Stack-iris-v{v2}-errors", f"Stack-iris-v{v2}-latency"]]
    assert [e["kind"] for e in reg.release_log("iris")] == ["release_started", "release_orphaned"]
    assert reg.release_log("iris")[-1]["actor"] == RUN
    [event] = sent
    assert event["DetailType"] == PIPELINE_FAILED and event["Resources"] == [RUN]
    assert event["Detail"] == {"model": "iris", "version": v2, "execution_arn": RUN, "reason": rec["reason"],
                               "error": "ExecutionAborted", "status": "failed",
                               "dataset": {"bucket": "data", "key": "datasets/iris/a.csv"}}
    # A second delivery of the same event changes nothing and sends nothing.
    assert run(reg, ended(), deleted)[1] == []
    assert len(deleted) == 1


def test_timed_out_awaiting_approval_closes_the_approval(reg, served):
    _, v2 = served
    reg.request_approval("iris", v2, task_token="tok", execution_arn=RUN, timeout_at=None)
    assert reg.get_version("iris", v2)["status"] == "awaiting_approval"
    out, sent = run(reg, ended("TIMED_OUT"))

    rec = reg.get_version("iris", v2)
    assert rec["status"] == "failed"
    assert rec["reason"].startswith("ExecutionTimedOut: the pipeline execution ended TIMED_OUT at ")
    assert "its approval was closed, production v1 untouched" in rec["reason"]
    assert reg.get_approval("iris", v2)["decision"] == "reject"
    with pytest.raises(ApprovalError, match=f"already decided: reject by {RUN}"):
        reg.decide("iris", v2, "approve", actor="alice")
    assert [e["kind"] for e in reg.release_log("iris")] == ["approval_closed"]
    assert [e["Detail"]["error"] for e in sent] == ["ExecutionTimedOut"]


def test_failed_execution_already_recorded_changes_nothing(reg, served):
    _, v2 = served
    reg.record_failure("iris", v2, "TrainingError: boom")  # MarkFailed ran
    out, sent = run(reg, ended("FAILED", error="PipelineFailed", cause="TrainingError: boom"))
    assert out["failed"] == [] and sent == []
    assert reg.get_version("iris", v2)["reason"] == "TrainingError: boom"


def test_failed_execution_whose_catch_never_ran_is_recorded(reg, served):
    _, v2 = served
    out, sent = run(reg, ended("FAILED", error="States.Runtime", cause="bad path"))
    assert out["failed"] == [v2]
    assert reg.get_version("iris", v2)["reason"].startswith(
        "ExecutionFailed: the pipeline execution ended FAILED at 2026-01-01T00:00:00Z before recording an outcome "
        "(failed: States.Runtime: bad path)")
    assert len(sent) == 1


def test_production_and_other_runs_versions_untouched(reg, served):
    v1, v2 = served
    reg.promote("iris", v2, reason="promoted", actor=RUN)  # this run's version became production
    other = candidate(reg, "arn:aws:states:us-east-1:123456789012:execution:Pipeline:run-3")
    out, sent = run(reg, ended())
    assert out["failed"] == [] and sent == []
    assert reg.get_version("iris", v2)["status"] == "production" and reg.get_alias("iris") == v2
    assert reg.get_version("iris", other)["status"] == "candidate"
    assert reg.get_version("iris", v1)["status"] != "failed"


def test_succeeded_or_modelless_events_do_nothing(reg, served):
    _, v2 = served
    assert run(reg, ended("SUCCEEDED"))[0]["ended"] is False
    assert run(reg, ended(input="{}"))[0]["ended"] is False
    assert reg.get_version("iris", v2)["status"] == "candidate"
