"""Summarize and RecordFailure states: summary.json, the batch run's lineage, ``Batch Scored``."""
import os

from functions.batch import steps
from functions.pipeline.errors import PipelineInputError
from functions.pipeline.runtime import client, registry, step


@step
def handler(event, context):
    action = event.get("action")
    if action == "summarize":
        return steps.summarize(event, registry(), client("s3"), client("events"), os.environ["DATA_BUCKET"])
    if action == "fail":
        return steps.fail(event, registry(), client("events"))
    raise PipelineInputError(f"action must be 'summarize' or 'fail', got {action!r}")
