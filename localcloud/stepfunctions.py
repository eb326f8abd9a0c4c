"""Step Functions' payload quota and terminal errors, as AWS applies them, on moto's interpreter.

moto checks a Lambda task's result against the 256 KiB quota but nothing else, and its
``States.ALL`` matches every error. AWS (docs: "Handling errors in Step Functions workflows",
"Step Functions service quotas") also fails a state with ``States.DataLimitExceeded`` when its
input after ``Parameters`` or its output (after ``ResultPath``) is over 256 KiB, and ``States.ALL``
catches neither ``States.DataLimitExceeded`` nor ``States.Runtime``: only a catcher (or retrier)
that names them does. `SEAM` makes moto do the same, so a state machine that counts on
``States.ALL`` for everything fails locally as it would in AWS.
"""
from __future__ import annotations

from typing import Any

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


def _patch(seam: Seam) -> None:
    """Apply AWS's quota and States.ALL rules to moto's Step Functions interpreter."""
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import StateTaskLambda
    from moto.stepfunctions.parser.quotas import is_within_size_quota

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
        if not is_within_size_quota(parameters["Payload"]):
            raise _data_limit_exceeded(env, "input after Parameters")
        return parameters

    def _evaluate_with_timeout(self, env):
        seam["_evaluate_with_timeout"](self, env)
        # The state's output (its input with the result at ResultPath) is on top of the stack.
        if env.stack and not is_within_size_quota(env.stack[-1]):
            raise _data_limit_exceeded(env, "output")

    seam.replace(ErrorEqualsDecl, "_eval_body", _eval_body)
    seam.replace(StateTaskLambda, "_eval_parameters", _eval_parameters)
    seam.replace(ExecutionState, "_evaluate_with_timeout", _evaluate_with_timeout)


SEAM = Seam(_patch)
