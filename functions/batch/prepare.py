"""Prepare state: the version to score with, the input's sha256, rows and header check (docs/batch.md)."""
from functions.batch import steps
from functions.pipeline.runtime import client, registry, step


@step
def handler(event, context):
    return steps.prepare(event, registry(), client("s3"))
