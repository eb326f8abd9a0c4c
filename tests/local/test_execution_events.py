"""Step Functions' `Step Functions Execution Status Change` events on the local cloud
(localcloud/stepfunctions.py ``STATUS_EVENTS``): moto sends none; the seam puts one on the default bus
when an execution starts and when it ends, shaped as AWS documents it, so a rule on ``aws.states`` (the
pipeline's ExecutionEnded rule) gets them. A LocalCloud of one queue and one rule: nothing synthesized."""
import json
import time
import uuid

import pytest

ROLE = "arn:aws:iam::123456789012:role/sfn"
STATUS_CHANGE = "Step Functions Execution Status Change"
TEMPLATE = {"Resources": {
    "Seen": {"Type": "AWS::SQS::Queue"},
    "StatusChanges": {"Type": "AWS::Events::Rule", "Properties": {
        "EventPattern": {"source": ["aws.states"], "detail-type": [STATUS_CHANGE]},
        "Targets": [{"Id": "Seen", "Arn": {"Fn::GetAtt": ["Seen", "Arn"]}}]}},
}}


@pytest.fixture(scope="module")
def cloud():
    from localcloud import LocalCloud, Template

    template = Template.from_dict(json.loads(json.dumps(TEMPLATE)), stack_name="StatusEvents")
    c = LocalCloud(template, aws_port=0, api_port=0, clock=False, iam=False, log=lambda line: None)
    c.start()
    c.seen = []
    yield c
    c.stop()


def _start(cloud, states: dict, kind: str = "STANDARD") -> tuple[str, str]:
    sfn = cloud.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"events-{uuid.uuid4().hex[:8]}", definition=json.dumps({"StartAt": next(iter(states)), "States": states}),
        roleArn=ROLE, type=kind)["stateMachineArn"]
    return machine, sfn.start_execution(stateMachineArn=machine, name=f"run-{uuid.uuid4().hex[:8]}",
                                        input=json.dumps({"model": "iris", "n": 1}))["executionArn"]


def _events(cloud, execution: str, statuses: int, within: float = 10.0) -> list[dict]:
    """The status change events of ``execution`` (at least ``statuses`` of them), RUNNING first."""
    sqs = cloud.client("sqs")
    url = cloud.physical_ids["Seen"]
    deadline = time.time() + within
    while True:
        cloud.wait_idle(5)
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            cloud.seen.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        mine = [e for e in cloud.seen if e["resources"] == [execution]]
        if len(mine) >= statuses or time.time() > deadline:  # delivered asynchronously: in any order
            return sorted(mine, key=lambda e: e["detail"]["status"] != "RUNNING")
        time.sleep(0.1)


def _check_shape(event: dict, machine: str, execution: str, status: str) -> dict:
    assert event["source"] == "aws.states" and event["detail-type"] == STATUS_CHANGE
    assert event["account"] == "123456789012" and event["region"] == "us-east-1"
    assert event["resources"] == [execution] and event["version"] == "0" and event["id"]
    assert event["time"].endswith("Z")
    detail = event["detail"]
    assert {"executionArn", "stateMachineArn", "name", "status", "startDate", "stopDate", "input", "output",
            "inputDetails", "outputDetails", "error", "cause"} <= set(detail)
    assert detail["executionArn"] == execution and detail["stateMachineArn"] == machine
    assert detail["name"] == execution.rsplit(":", 1)[1] and detail["status"] == status
    assert json.loads(detail["input"]) == {"model": "iris", "n": 1} and detail["inputDetails"] == {"included": True}
    assert isinstance(detail["startDate"], int) and detail["startDate"] > 1_600_000_000_000  # epoch ms
    if status == "RUNNING":
        assert detail["stopDate"] is None
    else:
        assert isinstance(detail["stopDate"], int) and detail["stopDate"] >= detail["startDate"]
    return detail


def test_a_succeeded_execution_sends_running_then_succeeded_with_its_output(cloud):
    machine, execution = _start(cloud, {"Done": {"Type": "Pass", "Result": "ok", "ResultPath": "$.out", "End": True}})
    running, succeeded = _events(cloud, execution, 2)
    _check_shape(running, machine, execution, "RUNNING")
    detail = _check_shape(succeeded, machine, execution, "SUCCEEDED")
    assert json.loads(detail["output"]) == {"model": "iris", "n": 1, "out": "ok"}
    assert detail["outputDetails"] == {"included": True}
    assert detail["error"] is None and detail["cause"] is None


def test_a_failed_execution_carries_its_error_and_cause(cloud):
    machine, execution = _start(cloud, {"Boom": {"Type": "Fail", "Error": "PipelineFailed", "Cause": "bad data"}})
    events = _events(cloud, execution, 2)
    detail = _check_shape(events[-1], machine, execution, "FAILED")
    assert detail["error"] == "PipelineFailed" and detail["cause"] == "bad data" and detail["output"] is None


def test_a_stopped_execution_sends_aborted(cloud):
    machine, execution = _start(cloud, {"Bake": {"Type": "Wait", "Seconds": 86400, "End": True}})
    _events(cloud, execution, 1)  # RUNNING
    cloud.client("stepfunctions").stop_execution(executionArn=execution)
    events = _events(cloud, execution, 2)
    assert [e["detail"]["status"] for e in events] == ["RUNNING", "ABORTED"]
    detail = _check_shape(events[-1], machine, execution, "ABORTED")
    assert detail["output"] is None and detail["error"] is None and detail["cause"] is None


def test_an_express_execution_sends_none(cloud):
    _, execution = _start(cloud, {"Done": {"Type": "Pass", "End": True}}, kind="EXPRESS")
    time.sleep(0.5)
    assert _events(cloud, execution, 1, within=1.0) == []
