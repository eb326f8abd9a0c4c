"""Validate state: candidate vs production on the same holdouts and the trusted evaluation sets, with
onnxruntime + numpy (no scikit-learn)."""
import os

from functions.pipeline import steps
from functions.pipeline.runtime import artifact_bucket, client, registry, step


@step
def handler(event, context):
    return steps.validate(event, registry(), client("s3"), artifact_bucket=artifact_bucket(),
                          data_bucket=os.environ.get("DATA_BUCKET"))
