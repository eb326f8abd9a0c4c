"""The inference handler as a user would write it without Shipyard's ONNX path: the same API
Gateway REST event, the same Powertools resolver and decorators, the same registry lookup and
S3 artifact — but a joblib-pickled scikit-learn pipeline answering with ``predict`` /
``predict_proba``. The baseline of the "sklearn handler vs Shipyard handler" benchmark.

The artifact is ``models/<name>/v<N>/model.joblib`` beside the version's ``model.onnx``.
"""
from __future__ import annotations

import io
import json
import os
from typing import Any

import boto3
import joblib  # noqa: F401 - imported at module level, as such handlers do
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from functions.core import convert
from functions.core.registry import Registry
from functions.core.schema import FeatureSchema

logger = Logger(service="sklearn-inference")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Shipyard"))
app = APIGatewayRestResolver()

_models: dict[str, tuple[int, Any, FeatureSchema]] = {}
_registry: Registry | None = None
_s3 = None


def _load(name: str) -> tuple[int, Any, FeatureSchema]:
    global _registry, _s3
    if name not in _models:
        _registry = _registry or Registry.from_env()
        _s3 = _s3 or boto3.client("s3")
        version = _registry.get_alias(name, "production")
        record = _registry.get_version(name, version)
        key = record["artifact_key"].rsplit("/", 1)[0] + "/model.joblib"
        body = _s3.get_object(Bucket=os.environ["ARTIFACT_BUCKET"], Key=key)["Body"].read()
        _models[name] = (version, joblib.load(io.BytesIO(body)), FeatureSchema.from_dict(record["schema"]))
    return _models[name]


@app.post("/models/<name>/predict")
def predict(name: str):
    version, pipeline, schema = _load(name)
    instances = app.current_event.json_body["instances"]
    X = convert.matrix(schema, instances)
    body: dict[str, Any] = {"model": name, "version": version,
                            "predictions": [v.item() if hasattr(v, "item") else v for v in pipeline.predict(X)]}
    if schema.is_classifier:
        body["probabilities"] = pipeline.predict_proba(X).tolist()
        body["classes"] = list(schema.classes or ())
    metrics.add_dimension(name="model", value=name)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=len(instances))
    return Response(200, "application/json", json.dumps(body), headers={"X-Model-Version": str(version)})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict, context: Any) -> dict:
    return app.resolve(event, context)
