"""Allocate state: mark stale `training` versions failed, claim the dataset object version (dedupe) and
allocate the version (`training`)."""
from functions.pipeline import steps
from functions.pipeline.runtime import client, env_int, execution_arn, registry, step


@step
def handler(event, context):
    return steps.allocate(event, registry(), execution_arn=execution_arn(event), events=client("events"),
                          execution_timeout=env_int("EXECUTION_TIMEOUT_SECONDS", 0))
