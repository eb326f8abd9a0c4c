"""Step Functions' payload quota and terminal errors, as AWS applies them, on moto's interpreter.

moto checks a Lambda task's result against the 256 KiB quota but nothing else, and its
``States.ALL`` matches every error. AWS (docs: "Handling errors in Step Functions workflows",
"Step Functions service quotas") also fails a state with ``States.DataLimitExceeded`` when its
input after ``Parameters`` or its output (after ``ResultPath``) is over 256 KiB, and ``States.ALL``
catches neither ``States.DataLimitExceeded`` nor ``States.Runtime``: only a catcher (or retrier)
that names them does. `SEAM` makes moto do the same, so a state machine that counts on
``States.ALL`` for everything fails locally as it would in AWS.

A Lambda task (``"Resource": <function ARN>``) serializes its payload once: moto encoded it three
times (the quota check, the ``LambdaFunctionScheduled`` event's input, the Invoke request's body),
~2 ms each for a Distributed Map child's 230 KiB batch. The quota check keeps the JSON text it
made, and moto's ``to_json_str`` and ``to_payload_type`` answer from it for that payload object
while its task runs (`_TEXTS`).

The quota is measured as AWS states it, "256 KiB of data as a UTF-8 encoded string": at most
262,144 bytes of compact JSON in UTF-8 (`within_quota`). moto refused exactly 256 KiB, and counted
the space its ``json.dumps`` puts after every ``:`` and ``,`` and six bytes for an ``é``
(``\u00e9``). A ``lambda:invoke`` service integration task is checked too: its input after
``Parameters`` is its parameters (``FunctionName``, ``Payload``…).

Waits and timeouts are on the local clock (`LocalClock`, the seam's ``current``): a Wait state
(``Seconds``, ``SecondsPath``, ``Timestamp``, ``TimestampPath``) ends when the clock reaches its
end, and a task's ``TimeoutSeconds`` (``.waitForTaskToken`` tasks' too) expires when the clock
passes it, so ``cloud.advance(86400)`` ends a day-long approval in milliseconds. moto waits on
``threading.Event``s with real-time timeouts; the interpreter's modules that make them
(``environment``, ``execute_state``, ``callback``) make `ClockEvent`s instead while the seam is
installed, and a Wait state waits on the clock until its end or until its execution stops
(`_ExecutionStopped`). A ``Timestamp`` is measured against the clock in UTC (moto compared it
with the naive local ``datetime.now()``).

Step Functions' EventBridge events: AWS puts a ``Step Functions Execution Status Change`` event on the
default bus whenever a standard workflow's execution starts (``RUNNING``) and ends (``SUCCEEDED``,
``FAILED``, ``TIMED_OUT``, ``ABORTED``); moto sends none. `STATUS_EVENTS` (its ``current`` the local
cloud's `EventBus`) sends them: after moto's ``Execution.start`` and its
``BaseExecutionWorkerCommunication.terminated`` (where an execution that ended, StopExecution's too,
gets its status; ``Execution.stop`` also wakes a task waiting for its task token, which moto's stop
left waiting until the task's timeout), shaped by `status_change_event` as AWS documents it ("Step
Functions event examples": source ``aws.states``, the execution's ARN as the one resource, detail ``executionArn``,
``stateMachineArn``, ``name``, ``status``, ``startDate``/``stopDate`` in epoch milliseconds, ``input``,
``output``, their ``inputDetails``/``outputDetails``, ``error``, ``cause`` and the redrive fields),
through `events.put_service_event` to the default bus's rules. Express workflows send none, as in AWS.
Delivery is asynchronous, so (as in AWS) a rule's target may see an execution's events out of order.
A state directory's executions that were running at the save are restored ABORTED and get their event
too (localcloud/state.py, `put_status_change`).
"""
from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from .clock import ClockEvent, LocalClock
from .patches import Seam

# Errors a States.ALL catcher or retrier does not match (AWS: terminal unless named).
NOT_MATCHED_BY_ALL = ("States.DataLimitExceeded", "States.Runtime")


def _data_limit_exceeded(env: Any, what: str) -> Exception:
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    typ = StatesErrorNameType.StatesStatesDataLimitExceeded
    return FailureEventException(failure_event=FailureEvent(
        env=env, error_name=StatesErrorName(typ=typ), event_type=HistoryEventType.TaskFailed,
        event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
            error=typ.to_name(),
            cause=f"The state's {what} has a size exceeding the maximum number of bytes service limit "
                  "(256 KiB).",
        ))))


MAX_BYTES = 256 * 1024  # Step Functions' quota for a task's, state's or execution's input or output


def _json(value: Any) -> tuple[str, int]:
    """``value`` as compact JSON, characters unescaped as AWS keeps them, and its size in UTF-8."""
    from moto.stepfunctions.parser.asl.utils.encoding import _DateTimeEncoder

    text = json.dumps(value, cls=_DateTimeEncoder, separators=(",", ":"), ensure_ascii=False)
    if text.isascii():
        return text, len(text)
    try:
        return text, len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: only escaped is it JSON that UTF-8 can carry
        text = json.dumps(value, cls=_DateTimeEncoder, separators=(",", ":"))
        return text, len(text)


def within_quota(value: Any) -> bool:
    """Whether ``value`` fits Step Functions' 256 KiB (a string as it is, as moto measures it)."""
    if isinstance(value, str):
        return len(value) <= MAX_BYTES // 4 or len(value.encode("utf-8", "surrogatepass")) <= MAX_BYTES
    return _json(value)[1] <= MAX_BYTES


# id(payload) -> (payload, its JSON text): the payloads of the Lambda tasks running now, whose text
# the quota check made (the entry holds the object, so its id is not reused while it is there)
_TEXTS: dict[int, tuple[Any, str]] = {}
_running = threading.local()  # .payloads: the ids a Lambda task of this thread put in _TEXTS


def _text(value: Any) -> str | None:
    entry = _TEXTS.get(id(value))
    return entry[1] if entry is not None and entry[0] is value else None


class _ExecutionStopped(ClockEvent):
    """Set once ``env`` (an execution, or a branch's or task's frame) no longer runs: moto sets its
    ``program_state_event`` then, a `ClockEvent` while the seam is installed, which wakes the clock."""

    def __init__(self, clock: LocalClock, env: Any) -> None:
        super().__init__(clock)
        self._env = env

    def is_set(self) -> bool:
        return not self._env.is_running()


class _ClockThreading:
    """The ``threading`` module as an interpreter module sees it while the seam is installed: its
    Events count their timeouts on the local clock."""

    def __init__(self, seam: Seam) -> None:
        self._seam = seam

    def Event(self) -> threading.Event:  # noqa: N802 - threading.Event's name
        clock = self._seam.current
        return ClockEvent(clock) if isinstance(clock, LocalClock) else threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


def _patch(seam: Seam) -> None:
    """Apply AWS's quota and States.ALL rules to moto's Step Functions interpreter; its waits and
    timeouts on the local clock."""
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.state import state as state_module
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils, state_task_lambda
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_lambda import (
        StateTaskServiceLambda,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import StateTaskLambda
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    def _eval_body(self, env):
        error_name = env.stack[-1]
        name = getattr(error_name, "error_name", None)
        if name in NOT_MATCHED_BY_ALL and ErrorEqualsDecl._STATE_ALL_ERROR in self.error_names:
            env.stack.pop()
            env.stack.append(any(getattr(n, "error_name", None) == name for n in self.error_names))
            return
        seam["_eval_body"](self, env)

    def _eval_parameters(self, env):
        parameters = seam["_eval_parameters"](self, env)
        payload = parameters["Payload"]
        if not isinstance(payload, (dict, list)):  # moto's payload rules for None, strings, bytes…
            if not within_quota(payload):
                raise _data_limit_exceeded(env, "input after Parameters")
            return parameters
        text, size = _json(payload)  # what the quota measures; the task's event and body
        if size > MAX_BYTES:
            raise _data_limit_exceeded(env, "input after Parameters")
        payloads = getattr(_running, "payloads", None)
        if payloads is not None:  # evaluated by its task: remembered until the task ends
            _TEXTS[id(payload)] = (payload, text)
            payloads.append(id(payload))
        return parameters

    def service_eval_parameters(self, env):  # a lambda:invoke task's (inherited from StateTask)
        parameters = seam["service_eval_parameters"](self, env)
        if not within_quota(parameters):
            raise _data_limit_exceeded(env, "input after Parameters")
        return parameters

    def _eval_execution(self, env):
        outer, _running.payloads = getattr(_running, "payloads", None), []
        try:
            seam["_eval_execution"](self, env)
        finally:
            for key in _running.payloads:
                _TEXTS.pop(key, None)
            _running.payloads = outer

    def task_json_str(obj, separators=None):  # moto's to_json_str in state_task_lambda
        text = _text(obj) if separators is None else None
        return text if text is not None else to_json_str(obj, separators)

    def to_payload_type(payload):
        text = _text(payload)
        return text.encode("utf-8") if text is not None else seam["to_payload_type"](payload)

    def _evaluate_with_timeout(self, env):
        seam["_evaluate_with_timeout"](self, env)
        # The state's output (its input with the result at ResultPath) is on top of the stack.
        if env.stack and not within_quota(env.stack[-1]):
            raise _data_limit_exceeded(env, "output")

    seam.replace(ErrorEqualsDecl, "_eval_body", _eval_body)
    seam.replace(StateTaskLambda, "_eval_parameters", _eval_parameters)
    seam.replace(StateTaskServiceLambda, "_eval_parameters", service_eval_parameters, key="service_eval_parameters")
    seam.replace(StateTaskLambda, "_eval_execution", _eval_execution)
    seam.replace(state_task_lambda, "to_json_str", task_json_str)
    seam.replace(lambda_eval_utils, "to_payload_type", to_payload_type)
    seam.replace(ExecutionState, "_evaluate_with_timeout", _evaluate_with_timeout)
    _patch_clock(seam)
    # moto's own checks (a Lambda task's or service task's result, a state's output) by the same measure
    for module in (state_task_lambda, state_task_service, state_module):
        seam.replace(module, "is_within_size_quota", within_quota, key=f"{module.__name__}.is_within_size_quota")


def _patch_clock(seam: Seam) -> None:
    """Wait states and task timeouts on the local clock (``seam.current``)."""
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEventException
    from moto.stepfunctions.parser.asl.component.state.exec import execute_state
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.timestamp import Timestamp
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
    from moto.stepfunctions.parser.asl.eval import environment
    from moto.stepfunctions.parser.asl.eval.callback import callback

    clock_threading = _ClockThreading(seam)
    # an execution's program_state_event (set when it stops or ends): wakes what waits on the clock
    seam.replace(environment, "threading", clock_threading, key="environment.threading")
    # the event a task's TimeoutSeconds is waited on
    seam.replace(execute_state, "threading", clock_threading, key="execute_state.threading")
    # a .waitForTaskToken task's callback (and heartbeat, activity start) events
    seam.replace(callback, "Event", clock_threading.Event, key="callback.Event")

    def _wait_interval(self, env, wait_seconds):
        clock = seam.current
        if not isinstance(clock, LocalClock) or not isinstance(env.program_state_event, ClockEvent):
            return seam["_wait_interval"](self, env, wait_seconds)  # an execution from before the seam
        if wait_seconds > 0:
            clock.wait_until(clock.now() + wait_seconds, interrupt=_ExecutionStopped(clock, env))

    def _get_wait_seconds(self, env):  # Timestamp's and TimestampPath's
        clock = seam.current
        if not isinstance(clock, LocalClock):
            return seam["_get_wait_seconds"](self, env)
        self.string.eval(env=env)
        text = env.stack.pop()
        moment = self._from_timestamp_string(timestamp=text)
        if moment is None:
            raise FailureEventException(self._create_failure_event(env, text))
        return moment.replace(tzinfo=UTC).timestamp() - clock.now()  # seconds, not cut to whole ones

    seam.replace(WaitFunction, "_wait_interval", _wait_interval)
    seam.replace(Timestamp, "_get_wait_seconds", _get_wait_seconds)


SEAM = Seam(_patch)


# --------------------------------------------------------------------------- execution status change events

STATUS_CHANGE = "Step Functions Execution Status Change"
_ENDED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def _epoch_ms(moment: Any) -> int | None:
    if moment is None:
        return None
    if isinstance(moment, datetime):
        return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)
    return int(float(moment) * 1000)  # epoch seconds


def _given(value: Any) -> str | None:
    """An error or cause as the event carries it: None for none (moto's StopExecution passes '')."""
    return None if value in (None, "") else str(value)


def status_change_event(execution: Any, *, status: str | None = None, error: Any = None, cause: Any = None) -> dict:
    """The ``Step Functions Execution Status Change`` event of moto's ``execution`` (its status unless
    ``status``; ``error``/``cause`` default to the execution's), shaped as AWS sends it."""
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    status = status or execution.exec_status.value
    machine = execution.state_machine
    version_arn = None
    if getattr(machine, "source_arn", None):  # started through a version: the event names both
        version_arn = machine.arn
    raw = execution.execution_input
    output = None
    if status == "SUCCEEDED" and getattr(execution, "output", None) is not None:
        output = execution.output if isinstance(execution.output, str) else to_json_str(
            execution.output, separators=(",", ":"))
    stopped = status in _ENDED
    redrivable = status in ("FAILED", "TIMED_OUT", "ABORTED")
    detail = {
        "executionArn": execution.exec_arn,
        "stateMachineArn": getattr(machine, "source_arn", None) or execution.state_machine_arn,
        "stateMachineVersionArn": version_arn,
        "stateMachineAliasArn": None,
        "name": execution.name,
        "status": status,
        "startDate": _epoch_ms(execution.start_date),
        "stopDate": _epoch_ms(execution.stop_date) if stopped else None,
        "input": raw if isinstance(raw, str) else json.dumps(raw, separators=(",", ":")),
        "output": output,
        "inputDetails": {"included": True},
        "outputDetails": {"included": True} if output is not None else None,
        "error": _given(error if error is not None else getattr(execution, "error", None)),
        "cause": _given(cause if cause is not None else getattr(execution, "cause", None)),
        "redriveCount": 0,
        "redriveDate": None,
        "redriveStatus": "REDRIVABLE" if redrivable else "NOT_REDRIVABLE",
        "redriveStatusReason": None if redrivable else f"Execution is {status} and cannot be redriven",
    }
    at = execution.stop_date if stopped and execution.stop_date is not None else execution.start_date
    moment = datetime.fromtimestamp((_epoch_ms(at) or 0) / 1000, UTC)
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": STATUS_CHANGE, "source": "aws.states",
            "account": execution.account_id, "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": execution.region_name, "resources": [execution.exec_arn], "detail": detail}


def put_status_change(bus: Any, execution: Any, **kwargs: Any) -> None:
    """Put ``execution``'s status change event (`status_change_event`'s keywords) on its account's
    default bus through ``bus`` (an `EventBus`; None: no local cloud, nothing sent). Never raises: AWS
    sends these best effort, and a failure must not touch the execution."""
    # moto keeps the machine's type in ``type`` (its ``sm_type`` says STANDARD for every machine)
    kind = getattr(getattr(execution, "state_machine", None), "type", None) or getattr(execution, "sm_type", "STANDARD")
    if bus is None or getattr(kind, "value", kind) != "STANDARD":  # Express workflows send none
        return
    from .events import put_service_event

    try:
        event = status_change_event(execution, **kwargs)
        put_service_event(execution.account_id, execution.region_name, event)
    except Exception as err:  # noqa: BLE001 - best effort, as in AWS
        bus.log(f"[states] status change of {getattr(execution, 'exec_arn', '?')} not sent: {err!r}")


def _patch_status_events(seam: Seam) -> None:
    """An event when an execution starts and when it ends (``seam.current``: the `EventBus`)."""
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

    def start(self) -> None:
        if not self.exec_worker:  # sent before its worker runs: a quick execution's end is sent after it
            put_status_change(seam.current, self, status="RUNNING", error=None, cause=None)
        seam["start"](self)

    def terminated(self) -> None:
        seam["terminated"](self)
        execution = self.execution
        kwargs: dict[str, Any] = {}
        env = getattr(execution.exec_worker, "env", None)
        state = env.program_state() if env is not None else None
        stopped = getattr(execution, "_localcloud_stop", None)
        if stopped is not None and execution.exec_status != ExecutionStatus.ABORTED:
            # moto lets an error raised while the stopped execution winds down (the woken task) replace
            # its stop: StopExecution ends an execution ABORTED, as in AWS
            execution.exec_status, execution.error, execution.cause = ExecutionStatus.ABORTED, None, None
            state = ProgramStopped(stop_date=stopped[0], error=stopped[1], cause=stopped[2])
        if isinstance(state, ProgramStopped):  # StopExecution's error and cause (moto keeps them only here)
            kwargs = {"error": _given(state.error) or "", "cause": _given(state.cause) or ""}
        put_status_change(seam.current, execution, **kwargs)

    def stop(self, stop_date, error, cause) -> None:
        env = getattr(self.exec_worker, "env", None)
        if env is not None and env.is_running():  # a stop that stops it (not one of an ended execution)
            self._localcloud_stop = (stop_date, error, cause)
        seam["stop"](self, stop_date, error, cause)
        # A task waiting for its task token (or an activity) waits on its callback endpoint until the
        # task's timeout: moto's stop does not wake it, so the execution would not end (nor be reported
        # ABORTED) until then. AWS ends it at once: wake every endpoint; the stopped frame then ends.
        pool = getattr(getattr(env, "callback_pool_manager", None), "_pool", None)
        for endpoint in list((pool or {}).values()):
            endpoint.interrupt_all()

    seam.replace(Execution, "start", start)
    seam.replace(Execution, "stop", stop)
    seam.replace(BaseExecutionWorkerCommunication, "terminated", terminated)


STATUS_EVENTS = Seam(_patch_status_events)
