"""Retrain function: a ``Drift Detected`` event starts the pipeline on the model's newest dataset.

Target of one EventBridge rule per model whose ``drift.retrain`` is true. Finds the newest
current object under ``datasets/<model>/`` of the data bucket (key + S3 version id) and starts
the training state machine with the input the upload rule would have given it.

Environment: DATA_BUCKET, STATE_MACHINE_ARN, RETRAIN_SPECS (JSON model -> the spec document the
upload rule carries, see infra/pipeline.py ``spec_document``).
"""
from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger, Tracer

from functions.core import clients
from functions.drift.check import DriftCheckError, retrain_input
from functions.pipeline.execution import latest_dataset, start

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-retrain"))
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-retrain"))


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
def handler(event: dict, context: Any) -> dict:
    detail = event.get("detail") if isinstance(event, dict) else None
    model = detail.get("model") if isinstance(detail, dict) else None
    if not isinstance(model, str) or not model:
        raise DriftCheckError(f"expected a Drift Detected event with detail.model, got {str(event)[:200]}")
    logger.append_keys(model=model)
    bucket = os.environ["DATA_BUCKET"]
    dataset = latest_dataset(clients.client("s3"), bucket, model)
    if dataset is None:
        raise DriftCheckError(f"model {model!r} drifted but s3://{bucket}/datasets/{model}/ holds no dataset "
                              "to retrain on; upload one (that starts the pipeline by itself)")
    specs = json.loads(os.environ.get("RETRAIN_SPECS") or "{}")
    if model not in specs:
        raise DriftCheckError(f"model {model!r} is not set up for retraining (drift.retrain); "
                              f"RETRAIN_SPECS has: {sorted(specs) or 'none'}")
    arn = os.environ["STATE_MACHINE_ARN"]
    payload = retrain_input(model, specs[model], dataset, trigger={
        "event_id": event.get("id"), "time": event.get("time"), "drifted_share": detail.get("drifted_share"),
        "report": detail.get("report")})
    execution_arn = start(clients.client("stepfunctions"), arn, payload, prefix="drift")
    logger.info("retraining started", extra={"dataset": dataset, "execution_arn": execution_arn})
    return {"model": model, "dataset": dataset, "execution_arn": execution_arn}
