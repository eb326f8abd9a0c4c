"""Quality function: one model quality check of one model (scheduled per model, or `shipyard quality check`).

Event: ``{"model": "<name>"}`` (the schedule's input). Answer: the report written to
``quality/<model>/<timestamp>.json`` (docs/quality.md) plus ``report_uri`` (s3://…). The rules live
in ``functions.quality.check``; this handler parses, calls and logs.

Environment: REGISTRY_TABLE, ARTIFACT_BUCKET, DATA_BUCKET, SHIPYARD_MODELS, QUALITY_MODELS (JSON model ->
{target, task, metric, min_score, min_labels, window, retrain}), QUALITY_LATE_LOOKBACK (seconds, 604800),
EVENT_BUS_NAME (default), POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE.
"""
from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Tracer

from functions.core import clients
from functions.core.checkevent import model_of
from functions.quality.check import QualityCheckError, run_check, settings_from_env

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-quality"))
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-quality"))


def parse_event(event: Any) -> str:
    """The model to check (functions/core/checkevent.py)."""
    return model_of(event, QualityCheckError)


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
def handler(event: dict, context: Any) -> dict:
    model = parse_event(event)
    logger.append_keys(model=model)
    bucket = os.environ["ARTIFACT_BUCKET"]
    report = run_check(
        model,
        registry=clients.registry(),
        s3=clients.client("s3"),
        bucket=bucket,
        data_bucket=os.environ["DATA_BUCKET"],
        settings=settings_from_env(model),
        events=clients.client("events"),
        event_bus=os.environ.get("EVENT_BUS_NAME") or "default",
    )
    logger.info("quality check done", extra={
        "version": report["version"], "score": report["score"], "labels": report["labels"],
        "captured": report["captured"], "coverage": report["coverage"], "degraded": report["degraded"],
        "skipped": report["skipped"], "reason": report["reason"], "report_key": report["report_key"]})
    return {**report, "report_uri": f"s3://{bucket}/{report['report_key']}"}
