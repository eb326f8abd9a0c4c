"""Progressive release end to end on the local cloud and its clock (docs/release.md, docs/pipeline.md).

A manual approval waits on a task token: approved, rejected, timed out (``cloud.advance`` past the
day). A canary bakes minute by minute (``cloud.advance(60)`` at each Bake wait): promoted after a clean
bake, rolled back when its error alarm fires (its model artifact deleted: serving it fails), ended
"Superseded" by a promotion by hand. A shadow with an agreement rule is promoted on its numbers. A
failure during a release ends the release. Test models: tests/pipeline/conftest.py (approval, canary,
shadowed).
"""
from __future__ import annotations

import json
import time

import pytest

from tests.pipeline import data
from tests.pipeline.conftest import events_of

pytestmark = pytest.mark.slow

ALICE = "arn:aws:iam::123456789012:user/alice"


# ---------------------------------------------------------------------------- helpers


def execution_arn_of(cloud, r, timeout: float = 60) -> str:
    """The execution the upload started (without waiting for it to end)."""
    sfn = cloud.client("stepfunctions")
    deadline = time.time() + timeout
    while time.time() < deadline:
        for e in sfn.list_executions(stateMachineArn=cloud.outputs["PipelineArn"])["executions"]:
            d = sfn.describe_execution(executionArn=e["executionArn"])
            if json.loads(d["input"]).get("dataset", {}).get("version_id") == r.version_id:
                return e["executionArn"]
        time.sleep(0.2)
    raise AssertionError(f"no execution for {r.key}")


def version_of(registry, r, timeout: float = 60) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = registry.versions_from_dataset(r.bucket, r.key, r.version_id)
        if found:
            return int(found[0]["version"])
        time.sleep(0.2)
    raise AssertionError(f"no version for {r.key}")


def ended(cloud, arn: str, timeout: float = 60) -> dict:
    sfn = cloud.client("stepfunctions")
    deadline = time.time() + timeout
    while time.time() < deadline:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            cloud.wait_idle()
            return d
        time.sleep(0.1)
    raise AssertionError(f"{arn} still running after {timeout} s")


def until(what, timeout: float = 60, every: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = what()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def awaiting(registry, model: str, version: int, timeout: float = 60) -> dict:
    """The version's approval item once the run asked for a decision (it holds the task token)."""
    return until(lambda: (a := registry.get_approval(model, version)) and a.get("task_token") and a, timeout)


def decide(cloud, registry, model: str, version: int, decision: str, *, actor: str = ALICE,
           reason: str | None = None) -> None:
    """What ``shipyard approve|reject`` makes the API do (functions/approval): the first decision is
    recorded, then the waiting run gets it with its task token."""
    item = registry.decide(model, version, decision, actor=actor, reason=reason)
    cloud.client("stepfunctions").send_task_success(taskToken=item["task_token"], output=json.dumps(
        {"decision": decision, "actor": actor, "reason": reason, "at": item.get("decided_at")}))


def _history(cloud, arn: str) -> list[dict]:
    return cloud.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]


def in_state(cloud, arn: str) -> str | None:
    """The state the execution is in now (its last StateEntered without an exit), or None."""
    open_state = None
    for e in _history(cloud, arn):
        if e["type"].endswith("StateEntered"):
            open_state = e["stateEnteredEventDetails"]["name"]
        elif e["type"].endswith("StateExited"):
            open_state = None
    return open_state


def _bakes(cloud, arn: str) -> tuple[int, int]:
    """(Bake waits entered, Bake waits ended) so far."""
    events = _history(cloud, arn)
    entered = sum(1 for e in events if e["type"] == "WaitStateEntered")
    exited = sum(1 for e in events if e["type"] == "WaitStateExited")
    return entered, exited


def bake(cloud, arn: str, *, before_each=None, timeout: float = 60) -> dict:
    """Let the release loop run: at every Bake wait, the local clock a minute on; returns the end with
    the number of waits. (A minute moved on just before the wait began to wait is lost: moved again.)"""
    sfn = cloud.client("stepfunctions")
    deadline = time.time() + timeout
    while time.time() < deadline:
        entered, exited = _bakes(cloud, arn)
        if sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
            return {**ended(cloud, arn), "waits": exited}
        if entered > exited:
            if before_each is not None:
                before_each(exited)
            cloud.advance(60)
            ends = time.time() + 2
            while time.time() < ends and _bakes(cloud, arn)[1] == exited:
                time.sleep(0.02)
        else:
            time.sleep(0.02)
    raise AssertionError(f"{arn} still baking after {timeout} s")


def states_of(cloud, arn: str) -> list[str]:
    history = cloud.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]


def kinds(registry, model: str, version: int) -> list[str]:
    return [e["kind"] for e in registry.release_log(model) if e.get("version") == version]


# ---------------------------------------------------------------------------- manual approval


def _topic_queue(cloud) -> str:
    """An SQS queue subscribed (raw) to the alarm topic: what an e-mail subscriber would get."""
    sqs, sns = cloud.client("sqs"), cloud.client("sns")
    url = sqs.create_queue(QueueName="approval-messages")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = cloud.outputs["AlarmTopicArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
         "Resource": arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}]})})
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return url


def test_an_approved_run_is_promoted_and_the_log_names_who_approved(cloud, run, registry):
    queue = _topic_queue(cloud)
    r = run("approval", data.animals(seed=21))
    arn = execution_arn_of(cloud, r)
    version = version_of(registry, r)
    awaiting(registry, "approval", version)
    until(lambda: registry.get_version("approval", version)["status"] == "awaiting_approval", 20)
    (asked,) = until(lambda: [e for e in events_of(cloud, "Model Awaiting Approval")
                              if e["detail"]["version"] == version], 20, 0.2)
    assert asked["detail"]["model"] == "approval" and asked["detail"]["candidate_score"] > 0.6
    assert asked["detail"]["approve"] == f"shipyard approve approval {version}"
    # the message to the alarm topic (an e-mail with alarm_email) says what to decide, with the gate's scores
    sqs = cloud.client("sqs")
    (message,) = until(lambda: [m["Body"] for m in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)
                                .get("Messages", []) if f"Model approval version {version} " in m["Body"]], 20, 0.2)
    for words in (f"shipyard approve approval {version}", f"shipyard reject approval {version} --reason",
                  f"Gate: accuracy {asked['detail']['candidate_score']:.4f} (candidate v{version})", "Decide by "):
        assert words in message, (words, message)

    decide(cloud, registry, "approval", version, "approve", reason="looks good")
    assert ended(cloud, arn)["status"] == "SUCCEEDED"
    assert registry.get_version("approval", version)["status"] == "production"
    assert registry.get_alias("approval") == version
    audit = registry.last_event("approval")
    assert audit["to_version"] == version and f"approved by {ALICE}: looks good" in audit["reason"]
    log = [e for e in registry.release_log("approval") if e.get("version") == version]
    assert [e["kind"] for e in log] == ["approval_requested", "approved"]
    assert log[1]["actor"] == ALICE
    assert "Approved" in states_of(cloud, arn) and "Promoted" in states_of(cloud, arn)


def test_a_rejected_run_is_rejected_with_the_reason_and_production_untouched(cloud, run, registry):
    production = registry.get_alias("approval")
    r = run("approval", data.animals(seed=22))
    arn = execution_arn_of(cloud, r)
    version = version_of(registry, r)
    awaiting(registry, "approval", version)
    decide(cloud, registry, "approval", version, "reject", reason="wait for the new labels")
    assert ended(cloud, arn)["status"] == "SUCCEEDED"
    rec = registry.get_version("approval", version)
    assert rec["status"] == "rejected"
    assert rec["reason"] == f"rejected by {ALICE}: wait for the new labels"
    assert registry.get_alias("approval") == production
    assert kinds(registry, "approval", version) == ["approval_requested", "rejected"]
    (rejected,) = [e for e in events_of(cloud, "Model Rejected") if e["detail"]["version"] == version]
    assert rejected["detail"]["reason"] == rec["reason"]


def test_no_decision_within_the_timeout_rejects_the_run(cloud, run, registry):
    production = registry.get_alias("approval")
    r = run("approval", data.animals(seed=23))
    arn = execution_arn_of(cloud, r)
    version = version_of(registry, r)
    awaiting(registry, "approval", version)
    until(lambda: in_state(cloud, arn) == "AwaitApproval")
    cloud.advance(3600 + 1)  # the approval_timeout of the test model: 1 h
    assert ended(cloud, arn)["status"] == "SUCCEEDED"
    rec = registry.get_version("approval", version)
    assert rec["status"] == "rejected" and rec["reason"] == "ApprovalTimedOut: no decision within 1 h"
    assert registry.get_alias("approval") == production
    assert kinds(registry, "approval", version)[-1] == "approval_timed_out"
    # a late decision is refused, naming the timeout
    from functions.core.registry import ApprovalError

    with pytest.raises(ApprovalError, match="already decided: reject"):
        registry.decide("approval", version, "approve", actor=ALICE)


# ---------------------------------------------------------------------------- canary


def ensure_production(cloud, run, registry, model: str, seed: int) -> int:
    """A first version: no production to share traffic with, so it is promoted at once."""
    if registry.get_alias(model) is None:
        r = run(model, data.animals(seed=seed))
        end = ended(cloud, execution_arn_of(cloud, r))
        assert end["status"] == "SUCCEEDED", end
        assert "StartRelease" not in states_of(cloud, end["executionArn"])
    return registry.get_alias(model)


def _release_run(cloud, run, registry, model: str, seed: int):
    ensure_production(cloud, run, registry, model, seed + 1000)
    r = run(model, data.animals(seed=seed))
    arn = execution_arn_of(cloud, r)
    version = version_of(registry, r)
    until(lambda: registry.get_version(model, version)["status"] in ("canary", "shadow", "rejected", "failed"))
    return r, arn, version


def _canary_run(cloud, run, registry, seed: int):
    return _release_run(cloud, run, registry, "canary", seed)


def test_a_canary_is_promoted_after_a_clean_bake(cloud, run, registry):
    r, arn, version = _canary_run(cloud, run, registry, seed=31)
    release = registry.get_release("canary")
    assert release["version"] == version and release["mode"] == "canary" and release["percent"] == 50
    started = time.time()
    end = bake(cloud, arn)
    assert end["status"] == "SUCCEEDED", end
    assert end["waits"] == 30  # 30 minutes of bake, one check a minute
    assert time.time() - started < 30
    assert registry.get_version("canary", version)["status"] == "production"
    assert registry.get_release("canary") is None
    assert [e for e in events_of(cloud, "Release Started") if e["detail"]["version"] == version]
    (promoted,) = [e for e in events_of(cloud, "Model Promoted") if e["detail"]["version"] == version]
    assert promoted["detail"]["mode"] == "canary"
    assert kinds(registry, "canary", version) == ["release_started", "release_promoted"]
    assert states_of(cloud, arn)[-2:] == ["ReleaseOutcome?", "Released"]
    # its alarms are gone
    cw = cloud.client("cloudwatch")
    assert not cw.describe_alarms(AlarmNamePrefix=f"Shipyard-canary-v{version}-")["MetricAlarms"]


def _predict(cloud, _model: str, key: str, model: str | None = None):
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = cloud.outputs["ApiUrl"] + f"models/{model or _model}/predict"
    body = json.dumps({"instances": [{"x1": 0.5, "x2": 1.0, "colour": "red"}]})
    headers = {"Content-Type": "application/json", "X-Routing-Key": key}
    req = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(req)
    return requests.post(url, data=body, headers=dict(req.headers), timeout=120)


def test_a_canary_is_rolled_back_when_its_error_alarm_fires(cloud, run, registry):
    r, arn, version = _canary_run(cloud, run, registry, seed=33)
    production = registry.get_alias("canary")
    # The failing candidate: its model.onnx object version is gone, so serving it fails (503).
    rec = registry.get_version("canary", version)
    cloud.client("s3").delete_object(Bucket=cloud.outputs["ArtifactBucketName"], Key=rec["artifact_key"],
                                     VersionId=rec["artifact_version_id"])
    _refresh_serving(cloud, "canary")  # the warm function may hold the model item of an earlier test (60 s)
    answers = [_predict(cloud, "canary", f"caller-{i}") for i in range(12)]
    assert any(a.status_code == 503 for a in answers), [a.status_code for a in answers]
    assert any(a.status_code == 200 for a in answers)  # production still answers its share
    cloud.wait_idle()
    errors_alarm = f"Shipyard-canary-v{version}-errors"

    def fired():
        cloud.evaluate_alarms()
        return cloud.client("cloudwatch").describe_alarms(AlarmNames=[errors_alarm])["MetricAlarms"][0][
            "StateValue"] == "ALARM"

    until(fired, 20, 0.5)
    end = bake(cloud, arn)
    assert end["status"] == "SUCCEEDED" and end["waits"] == 1, end
    rec = registry.get_version("canary", version)
    assert rec["status"] == "rejected"
    assert rec["reason"].startswith(f"alarm Shipyard-canary-v{version}-errors fired: ")
    assert registry.get_alias("canary") == production and registry.get_release("canary") is None
    (rolled,) = [e for e in events_of(cloud, "Release Rolled Back") if e["detail"]["version"] == version]
    assert rolled["detail"]["alarm"] == f"Shipyard-canary-v{version}-errors"
    assert rolled["detail"]["production_version"] == production and rolled["detail"]["reason"] == rec["reason"]
    assert states_of(cloud, arn)[-3:] == ["RollBack", "ReleaseOutcome?", "RolledBack"]
    assert kinds(registry, "canary", version) == ["release_started", "release_rolled_back"]


def test_a_canary_superseded_by_a_promotion_by_hand_ends_and_never_promotes(cloud, run, registry):
    r, arn, version = _canary_run(cloud, run, registry, seed=35)
    production = registry.get_alias("canary")
    path = registry.rollback_path("canary")

    moved = []

    def by_hand(waits):
        if waits == 3 and not moved:  # three minutes into the bake, someone moves production by hand
            moved.append(True)
            if path:
                registry.rollback("canary", reason="by hand", actor=ALICE)
            else:
                registry.promote("canary", version, reason="by hand", actor=ALICE)

    end = bake(cloud, arn, before_each=by_hand)
    assert end["status"] == "SUCCEEDED" and end["waits"] == 4, end
    assert states_of(cloud, arn)[-1] == "Superseded"
    target = path[0] if path else version
    rec = registry.get_version("canary", version)
    if path:
        assert rec["status"] == "rejected" and "superseded: production moved to" in rec["reason"]
        assert f"v{target} by {ALICE} (rollback: by hand)" in rec["reason"]
    assert registry.last_event("canary")["actor"] == ALICE  # the loop never promoted
    assert production != target
    assert registry.get_alias("canary") == target
    assert kinds(registry, "canary", version)[-1] == "release_superseded"


# ---------------------------------------------------------------------------- shadow


def test_a_shadow_with_an_agreement_rule_is_promoted_on_its_numbers(cloud, run, registry):
    production = ensure_production(cloud, run, registry, "shadowed", seed=41)
    r, arn, version = _release_run(cloud, run, registry, "shadowed", seed=42)
    assert registry.get_release("shadowed")["mode"] == "shadow"
    # production's traffic, scored by the shadow too (callers see production's answers only)
    answers = [_predict(cloud, "shadowed", f"caller-{i}", model="shadowed") for i in range(8)]
    assert all(a.status_code == 200 and a.json().get("version") in (production, None) for a in answers), \
        [(a.status_code, a.text[:200]) for a in answers]
    cloud.wait_idle()
    end = bake(cloud, arn)
    assert end["status"] == "SUCCEEDED" and end["waits"] == 5, end
    rec = registry.get_version("shadowed", version)
    assert rec["status"] == "production", rec.get("reason")
    audit = registry.last_event("shadowed")
    # the shadow scores off the request path: most of the 8, at least min_samples (5)
    assert audit["to_version"] == version and "shadow agreement 1.0000 >= 0.8 over " in audit["reason"], \
        audit["reason"]
    assert kinds(registry, "shadowed", version) == ["release_started", "release_promoted"]


def test_a_failure_during_a_release_ends_it_and_removes_its_alarms(cloud, run, registry):
    """CheckRelease refused by CloudWatch (not a transient error): the Catch's MarkFailed (the Record
    function) marks the version failed, ends its release and deletes its two alarms."""
    r, arn, version = _canary_run(cloud, run, registry, seed=51)
    assert registry.get_release("canary")["version"] == version
    cw = cloud.client("cloudwatch")
    prefix = f"Shipyard-canary-v{version}-"
    # StartRelease marks the version canary, then creates the alarms: wait for both
    until(lambda: len(cw.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]) == 2, 20)
    cloud.faults.refuse("GraniteServiceVersion20100801.DescribeAlarms", 1)
    end = bake(cloud, arn)
    assert end["status"] == "FAILED", end
    assert "MarkFailed" in states_of(cloud, arn)
    record = registry.get_version("canary", version)
    assert record["status"] == "failed" and "DescribeAlarms" in record["reason"]
    assert registry.get_release("canary") is None
    assert kinds(registry, "canary", version)[-1] == "release_failed"
    assert not cw.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]


# ---------------------------------------------------------------------------- an execution that ends early


def _refresh_serving(cloud, model: str) -> None:
    """``GET /models/<model>``: the inference function reads the registry again (its cached alias and release)."""
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = cloud.outputs["ApiUrl"] + f"models/{model}"
    req = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(req)
    assert requests.get(url, headers=dict(req.headers), timeout=120).status_code == 200


def test_a_stopped_canary_run_ends_its_release_and_fails_the_version(cloud, run, registry):
    """``aws stepfunctions stop-execution`` while the canary bakes: the execution ends ABORTED without its
    Catch; Step Functions' status change event reaches Record (the ExecutionEnded rule), which fails the
    version, ends the release, deletes its alarms and sends `Pipeline Failed`. Production is untouched."""
    r, arn, version = _canary_run(cloud, run, registry, seed=61)
    production = registry.get_alias("canary")
    assert registry.get_release("canary")["version"] == version
    until(lambda: in_state(cloud, arn) == "Bake")
    prefix = f"Shipyard-canary-v{version}-"
    cw = cloud.client("cloudwatch")
    assert len(cw.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]) == 2
    cloud.client("stepfunctions").stop_execution(executionArn=arn)
    assert ended(cloud, arn, 10)["status"] == "ABORTED"
    started = time.time()
    rec = until(lambda: (v := registry.get_version("canary", version))["status"] == "failed" and v, 10)
    assert time.time() - started < 10
    assert rec["reason"].startswith("ExecutionAborted: the pipeline execution ended ABORTED at "), rec["reason"]
    assert f"its canary release was ended, production v{production} untouched" in rec["reason"]
    until(lambda: registry.get_release("canary") is None, 10)
    assert registry.get_alias("canary") == production
    assert kinds(registry, "canary", version)[-1] == "release_orphaned"
    until(lambda: not cw.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"], 10)
    cloud.wait_idle()
    (failed,) = [e for e in events_of(cloud, "Pipeline Failed") if e["detail"]["version"] == version]
    assert failed["detail"]["error"] == "ExecutionAborted" and failed["detail"]["execution_arn"] == arn
    # every caller is answered by production now
    _refresh_serving(cloud, "canary")
    answers = [_predict(cloud, "canary", f"caller-{i}") for i in range(8)]
    assert all(a.status_code == 200 and a.json().get("version") == production for a in answers), \
        [(a.status_code, a.text[:200]) for a in answers]


def test_a_stopped_run_awaiting_approval_is_failed_and_cannot_be_decided(cloud, run, registry):
    from functions.core.registry import ApprovalError

    production = registry.get_alias("approval")
    r = run("approval", data.animals(seed=62))
    arn = execution_arn_of(cloud, r)
    version = version_of(registry, r)
    awaiting(registry, "approval", version)
    until(lambda: in_state(cloud, arn) == "AwaitApproval")
    cloud.client("stepfunctions").stop_execution(executionArn=arn)
    assert ended(cloud, arn, 10)["status"] == "ABORTED"
    rec = until(lambda: (v := registry.get_version("approval", version))["status"] == "failed" and v, 10)
    assert rec["reason"].startswith("ExecutionAborted: ") and "its approval was closed" in rec["reason"]
    assert registry.get_alias("approval") == production
    with pytest.raises(ApprovalError, match=f"already decided: reject by {arn}"):
        decide(cloud, registry, "approval", version, "approve")
    assert kinds(registry, "approval", version) == ["approval_requested", "approval_closed"]
