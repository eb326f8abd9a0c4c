"""Train state: dataset → scikit-learn pipeline → ONNX (+ parity), artifacts, candidate with lineage.

Runs with the training layer (scikit-learn, skl2onnx, onnxruntime for the parity check).
"""
import os

from functions.core.layout import DEFAULT_MAX_DATASET_BYTES, DEFAULT_MIN_DATASET_ROWS
from functions.pipeline import steps
from functions.pipeline.runtime import artifact_bucket, client, env_int, execution_arn, registry, step


@step
def handler(event, context):
    return steps.train(event, registry(), client("s3"), artifact_bucket=artifact_bucket(),
                       max_bytes=env_int("MAX_DATASET_BYTES", DEFAULT_MAX_DATASET_BYTES),
                       min_rows=env_int("MIN_ROWS", DEFAULT_MIN_DATASET_ROWS),
                       code_version=os.environ.get("CODE_VERSION", ""), execution_arn=execution_arn(event))
