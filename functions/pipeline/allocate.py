"""Allocate state: claim the dataset object version (dedupe) and allocate the version (`training`)."""
from functions.pipeline import steps
from functions.pipeline.runtime import execution_arn, registry, step


@step
def handler(event, context):
    return steps.allocate(event, registry(), execution_arn=execution_arn(event))
