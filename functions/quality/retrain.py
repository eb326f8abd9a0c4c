"""Quality retrain function: a ``Quality Degraded`` event starts the pipeline (docs/quality.md, "Retraining").

Target of one EventBridge rule per model whose ``quality.retrain`` is set. The rules live in
``functions.quality.retraining``; this handler parses, calls and logs.

Environment: DATA_BUCKET, ARTIFACT_BUCKET, STATE_MACHINE_ARN, RETRAIN_SPECS (JSON model -> the spec
document the upload rule carries), QUALITY_MODELS (as the quality function's), QUALITY_LATE_LOOKBACK.
"""
from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger, Tracer

from functions.core import clients
from functions.quality.check import QualityCheckError, settings_from_env
from functions.quality.retraining import start_retraining

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-quality-retrain"))
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-quality-retrain"))


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
def handler(event: dict, context: Any) -> dict:
    detail = event.get("detail") if isinstance(event, dict) else None
    model = detail.get("model") if isinstance(detail, dict) else None
    if not isinstance(model, str) or not model:
        raise QualityCheckError(f"expected a Quality Degraded event with detail.model, got {str(event)[:200]}")
    logger.append_keys(model=model)
    settings = settings_from_env(model)
    specs = json.loads(os.environ.get("RETRAIN_SPECS") or "{}")
    if model not in specs or not settings.retrain:
        raise QualityCheckError(f"model {model!r} is not set up for retraining on quality (quality.retrain); "
                                f"RETRAIN_SPECS has: {sorted(specs) or 'none'}")
    result = start_retraining(
        model, mode=settings.retrain, spec=specs[model], settings=settings, s3=clients.client("s3"),
        sfn=clients.client("stepfunctions"), state_machine_arn=os.environ["STATE_MACHINE_ARN"],
        data_bucket=os.environ["DATA_BUCKET"], artifact_bucket=os.environ["ARTIFACT_BUCKET"],
        trigger={"event_id": event.get("id"), "time": event.get("time"), "version": detail.get("version"),
                 "metric": detail.get("metric"), "score": detail.get("score"),
                 "min_score": detail.get("min_score"), "labelled": detail.get("labelled"),
                 "report": detail.get("report")})
    logger.info("retraining started", extra=result)
    return result
