"""The release loop's decisions (functions/release/loop.py) and the approval reasons (functions/pipeline/steps.py),
on stand-in clients: what CheckRelease answers after each wait, and what the alarms are."""
from __future__ import annotations

import pytest

from functions.pipeline import steps
from functions.release import loop

SPEC = {"target": "y", "release": {"mode": "canary", "percent": 10, "bake": 180, "max_errors": 0,
                                   "max_latency_ms": 500, "approval_timeout": 86400}}
DATASET = {"bucket": "b", "key": "datasets/m/d.csv"}


class FakeRegistry:
    def __init__(self, release=None, production=1):
        self.release, self.production, self.rejected, self.log = release, production, [], []

    def get_release(self, model):
        return self.release

    def get_alias(self, model, alias="production"):
        return self.production

    def last_event(self, model, alias="production"):
        return {"to_version": self.production, "actor": "arn:aws:iam::1:user/bob", "kind": "rollback",
                "reason": "by hand"}

    def record_rejection(self, model, version, reason):
        self.rejected.append((version, reason))

    def log_release_event(self, model, kind, **kw):
        self.log.append((kind, kw))


class FakeCloudWatch:
    def __init__(self, states=None):
        self.states, self.put, self.deleted = states or {}, [], []

    def describe_alarms(self, AlarmNames):
        return {"MetricAlarms": [{"AlarmName": n, "StateValue": self.states.get(n, "OK"),
                                  "StateReason": "Threshold Crossed: 1 datapoint [3.0] was greater than 0.0"}
                                 for n in AlarmNames]}

    def put_metric_alarm(self, **kw):
        self.put.append(kw)

    def delete_alarms(self, AlarmNames):
        self.deleted.append(AlarmNames)


def _clients(registry, cw=None):
    return loop.Clients(registry=registry, events=None, cloudwatch=cw or FakeCloudWatch(), alarm_prefix="S-",
                        topic_arn="arn:aws:sns:us-east-1:1:alarms")


def _state(**kw):
    state = {"id": "r1", "mode": "canary", "version": 2, "production_version": 1, "bake": 180, "waited": 0,
             "wait": 60, "next": "bake", "alarms": ["S-m-v2-errors", "S-m-v2-latency"]}
    return {**state, **kw}


def _event(state, spec=SPEC):
    return {"model": "m", "spec": spec, "dataset": DATASET, "release": state}


def test_the_bake_is_counted_by_the_waits_done_then_a_canary_promotes():
    reg = FakeRegistry(release={"id": "r1", "version": 2, "mode": "canary", "percent": 10})
    state = _state()
    seen = []
    for _ in range(3):
        state = loop.check(_event(state), _clients(reg), execution_arn="arn:x")
        seen.append((state["next"], state["waited"], state["wait"]))
    assert seen == [("bake", 60, 60), ("bake", 120, 60), ("promote", 180, 60)]
    assert "canary baked 180 s at 10% of the traffic with no alarm" == state["reason"]


def test_a_short_last_wait_and_a_long_bake_checked_less_often():
    reg = FakeRegistry(release={"id": "r1", "version": 2, "mode": "canary"})
    state = loop.check(_event(_state(bake=90)), _clients(reg), execution_arn="arn:x")
    assert (state["next"], state["wait"]) == ("bake", 30)
    assert loop.check_interval(1800) == 60 and loop.check_interval(1000 * 60) == 60
    assert loop.check_interval(7 * 86400) == 660  # 7 days: at most ~1,000 checks


def test_an_alarm_in_alarm_rolls_back_naming_it():
    reg = FakeRegistry(release={"id": "r1", "version": 2, "mode": "canary"})
    cw = FakeCloudWatch({"S-m-v2-errors": "ALARM"})
    state = loop.check(_event(_state()), _clients(reg, cw), execution_arn="arn:x")
    assert state["next"] == "rollback" and state["alarm"] == "S-m-v2-errors"
    assert state["reason"].startswith("alarm S-m-v2-errors fired: Threshold Crossed")


@pytest.mark.parametrize("release", [None, {"id": "other", "version": 3, "mode": "canary"}])
def test_a_release_gone_or_replaced_is_superseded_and_its_version_rejected(release):
    reg = FakeRegistry(release=release, production=1 if release else 5)
    cw = FakeCloudWatch()
    state = loop.check(_event(_state()), _clients(reg, cw), execution_arn="arn:x")
    assert state["next"] == "superseded"
    if release:
        assert state["reason"] == "superseded by release other (canary of v3)"
    else:
        assert state["reason"] == ("superseded: production moved to v5 by arn:aws:iam::1:user/bob "
                                   "(rollback: by hand)")
    assert reg.rejected == [(2, state["reason"])]
    assert reg.log[0][0] == "release_superseded"
    assert cw.deleted == [["S-m-v2-errors", "S-m-v2-latency"]]


@pytest.mark.parametrize("numbers, rule, expected", [
    ({"samples": 120, "agreement": 0.97}, 0.95, ("promote", "shadow agreement 0.9700 >= 0.95 over 120 predictions")),
    ({"samples": 120, "agreement": 0.90}, 0.95, ("rollback", "shadow agreement 0.9000 < 0.95 over 120 predictions")),
    ({"samples": 3, "agreement": 1.0}, 0.95, ("rollback", "shadow agreement not measured: 3 predictions shadowed, "
                                                          "fewer than min_samples 100")),
    ({"samples": 120, "agreement": None}, 0.95, ("rollback", "shadow agreement n/a < 0.95 over 120 predictions")),
    ({"samples": 120, "agreement": 0.5}, None, ("decide", "shadow baked: 120 predictions shadowed, agreement 0.5000; "
                                                          "no agreement rule, people decide")),
])
def test_the_end_of_a_shadow_bake(numbers, rule, expected):
    out = loop.shadow_decision({"agreement": rule, "min_samples": 100}, numbers)
    assert (out["next"], out["reason"]) == expected


def test_the_alarms_as_the_design_says():
    cw = FakeCloudWatch()
    loop.put_alarms(_clients(FakeRegistry(), cw), "m", 2, "canary", SPEC["release"], loop.alarm_names("S-", "m", 2))
    errors, latency = cw.put
    dims = [{"Name": "Model", "Value": "m"}, {"Name": "Version", "Value": "2"}]
    assert errors["MetricName"] == "VersionErrors" and errors["Statistic"] == "Sum" and errors["Threshold"] == 0.0
    assert (errors["Period"], errors["EvaluationPeriods"], errors["DatapointsToAlarm"]) == (60, 1, 1)
    assert latency["MetricName"] == "VersionLatency" and latency["ExtendedStatistic"] == "p99"
    assert latency["Threshold"] == 500.0 and (latency["EvaluationPeriods"], latency["DatapointsToAlarm"]) == (3, 3)
    for a in (errors, latency):
        assert a["Dimensions"] == dims and a["Namespace"] == "Shipyard" and a["TreatMissingData"] == "notBreaching"
        assert a["AlarmActions"] == ["arn:aws:sns:us-east-1:1:alarms"] and a["ComparisonOperator"] == \
            "GreaterThanThreshold"
    cw = FakeCloudWatch()
    loop.put_alarms(_clients(FakeRegistry(), cw), "m", 2, "shadow", SPEC["release"], ["a", "b"])
    assert [a["MetricName"] for a in cw.put] == ["ShadowErrors", "ShadowLatency"]


def test_the_release_id_is_stable_per_execution_and_version():
    assert loop.release_id("arn:e1", 2) == loop.release_id("arn:e1", 2) != loop.release_id("arn:e1", 3)
    assert loop.release_id("arn:e2", 2) != loop.release_id("arn:e1", 2)
    assert loop.alarm_names("Shipyard-", "churn", 7) == ["Shipyard-churn-v7-errors", "Shipyard-churn-v7-latency"]


def test_decision_reasons():
    timeout = {"spec": {"release": {"approval_timeout": 86400}}, "approval_error": {"Error": "States.Timeout"}}
    assert steps.decision_reason(timeout) == "ApprovalTimedOut: no decision within 1 day"
    assert steps.decision_reason({"spec": {"release": {"approval_timeout": 7200}},
                                  "approval_error": {"Error": "States.Timeout"}}) == \
        "ApprovalTimedOut: no decision within 2 h"
    reject = {"decision": {"decision": "reject", "actor": "arn:alice", "reason": "labels are late"}}
    assert steps.decision_reason(reject) == "rejected by arn:alice: labels are late"
    assert steps.decision_reason({"decision": {"decision": "approve", "actor": "a"}}) is None
    assert steps.approved_by({"decision": {"decision": "approve", "actor": "arn:alice"}}) == "; approved by arn:alice"
    assert steps.approved_by({}) == ""


def test_the_approval_message_says_what_to_decide_and_how():
    text = steps.approval_message("churn", 7, {"metric": "accuracy", "candidate_score": 0.93, "production_version": 6,
                                               "production_score": 0.91, "gate": "passed", "stage": "approval"},
                                  "2026-01-02T00:00:00Z", "arn:exec")
    assert "Gate: accuracy 0.9300 (candidate v7) vs 0.9100 (production v6)" in text
    assert "Decide by 2026-01-02T00:00:00Z" in text
    assert "shipyard approve churn 7" in text and 'shipyard reject churn 7 --reason "…"' in text
    shadow = steps.approval_message("churn", 7, {"metric": "accuracy", "stage": "shadow",
                                                 "shadow": {"samples": 500, "agreement": 0.97, "errors": 0}},
                                    "2026-01-02T00:00:00Z", "arn:exec")
    assert "Shadow: 500 predictions shadowed, agreement with production 0.9700, 0 errors" in shadow
