"""The states after the gate and the Release function (infra/pipeline.py, infra/release.py) as synthesized."""
from __future__ import annotations

import json


def _definition(synth) -> dict:
    """The pipeline's definition, every ``Fn::GetAtt`` (a function's ARN) written ``ARN``."""
    (sm,) = [v for k, v in synth.resources("AWS::StepFunctions::StateMachine").items() if k.startswith("Pipeline")]
    body = sm["Properties"]["DefinitionString"]
    if isinstance(body, str):
        return json.loads(body)
    return json.loads("".join(p if isinstance(p, str) else "ARN" for p in body["Fn::Join"][1]))


def _role_statements(synth, role_prefix: str) -> list[dict]:
    out = []
    for res in synth.resources("AWS::IAM::Policy").values():
        roles = json.dumps(res["Properties"].get("Roles"))
        if role_prefix in roles:
            out += res["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_the_states_after_the_gate(synth):
    states = _definition(synth)["States"]
    for name in ("NeedsApproval?", "AwaitApproval", "Decision?", "Approved", "ReleaseMode?", "StartRelease", "Bake",
                 "CheckRelease", "Next?", "FinishRelease", "RollBack", "AwaitShadowDecision", "ShadowDecision?",
                 "ReleaseOutcome?", "Released", "RolledBack", "Superseded", "Promote", "Reject"):
        assert name in states, name
    assert states["Gate"]["Choices"][0]["Next"] == "NeedsApproval?"
    ask = states["AwaitApproval"]
    assert ask["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
    assert ask["TimeoutSecondsPath"] == "$.spec.release.approval_timeout" and ask["ResultPath"] == "$.decision"
    assert ask["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    assert ask["Parameters"]["Payload"]["action"] == "await_approval"
    catches = {tuple(c["ErrorEquals"]): c["Next"] for c in ask["Catch"]}
    assert catches[("States.Timeout",)] == "Reject" and catches[("States.ALL",)] == "MarkFailed"
    assert states["AwaitShadowDecision"]["Resource"] == ask["Resource"]
    assert {tuple(c["ErrorEquals"]): c["Next"] for c in states["AwaitShadowDecision"]["Catch"]}[
        ("States.Timeout",)] == "RollBack"
    assert states["Bake"]["SecondsPath"] == "$.release.wait"
    nexts = {c["StringEquals"]: c["Next"] for c in states["Next?"]["Choices"]}
    assert nexts == {"bake": "Bake", "promote": "FinishRelease", "rollback": "RollBack",
                     "decide": "AwaitShadowDecision", "superseded": "Superseded"}
    for name in ("StartRelease", "CheckRelease", "FinishRelease", "RollBack", "Approved", "AwaitApproval"):
        state = states[name]
        assert state["Retry"][0]["ErrorEquals"][-1] == "TransientError", name
        assert [c["Next"] for c in state["Catch"]][-2:] == ["MarkFailed", "MarkFailed"], name


def test_the_release_function_may_touch_only_the_stacks_alarms(synth):
    statements = _role_statements(synth, "PipelineReleaseReleaseRole")
    alarm = [s for s in statements if any(a.startswith("cloudwatch:") for a in json.dumps(s["Action"]).split('"'))]
    assert len(alarm) == 1
    (s,) = alarm
    assert sorted(s["Action"]) == ["cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm"]
    resource = json.dumps(s["Resource"])
    assert resource.endswith(':alarm:Shipyard-*"]]}') and '"*"' not in resource
    assert not any("sns:Publish" in json.dumps(s["Action"]) for s in statements)
    # the default config has no shadow with an agreement rule: no metric reads
    assert not any("GetMetricStatistics" in json.dumps(s["Action"]) for s in statements)


def test_only_record_publishes_to_the_alarm_topic(synth):
    record = _role_statements(synth, "PipelineRecordRole")
    (publish,) = [s for s in record if s["Action"] == "sns:Publish"]
    assert publish["Resource"] == {"Ref": synth.stack.get_logical_id(synth.stack.alarm_topic.node.default_child)}
    (key,) = [s for s in record if "kms:Decrypt" in s["Action"]]
    assert sorted(key["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    fn = [v for k, v in synth.resources("AWS::Lambda::Function").items() if k.startswith("PipelineRecord")][0]
    assert "ALARM_TOPIC_ARN" in fn["Properties"]["Environment"]["Variables"]


def test_the_execution_outlasts_the_longest_approval_and_bake():
    from infra.config import load_config
    from infra.pipeline import run_wait_seconds

    config = load_config({"stack_name": "S", "models": {
        "a": {"target": "y", "release": {"approval": "manual", "approval_timeout": "2d"}},
        "c": {"target": "y", "release": {"mode": "canary", "bake": "30m"}},
        "s": {"target": "y", "release": {"mode": "shadow", "bake": "1h"}},
        "plain": {"target": "y"}}})
    waits = {name: run_wait_seconds(m) for name, m in config.models.items()}
    assert waits["plain"] == 0
    assert waits["a"] == 2 * 86400
    assert waits["c"] == 1800 + 31 * 10
    assert waits["s"] == 3600 + 61 * 10 + 86400  # a shadow without a rule: people decide after the bake
