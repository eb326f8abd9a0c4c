"""What every pipeline handler shares: Powertools, configuration from the environment, clients.

Environment (set by ``infra/pipeline.py``): ``REGISTRY_TABLE``, ``ARTIFACT_BUCKET``,
``SHIPYARD_MODELS``, ``MAX_DATASET_BYTES``, ``MIN_ROWS``, ``CODE_VERSION``, ``EVENT_BUS_NAME``,
``POWERTOOLS_SERVICE_NAME``.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable

from aws_lambda_powertools import Logger, Tracer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from functions.core import clients
from functions.core.registry import Registry

from .errors import TransientError, is_transient

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-pipeline")
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)

# The SDK retries throttles and 5xx itself first (standard mode: 1 attempt + 3 retries); what outlives that becomes a
# TransientError, which the state machine retries with its own backoff.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=10, read_timeout=60)


def client(service: str):
    return clients.client(service, config=_CONFIG)


def registry() -> Registry:
    return clients.registry(config=_CONFIG)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def artifact_bucket() -> str:
    return os.environ["ARTIFACT_BUCKET"]


def execution_arn(event: dict) -> str:
    return str(event.get("execution_arn") or "manual")


def flatten(event: Any) -> Any:
    """The state machine passes ``{"input": <state input>, "execution_arn": …, <extras>}``: one dict."""
    if isinstance(event, dict) and isinstance(event.get("input"), dict):
        merged = dict(event["input"])
        merged.update({k: v for k, v in event.items() if k != "input"})
        return merged
    return event


def step(fn: Callable[[dict, Any], dict]) -> Callable[[dict, Any], dict]:
    """Handler decorator: Powertools context, and AWS throttles/5xx re-raised as TransientError."""

    @functools.wraps(fn)
    def wrapper(event: dict, context: Any) -> dict:
        event = flatten(event)
        logger.append_keys(model=event.get("model"), version=(event.get("run") or {}).get("version")
                           or event.get("version"), execution_arn=event.get("execution_arn"))
        try:
            result = fn(event, context)
        except (ClientError, BotoCoreError) as err:
            if is_transient(err):
                logger.warning("transient AWS error, the state machine will retry", exc_info=True)
                raise TransientError(f"{type(err).__name__}: {err}") from err
            logger.exception("pipeline step failed")
            raise
        except Exception:
            logger.exception("pipeline step failed")
            raise
        logger.info("pipeline step done", extra={"result": result})
        return result

    return logger.inject_lambda_context(clear_state=True)(tracer.capture_lambda_handler(wrapper))
