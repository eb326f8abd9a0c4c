"""What a scheduled check (drift, quality) starts from: its event, ``{"model": "<name>"}`` (from its
schedule, ``shipyard drift|quality check``, or inside an EventBridge ``detail``), and the model's
settings in its environment (``DRIFT_MODELS``, ``QUALITY_MODELS``: JSON model -> settings)."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def model_of(event: Any, error: type[Exception] = ValueError) -> str:
    """The model to check; `error` (the check's own error type) when the event names none."""
    if isinstance(event, dict) and isinstance(event.get("detail"), dict) and "model" not in event:
        event = event["detail"]
    model = event.get("model") if isinstance(event, dict) else None
    if not isinstance(model, str) or not model:
        raise error(f'expected an event {{"model": "<name>"}}, got {str(event)[:200]}')
    return model


def model_settings(env: Mapping[str, str], variable: str, model: str, error: type[Exception] = ValueError, *,
                   what: str) -> dict:
    """*model*'s settings from the JSON object in ``env[variable]``; `error` says what is wrong with it, or
    that *model* has no *what* configured."""
    raw = env.get(variable) or "{}"
    try:
        models = json.loads(raw)
    except json.JSONDecodeError as err:
        raise error(f"{variable} is not valid JSON ({err}); expected model -> settings") from None
    if not isinstance(models, dict):
        raise error(f"{variable} must be a JSON object of model -> settings, got {raw[:100]!r}")
    if model not in models:
        raise error(f"model {model!r} has no {what} configured; configured: {sorted(models) or 'none'}")
    return dict(models[model] or {})
