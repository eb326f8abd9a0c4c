"""The event a scheduled check (drift, quality) is started with: ``{"model": "<name>"}``, from its
schedule, ``shipyard drift|quality check``, or inside an EventBridge ``detail``."""
from __future__ import annotations

from typing import Any


def model_of(event: Any, error: type[Exception] = ValueError) -> str:
    """The model to check; `error` (the check's own error type) when the event names none."""
    if isinstance(event, dict) and isinstance(event.get("detail"), dict) and "model" not in event:
        event = event["detail"]
    model = event.get("model") if isinstance(event, dict) else None
    if not isinstance(model, str) or not model:
        raise error(f'expected an event {{"model": "<name>"}}, got {str(event)[:200]}')
    return model
