"""ScoreBatch: one Distributed Map batch of rows → predictions/<model>/<run>/part-… and errors-…

The ONNX session is loaded once per warm environment through the API's ``ModelServer`` (the
recorded artifact object version, sha256-verified).
"""
import os

from functions.batch import steps
from functions.inference.service import ModelServer
from functions.pipeline.runtime import client, registry, step

_models: ModelServer | None = None


def models() -> ModelServer:
    global _models
    if _models is None:
        _models = ModelServer(registry(), client("s3"), os.environ["ARTIFACT_BUCKET"], capture=None)
    return _models


@step
def handler(event, context):
    return steps.score(event, models(), client("s3"), os.environ["DATA_BUCKET"])
