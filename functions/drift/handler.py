"""Drift function: one drift check of one model (scheduled per model, or `shipyard drift check`).

Event: ``{"model": "<name>"}`` (the schedule's input). Answer: the report written to
``drift/<model>/<timestamp>.json`` (see docs/monitoring.md) plus ``report_uri`` (s3://…) and ``html_report_uri``
(the HTML report, reports/<model>/<ts>.html; null if it could not be written). The rules live in
``functions.drift.check``; this handler parses, calls and logs.

Environment: REGISTRY_TABLE, ARTIFACT_BUCKET, SHIPYARD_MODELS, DRIFT_MODELS (JSON model ->
{window, share, threshold, retrain}), DRIFT_MIN_ROWS (500), DRIFT_LOOKBACK_DAYS (7),
EVENT_BUS_NAME (default), POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE.
"""
from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Tracer

from functions.core import clients
from functions.core.checkevent import model_of
from functions.drift.check import DriftCheckError, run_check, settings_from_env

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-drift"))
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-drift"))

def parse_event(event: Any) -> str:
    """The model to check (functions/core/checkevent.py)."""
    return model_of(event, DriftCheckError)


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
def handler(event: dict, context: Any) -> dict:
    model = parse_event(event)
    logger.append_keys(model=model)
    report = run_check(
        model,
        registry=clients.registry(),
        s3=clients.client("s3"),
        bucket=os.environ["ARTIFACT_BUCKET"],
        settings=settings_from_env(model),
        events=clients.client("events"),
        event_bus=os.environ.get("EVENT_BUS_NAME") or "default",
    )
    logger.info(
        "drift check done",
        extra={"version": report["version"], "rows": report["rows"], "skipped": report["skipped"],
               "reason": report["reason"], "drift_detected": report["drift_detected"],
               "drifted_share": report["drifted_share"], "drifted_features": report["drifted_features"],
               "report_key": report["report_key"], "html_report_key": report.get("html_report_key")},
    )
    bucket = os.environ["ARTIFACT_BUCKET"]
    html = report.get("html_report_key")
    return {**report, "report_uri": f"s3://{bucket}/{report['report_key']}",
            "html_report_uri": f"s3://{bucket}/{html}" if html else None}
