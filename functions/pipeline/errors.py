"""Errors the state machine tells apart by name (``errorType`` of the Lambda error).

- ``TransientError``: throttling or a 5xx from an AWS service; the state machine retries it with
  backoff (with ``Lambda.ServiceException`` & co.).
- ``DatasetError`` (``functions.core.dataset``): the upload cannot be used; never retried.
- anything else: caught, the version is marked ``failed`` with the error.
"""
from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnectionError

# AWS error codes that mean "try again later" (throttling and server-side trouble).
TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "SlowDown", "ServiceUnavailable", "ServiceUnavailableException", "InternalError", "InternalFailure",
    "InternalServerError", "InternalServiceError", "RequestTimeout", "RequestTimeoutException",
    "TransactionInProgressException", "LimitExceededException", "BandwidthLimitExceeded",
})


class TransientError(Exception):
    """A throttle or server error from AWS that outlived the SDK's own retries: retry the state."""


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
