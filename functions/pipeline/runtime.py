"""What every pipeline handler shares: Powertools, configuration from the environment, clients.

Environment (set by ``infra/pipeline.py``): ``REGISTRY_TABLE``, ``ARTIFACT_BUCKET``,
``SHIPYARD_MODELS``, ``MAX_DATASET_BYTES``, ``MIN_ROWS``, ``CODE_VERSION``, ``EVENT_BUS_NAME``,
``POWERTOOLS_SERVICE_NAME``.
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from functions.core import clients
from functions.core.registry import Registry

from .errors import MAX_RESULT_BYTES, StepResultTooLarge, TransientError, bounded, is_transient

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
    """Handler decorator: Powertools context; AWS throttles/5xx re-raised as TransientError; bounded errors and results.

    Whatever a step raises or returns lands in the state input (256 KiB at most), and an error's
    message in the registry and the `Pipeline Failed` event: messages are cut to
    ``MAX_MESSAGE_CHARS`` (the full text is logged first) keeping the error's type name, which the
    state machine's Retry matches; a result over ``MAX_RESULT_BYTES`` becomes StepResultTooLarge.
    """

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
                raise _bounded(TransientError(f"{type(err).__name__}: {err}"), context) from err
            logger.exception("pipeline step failed")
            raise _bounded(err, context)  # noqa: B904 - the same error, its message cut
        except Exception as err:
            logger.exception("pipeline step failed")
            raise _bounded(err, context)  # noqa: B904
        _check_result(result, context)
        logger.info("pipeline step done", extra={"result": result})
        return result

    return logger.inject_lambda_context(clear_state=True)(tracer.capture_lambda_handler(wrapper))


# CloudWatch Logs cuts an event at 256 KB: a longer text is logged in parts (JSON escapes may take 6 bytes a char).
LOG_PART_CHARS = 40_000


def log_in_parts(what: str, text: str) -> None:
    """``text`` whole in the function's log, as lines ``<what>, part i of n`` with the part in ``full_text``."""
    parts = [text[i:i + LOG_PART_CHARS] for i in range(0, len(text), LOG_PART_CHARS)] or [""]
    for n, part in enumerate(parts, 1):
        logger.error(f"{what}, part {n} of {len(parts)}", extra={"full_text": part})


def _log_of(context: Any) -> str:
    group = getattr(context, "log_group_name", None) or os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
    request = getattr(context, "aws_request_id", None)
    return "the function's log" + (f" ({group}" + (f", request {request}" if request else "") + ")" if group else "")


def _bounded(err: BaseException, context: Any) -> BaseException:
    """``err`` with its message cut to MAX_MESSAGE_CHARS; its type name (what Retry/Catch match) kept."""
    text = str(err)
    short = bounded(text, _log_of(context))
    if short == text:
        return err
    log_in_parts(f"{type(err).__name__} message in full", text)
    try:
        err.args = (short,)
    except (AttributeError, TypeError):
        pass
    if str(err) == short:
        return err
    # A class whose str() is not its message (KeyError quotes it, some build it): a stand-in of the same name.
    stand_in = type(type(err).__name__, (Exception,), {"__module__": type(err).__module__})(short)
    return stand_in.with_traceback(err.__traceback__)


def _check_result(result: Any, context: Any) -> None:
    try:
        text = json.dumps(result)
    except (TypeError, ValueError):
        return  # not JSON: the runtime reports it (Runtime.MarshalError)
    size = len(text.encode())
    if size > MAX_RESULT_BYTES:
        log_in_parts(f"step result of {size:,} bytes in full", text)
        raise StepResultTooLarge(bounded(
            f"the step's result is {size:,} bytes, more than the {MAX_RESULT_BYTES:,} a step may return "
            f"(Step Functions passes at most 256 KiB between states); it begins {text[:200]}", _log_of(context)))
