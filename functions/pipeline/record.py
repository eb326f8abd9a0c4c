"""Outcome states Promote, Reject and MarkFailed, and the manual approval's AwaitApproval,
AwaitShadowDecision and Approved: a registry change and a `shipyard` event each; and
``execution_ended`` (not a state: the EventBridge rule on the pipeline's executions that ended ABORTED,
TIMED_OUT or FAILED closes what such a run left open, ``steps.execution_ended``).

One function for them all (they need the same permissions: write the registry, put events on the
default bus); the state machine names the step in the input's ``action``. ``await_approval``
also publishes to the alarm topic (``ALARM_TOPIC_ARN``, when the stack gives one).
"""
import os

from functions.pipeline import steps
from functions.pipeline.errors import PipelineInputError
from functions.pipeline.runtime import client, execution_arn, registry, step


def _await_approval(event, reg, events, *, execution_arn):
    return steps.await_approval(event, reg, events, client("sns"), execution_arn=execution_arn,
                                topic_arn=os.environ.get("ALARM_TOPIC_ARN") or None)


def _release_alarms() -> dict:
    """How MarkFailed and execution_ended delete a failed release's two alarms (``ALARM_PREFIX``: the
    stack's, the only alarms Record may delete; none without it)."""
    prefix = os.environ.get("ALARM_PREFIX")
    return {"alarm_prefix": prefix or "",
            "delete_alarms": (lambda names: client("cloudwatch").delete_alarms(AlarmNames=names)) if prefix else None}


def _mark_failed(event, reg, events, *, execution_arn):
    return steps.mark_failed(event, reg, events, execution_arn=execution_arn, **_release_alarms())


def _execution_ended(event, reg, events, *, execution_arn):
    # The EventBridge rule on the pipeline's ABORTED/TIMED_OUT/FAILED executions (infra/pipeline.py): the
    # event's execution_arn is the ended execution's.
    return steps.execution_ended(event, reg, events, **_release_alarms())


ACTIONS = {"promote": steps.promote, "reject": steps.reject, "mark_failed": _mark_failed,
           "await_approval": _await_approval, "approved": steps.approved, "execution_ended": _execution_ended}


@step
def handler(event, context):
    action = event.get("action")
    if action not in ACTIONS:
        raise PipelineInputError(f"action must be one of {sorted(ACTIONS)}, got {action!r}")
    return ACTIONS[action](event, registry(), client("events"), execution_arn=execution_arn(event))
