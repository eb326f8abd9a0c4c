"""Outcome states Promote, Reject and MarkFailed: a registry change and a `shipyard` event each.

One function for the three (they need the same permissions: write the registry, put events on the
default bus); the state machine names the outcome in the input's ``action``.
"""
from functions.pipeline import steps
from functions.pipeline.errors import PipelineInputError
from functions.pipeline.runtime import client, execution_arn, registry, step

ACTIONS = {"promote": steps.promote, "reject": steps.reject, "mark_failed": steps.mark_failed}


@step
def handler(event, context):
    action = event.get("action")
    if action not in ACTIONS:
        raise PipelineInputError(f"action must be one of {sorted(ACTIONS)}, got {action!r}")
    return ACTIONS[action](event, registry(), client("events"), execution_arn=execution_arn(event))
