"""The rule on the pipeline's executions that ended ABORTED, TIMED_OUT or FAILED (infra/pipeline.py
``TrainingPipeline._execution_ended_rule``) as synthesized: its pattern, its one target (Record, with the
input transformer), the upload rules' retries and dead-letter queue, a Lambda permission for it alone."""
from __future__ import annotations

import json

from infra.workflow import UPLOAD_MAX_EVENT_AGE, UPLOAD_RETRY_ATTEMPTS


def _rule(synth) -> tuple[str, dict]:
    (found,) = [(k, v) for k, v in synth.resources("AWS::Events::Rule").items()
                if (v["Properties"].get("EventPattern") or {}).get("source") == ["aws.states"]]
    return found


def _logical_id(synth, type_: str, prefix: str) -> str:
    (lid,) = [k for k in synth.resources(type_) if k.startswith(prefix)]
    return lid


def test_the_rule_matches_the_pipelines_ended_executions(synth):
    _, rule = _rule(synth)
    pattern = rule["Properties"]["EventPattern"]
    machine = _logical_id(synth, "AWS::StepFunctions::StateMachine", "PipelineStateMachine")
    assert pattern == {"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
                       "detail": {"status": ["ABORTED", "TIMED_OUT", "FAILED"],
                                  "stateMachineArn": [{"Ref": machine}]}}
    assert rule["Properties"].get("EventBusName") in (None, "default")


def test_the_rule_invokes_record_with_the_execution_ended_action(synth):
    _, rule = _rule(synth)
    (target,) = rule["Properties"]["Targets"]
    record = _logical_id(synth, "AWS::Lambda::Function", "PipelineRecord")
    assert target["Arn"] == {"Fn::GetAtt": [record, "Arn"]}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": UPLOAD_RETRY_ATTEMPTS,
                                     "MaximumEventAgeInSeconds": int(UPLOAD_MAX_EVENT_AGE.to_seconds())}
    queue = _logical_id(synth, "AWS::SQS::Queue", "EventDeadLetters")
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"] == {
        "detail-executionArn": "$.detail.executionArn", "detail-status": "$.detail.status",
        "detail-input": "$.detail.input", "detail-error": "$.detail.error", "detail-cause": "$.detail.cause",
        "detail-stopDate": "$.detail.stopDate"}
    # Placeholders outside quotes: EventBridge writes each value as JSON (the input a string, escaped;
    # stopDate a number; a missing error or cause null).
    template = transformer["InputTemplate"]
    assert json.loads(template.replace("<", '"').replace(">", '"')) == {
        "action": "execution_ended", "execution_arn": "detail-executionArn", "status": "detail-status",
        "input": "detail-input", "error": "detail-error", "cause": "detail-cause", "stop_date": "detail-stopDate"}


def test_only_this_rule_may_invoke_record_and_the_dead_letter_queue_admits_it(synth):
    rule_id, _ = _rule(synth)
    record = _logical_id(synth, "AWS::Lambda::Function", "PipelineRecord")
    permissions = [p["Properties"] for p in synth.resources("AWS::Lambda::Permission").values()
                   if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [record, "Arn"]}]
    assert permissions == [{"Action": "lambda:InvokeFunction", "FunctionName": {"Fn::GetAtt": [record, "Arn"]},
                            "Principal": "events.amazonaws.com", "SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}]
    policies = json.dumps([p["Properties"]["PolicyDocument"] for p in synth.resources("AWS::SQS::QueuePolicy").values()
                           if "AllowEventRules" in json.dumps(p)])
    assert json.dumps({"Fn::GetAtt": [rule_id, "Arn"]}) in policies


def test_the_stack_is_nag_clean(synth):
    assert not [f for f in synth.nag if "ExecutionEnded" in json.dumps(f)]
