"""The local clock (localcloud/clock.py `LocalClock`, `ClockEvent`) and what runs on it: Step Functions
Wait states and task timeouts (localcloud/stepfunctions.py) and schedules, moved on with
`cloud.advance(seconds)` so an hour's Wait or a day's approval timeout passes in milliseconds.

The cloud tests create their state machines through the Step Functions API on a LocalCloud of two SQS
queues and an hourly rule: no functions to run, nothing synthesized."""
import json
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from localcloud.clock import ClockEvent, LocalClock

ROLE = "arn:aws:iam::123456789012:role/sfn"
HOUR, DAY = 3600, 86400


# ---------------------------------------------------------------------------------------------- LocalClock
def _in_thread(fn, *args, **kwargs):
    """Run `fn` on a thread; (thread, result list filled with its return value, seconds it took)."""
    result: list = []

    def run():
        started = time.monotonic()
        value = fn(*args, **kwargs)
        result.extend([value, time.monotonic() - started])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_now_is_real_time_plus_the_offset_advance_adds():
    clock = LocalClock()
    assert abs(clock.now() - time.time()) < 0.05 and clock.offset == 0
    returned = clock.advance(HOUR)
    assert clock.offset == HOUR
    assert abs(clock.now() - (time.time() + HOUR)) < 0.05
    assert abs(returned - clock.now()) < 0.05


def test_advance_wakes_a_waiter_at_once():
    clock = LocalClock()
    thread, result = _in_thread(clock.wait_until, clock.now() + HOUR)
    time.sleep(0.2)
    assert thread.is_alive() and clock.waiters == 1  # an hour ahead: still waiting
    clock.advance(HOUR / 2)
    time.sleep(0.1)
    assert thread.is_alive()  # woken, looked, half an hour to go
    clock.advance(HOUR / 2)
    thread.join(2)
    assert not thread.is_alive()
    assert result[0] is True and result[1] < 1.0
    assert clock.waiters == 0


def test_wait_until_a_short_deadline_passes_in_real_time():
    clock = LocalClock()
    assert clock.wait_until(clock.now() - 1) is True  # already passed
    started = time.monotonic()
    assert clock.wait_until(clock.now() + 0.3) is True
    assert 0.28 <= time.monotonic() - started < 1.5


def test_an_interrupt_ends_the_wait_with_false():
    clock = LocalClock()
    stop = clock.event()  # a ClockEvent: wakes the clock when set
    thread, result = _in_thread(clock.wait_until, clock.now() + DAY, interrupt=stop)
    time.sleep(0.2)
    assert thread.is_alive()
    stop.set()
    thread.join(2)
    assert result[0] is False and result[1] < 1.0
    # a plain Event is noticed too (looked at every PLAIN_INTERRUPT_CHECK_SECONDS)
    plain = threading.Event()
    thread, result = _in_thread(clock.wait_until, clock.now() + DAY, interrupt=plain)
    time.sleep(0.2)
    plain.set()
    thread.join(2)
    assert result[0] is False and result[1] < 1.0
    # set before: no wait at all, even with the deadline passed
    assert clock.wait_until(clock.now() - 1, interrupt=plain) is False


@pytest.mark.parametrize("seconds", [-1, -0.001, float("nan"), float("inf")])
def test_the_clock_does_not_go_back(seconds):
    clock = LocalClock()
    clock.advance(10)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(seconds)
    assert clock.offset == 10


def test_a_clock_event_times_out_on_the_clock():
    clock = LocalClock()
    event = clock.event()
    assert isinstance(event, ClockEvent) and isinstance(event, threading.Event)
    thread, result = _in_thread(event.wait, DAY)
    time.sleep(0.2)
    assert thread.is_alive()
    clock.advance(DAY)
    thread.join(2)
    assert result[0] is False and result[1] < 1.0  # timed out: not set
    thread, result = _in_thread(event.wait, DAY)
    time.sleep(0.1)
    event.set()
    thread.join(2)
    assert result[0] is True and result[1] < 1.0
    assert event.wait(0) is True and event.wait() is True


# ---------------------------------------------------------------------------------------------- on a local cloud
TEMPLATE = {"Resources": {
    "Approvals": {"Type": "AWS::SQS::Queue"},
    "Ticks": {"Type": "AWS::SQS::Queue"},
    "Hourly": {"Type": "AWS::Events::Rule", "Properties": {
        "ScheduleExpression": "rate(1 hour)", "Targets": [{"Id": "Ticks", "Arn": {"Fn::GetAtt": ["Ticks", "Arn"]}}]}},
}}


@pytest.fixture(scope="module")
def cloud():
    from localcloud import LocalCloud, Template

    template = Template.from_dict(json.loads(json.dumps(TEMPLATE)), stack_name="ClockTest")
    c = LocalCloud(template, aws_port=0, api_port=0, clock=False, iam=False, log=lambda line: None)
    c.start()
    c.queues = {name: c.physical_ids[name] for name in ("Approvals", "Ticks")}  # a queue's physical id: its URL
    yield c
    c.stop()


def _start(cloud, states: dict, execution_input: dict) -> str:
    sfn = cloud.client("stepfunctions")
    definition = json.dumps({"StartAt": next(iter(states)), "States": states})
    arn = sfn.create_state_machine(name=f"clock-{uuid.uuid4().hex[:8]}", definition=definition,
                                   roleArn=ROLE)["stateMachineArn"]
    return sfn.start_execution(stateMachineArn=arn, input=json.dumps(execution_input))["executionArn"]


def _history_types(cloud, execution: str) -> list[str]:
    events = cloud.client("stepfunctions").get_execution_history(executionArn=execution)["events"]
    return [e["type"] for e in events]


def _until_entered(cloud, execution: str, event_type: str) -> None:
    """Until the execution has entered the state (then a moment more: it is waiting)."""
    deadline = time.time() + 10
    while event_type not in _history_types(cloud, execution):
        assert time.time() < deadline, f"no {event_type} in {_history_types(cloud, execution)}"
        time.sleep(0.05)
    time.sleep(0.3)


def _status(cloud, execution: str) -> dict:
    return cloud.client("stepfunctions").describe_execution(executionArn=execution)


def _ended(cloud, execution: str, within: float = 5.0) -> dict:
    deadline = time.time() + within
    while (desc := _status(cloud, execution))["status"] == "RUNNING":
        assert time.time() < deadline, f"still running {within}s after: {_history_types(cloud, execution)}"
        time.sleep(0.05)
    return desc


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("wait", [{"Seconds": HOUR}, {"SecondsPath": "$.bake"}])
def test_an_hours_wait_ends_when_the_clock_is_advanced_an_hour(cloud, wait):
    execution = _start(cloud, {"Bake": {"Type": "Wait", "Next": "Done", **wait},
                               "Done": {"Type": "Pass", "Result": "promoted", "ResultPath": "$.outcome", "End": True}},
                       {"bake": HOUR, "release": "v2"})
    _until_entered(cloud, execution, "WaitStateEntered")
    assert _status(cloud, execution)["status"] == "RUNNING"  # real time alone does not end it
    cloud.advance(HOUR / 2)
    time.sleep(0.3)
    assert _status(cloud, execution)["status"] == "RUNNING"  # half-way
    advanced = time.time()
    cloud.advance(HOUR / 2)
    desc = _ended(cloud, execution)
    assert time.time() - advanced < 3
    assert desc["status"] == "SUCCEEDED", desc
    assert json.loads(desc["output"]) == {"bake": HOUR, "release": "v2", "outcome": "promoted"}
    assert "WaitStateExited" in _history_types(cloud, execution)


@pytest.mark.parametrize("field", ["Timestamp", "TimestampPath"])
def test_a_timestamp_wait_is_measured_on_the_local_clock(cloud, field):
    cloud.advance(DAY)  # the local clock a day ahead of real time (at least)
    until = _iso(cloud.clock.now() + HOUR)  # an hour ahead of the local clock
    wait = {"Timestamp": until} if field == "Timestamp" else {"TimestampPath": "$.until"}
    execution = _start(cloud, {"Gate": {"Type": "Wait", "End": True, **wait}}, {"until": until})
    _until_entered(cloud, execution, "WaitStateEntered")
    assert _status(cloud, execution)["status"] == "RUNNING"
    cloud.advance(HOUR - 60)
    time.sleep(0.3)
    assert _status(cloud, execution)["status"] == "RUNNING"  # a minute before the timestamp
    cloud.advance(61)
    desc = _ended(cloud, execution)
    assert desc["status"] == "SUCCEEDED", desc
    assert json.loads(desc["output"]) == {"until": until}


def _approval(cloud) -> dict:
    """A task that sends its token to the Approvals queue and waits a day for it to come back."""
    return {"Approve": {
        "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "TimeoutSeconds": DAY,
        "Parameters": {"QueueUrl": cloud.queues["Approvals"],
                       "MessageBody": {"token.$": "$$.Task.Token", "release.$": "$.release"}},
        "ResultPath": "$.approval", "End": True}}


def _token(cloud, release: str) -> str:
    """The task token the approval task sent for `release`."""
    sqs = cloud.client("sqs")
    deadline = time.time() + 10
    while time.time() < deadline:
        for message in sqs.receive_message(QueueUrl=cloud.queues["Approvals"], MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", []):
            sqs.delete_message(QueueUrl=cloud.queues["Approvals"], ReceiptHandle=message["ReceiptHandle"])
            body = json.loads(message["Body"])
            if body["release"] == release:
                return body["token"]
    raise AssertionError(f"no approval request for {release}")


def test_a_day_long_task_token_wait_times_out_when_the_clock_passes_a_day(cloud):
    execution = _start(cloud, _approval(cloud), {"release": "timeout"})
    assert _token(cloud, "timeout")
    time.sleep(0.3)
    assert _status(cloud, execution)["status"] == "RUNNING"
    cloud.advance(DAY - 60)
    time.sleep(0.3)
    assert _status(cloud, execution)["status"] == "RUNNING"  # a minute left
    advanced = time.time()
    cloud.advance(61)
    desc = _ended(cloud, execution)
    assert time.time() - advanced < 3
    assert desc["status"] == "FAILED", desc
    assert desc.get("error") == "States.Timeout", desc
    assert "TaskTimedOut" in _history_types(cloud, execution) or "TaskFailed" in _history_types(cloud, execution)


def test_the_callback_before_the_timeout_wins(cloud):
    execution = _start(cloud, _approval(cloud), {"release": "approved"})
    token = _token(cloud, "approved")
    cloud.advance(DAY - 60)  # most of the day gone, the timeout not reached
    time.sleep(0.3)
    assert _status(cloud, execution)["status"] == "RUNNING"
    cloud.client("stepfunctions").send_task_success(taskToken=token, output=json.dumps({"by": "ops", "ok": True}))
    desc = _ended(cloud, execution)
    assert desc["status"] == "SUCCEEDED", desc
    assert json.loads(desc["output"]) == {"release": "approved", "approval": {"by": "ops", "ok": True}}
    cloud.advance(120)  # past the day now: nothing changes
    time.sleep(0.2)
    assert _status(cloud, execution)["status"] == "SUCCEEDED"


def test_a_task_failure_callback_fails_the_task_with_its_error(cloud):
    execution = _start(cloud, _approval(cloud), {"release": "rejected"})
    token = _token(cloud, "rejected")
    cloud.client("stepfunctions").send_task_failure(taskToken=token, error="Rejected", cause="canary alarms")
    desc = _ended(cloud, execution)
    assert desc["status"] == "FAILED", desc
    assert desc.get("error") == "Rejected", desc  # (moto 5.2.5 drops SendTaskFailure's cause)


def test_stopping_an_execution_ends_its_wait(cloud):
    waiting_before = cloud.clock.waiters
    execution = _start(cloud, {"Bake": {"Type": "Wait", "Seconds": DAY, "End": True}}, {})
    _until_entered(cloud, execution, "WaitStateEntered")
    assert cloud.clock.waiters == waiting_before + 1  # the Wait waits on the local clock
    cloud.client("stepfunctions").stop_execution(executionArn=execution, error="Rollback", cause="alarm")
    deadline = time.time() + 3
    while cloud.clock.waiters > waiting_before:  # the Wait let go of its thread: not left for a day
        assert time.time() < deadline, "the Wait state still waits after the stop"
        time.sleep(0.05)
    desc = _status(cloud, execution)
    assert desc["status"] == "ABORTED", desc
    assert "WaitStateExited" not in _history_types(cloud, execution)


def test_advance_fires_the_schedules_due_by_the_new_time(cloud):
    sqs = cloud.client("sqs")
    rule = cloud.physical_ids["Hourly"]
    assert rule in cloud.advance(HOUR)  # an hour on: due whenever it last fired
    cloud.wait_idle()
    sqs.purge_queue(QueueUrl=cloud.queues["Ticks"])
    assert cloud.advance(HOUR / 2) == []
    fired = cloud.advance(HOUR / 2)
    assert fired == [rule]
    cloud.wait_idle()
    messages = sqs.receive_message(QueueUrl=cloud.queues["Ticks"], WaitTimeSeconds=2).get("Messages", [])
    assert len(messages) == 1
    event = json.loads(messages[0]["Body"])
    assert event["detail-type"] == "Scheduled Event"
    stamped = datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    assert abs(stamped - cloud.clock.now()) < 5  # the local clock's time, not real time
    assert stamped - time.time() > HOUR
    assert cloud.tick() == []  # the clock thread's ticks read the local clock too: not due again


def test_shipyard_local_clock_reads_and_moves_the_clock_over_the_endpoint(cloud, monkeypatch, capsys):
    """`shipyard local clock [--advance 30m]` (a bake or an approval timeout without waiting for it) goes
    through the AWS endpoint's clock path; a bad duration or no local cloud says what was expected."""
    import requests

    from infra.cli import main
    from localcloud.cloud import CLOCK_PATH

    url = cloud.environment()["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    before = cloud.clock.offset
    assert main(["local", "clock"]) == 0
    assert f"({before:g} s ahead of real time)" in capsys.readouterr().out
    assert main(["local", "clock", "--advance", "2h"]) == 0
    out = capsys.readouterr().out
    assert cloud.clock.offset == pytest.approx(before + 7200)
    assert "schedules fired: " + cloud.physical_ids["Hourly"] in out
    assert main(["local", "clock", "--advance", "soon"]) == 1
    assert "expected seconds or a duration such as 90s, 30m" in capsys.readouterr().err
    assert requests.post(url + CLOCK_PATH, json={"advance": -5}, timeout=10).status_code == 400
    assert cloud.clock.offset == pytest.approx(before + 7200)  # never back
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert main(["local", "clock"]) == 1
    assert "set AWS_ENDPOINT_URL" in capsys.readouterr().err
