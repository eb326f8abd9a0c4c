"""Shipyard's EventBridge events (source ``shipyard``): one PutEvents entry, checked.

The pipeline's outcome events (``functions/pipeline/steps.py``) and the drift check's
``Drift Detected`` (``functions/drift/check.py``) are sent by :func:`put_event`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from functions.core.layout import EVENT_SOURCE


class EventNotDelivered(Exception):
    """EventBridge refused the entry: ``code`` and ``error_message`` are its ErrorCode and ErrorMessage."""

    def __init__(self, detail_type: str, code: str | None, error_message: str | None):
        super().__init__(f"{detail_type} event not delivered: {code} {error_message}")
        self.detail_type = detail_type
        self.code = code
        self.error_message = error_message


def put_event(events, detail_type: str, detail: Mapping[str, Any], *, event_bus: str = "default",
              execution_arn: str | None = None) -> str:
    """PutEvents one ``shipyard`` event on ``event_bus``; returns its event id.

    An execution ARN (``arn:…``) is the event's resource. Values JSON cannot write are written
    as text; NaN and infinities are refused (EventBridge takes only valid JSON). Raises
    :class:`EventNotDelivered` when EventBridge refuses the entry.
    """
    entry = {"Source": EVENT_SOURCE, "DetailType": detail_type, "EventBusName": event_bus,
             "Detail": json.dumps(detail, default=str, allow_nan=False)}
    if execution_arn and execution_arn.startswith("arn:"):
        entry["Resources"] = [execution_arn]
    resp = events.put_events(Entries=[entry])
    sent = (resp.get("Entries") or [{}])[0]
    if resp.get("FailedEntryCount") or "EventId" not in sent:
        raise EventNotDelivered(detail_type, sent.get("ErrorCode"), sent.get("ErrorMessage"))
    return sent["EventId"]
