"""The Release function: StartRelease, CheckRelease, FinishRelease and RollBack (``action``).

Environment (infra/release.py): ``REGISTRY_TABLE``, ``AUDIT_TABLE``…, ``EVENT_BUS_NAME``,
``ALARM_PREFIX`` (``<stack>-``: the only alarms it may create, read and delete) and
``ALARM_TOPIC_ARN`` (the release alarms' action; empty: none).
"""
import os

from functions.pipeline.errors import PipelineInputError
from functions.pipeline.runtime import client, execution_arn, registry, step
from functions.release import loop

ACTIONS = {"start": loop.start, "check": loop.check, "finish": loop.finish, "rollback": loop.rollback}


@step
def handler(event, context):
    action = event.get("action")
    if action not in ACTIONS:
        raise PipelineInputError(f"action must be one of {sorted(ACTIONS)}, got {action!r}")
    clients = loop.Clients(registry=registry(), events=client("events"), cloudwatch=client("cloudwatch"),
                           alarm_prefix=os.environ["ALARM_PREFIX"], topic_arn=os.environ.get("ALARM_TOPIC_ARN") or None)
    return ACTIONS[action](event, clients, execution_arn=execution_arn(event))
