"""Errors the state machine tells apart by name (``errorType`` of the Lambda error).

- ``TransientError``: throttling or a 5xx from an AWS service; the state machine retries it with
  backoff (with ``Lambda.ServiceException`` & co.).
- ``DatasetError`` (``functions.core.dataset``): the upload cannot be used; never retried.
- ``StepResultTooLarge``: a step's result would not fit between states; not retried.
- anything else: caught, the version is marked ``failed`` with the error.

Every message that leaves a step is bounded (``bounded``): Step Functions carries the error into
the state input (256 KiB at most), the registry and the `Pipeline Failed` event; the full text
stays in the function's log.
"""
from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

# AWS error codes that mean "try again later" (throttling and server-side trouble).
TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "SlowDown", "ServiceUnavailable", "ServiceUnavailableException", "InternalError", "InternalFailure",
    "InternalServerError", "InternalServiceError", "RequestTimeout", "RequestTimeoutException",
    "TransactionInProgressException", "LimitExceededException", "BandwidthLimitExceeded",
    "ConditionalRequestConflict",  # S3: two conditional writes of one key raced; the retry sees the winner
})


class TransientError(Exception):
    """A throttle or server error from AWS that outlived the SDK's own retries: retry the state."""


# A failure reason (registry, event, execution cause) is at most this long; the full text is logged.
MAX_MESSAGE_CHARS = 1000
# What one step may return: small JSON. Five results (run, train, validation, outcome/error,
# failure) at fixed result paths then stay far below Step Functions' 256 KiB state payload.
MAX_RESULT_BYTES = 32 * 1024


class StepResultTooLarge(Exception):
    """A step's result is larger than ``MAX_RESULT_BYTES``: a bug in the step, never retried."""


def bounded(text: str, where: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` itself when short enough, else its start and a note saying it was cut and where the rest is."""
    if len(text) <= limit:
        return text
    note = f" … [cut: {len(text):,} characters in all; the full text is in {where}]"
    return text[:max(0, limit - len(note))] + note


class PipelineInputError(ValueError):
    """The execution input is not what the pipeline expects (a bad hand-made `shipyard train` input)."""


def is_transient(err: BaseException) -> bool:
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in TRANSIENT_CODES or int(status) >= 500
    return isinstance(err, (BotoConnectionError, BotoCoreError)) and "connect" in type(err).__name__.lower() \
        or type(err).__name__ in ("ReadTimeoutError", "ConnectTimeoutError", "EndpointConnectionError")


def reraise_transient(err: BaseException) -> None:
    """Raise ``TransientError`` from ``err`` when it is transient; otherwise return."""
    if is_transient(err):
        code = err.response.get("Error", {}).get("Code", "") if isinstance(err, ClientError) else type(err).__name__
        raise TransientError(f"{code}: {err}") from err
