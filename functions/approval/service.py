"""What an approve/reject request does, independent of the API event that carries it.

``decide_release`` checks the model and version (404 like the rest of the API), records the
decision in the registry (``Registry.decide``: the first decision wins, 409 for any other), hands
it to the waiting pipeline run (``SendTaskSuccess`` with the version's task token and the output
``{"decision", "actor", "reason", "at"}``) and appends ``approved``/``rejected`` to the model's
release log with the caller's identity. A token Step Functions no longer knows (the wait timed
out, the run ended) is a 409 saying the approval expired; the decision stays on the approval item.

Deliberately small: no ONNX, no Powertools resolver (``functions.inference.service`` imports
onnxruntime at module level); the rule for names and versions is the registry's (``is_model_name``,
``MAX_VERSION``), as the inference API's.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from functions.core.registry import MAX_VERSION, ApprovalError, ModelNotFound, Registry, VersionNotFound, is_model_name

MAX_REASON_LENGTH = 2000
RELEASE_EVENTS = {"approve": "approved", "reject": "rejected"}
# Step Functions' answers for a token it no longer waits on
EXPIRED_TOKEN_ERRORS = ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken")


class ApprovalApiError(Exception):
    """An answer other than 200: status and a message saying what was wrong and what was expected."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def model_name(raw: str | None) -> str:
    """The decoded model name of the path (404 for a name that cannot be a model)."""
    name = unquote(raw or "")
    if not is_model_name(name):
        raise ApprovalApiError(404, "unknown model: a model name is 1 to 255 printable characters without '#'")
    return name


def version_number(name: str, raw: str | None) -> int:
    """The version of the path: plain decimal digits, at most MAX_VERSION (404 otherwise)."""
    text = unquote(raw or "")
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_VERSION or int(text) < 1:
        raise ApprovalApiError(404, f"model {name!r} has no version {text!r} (versions are numbered 1, 2, 3 …)")
    return int(text)


def parse_reason(decision: str, body: str | None) -> str | None:
    """The ``reason`` of a JSON body ``{"reason": "..."}``: required (non-empty) to reject, optional to approve."""
    data: Any = {}
    if body not in (None, ""):
        try:
            data = json.loads(body)
        except ValueError:
            raise ApprovalApiError(400, 'the body must be a JSON object {"reason": "..."}') from None
        if not isinstance(data, dict):
            raise ApprovalApiError(400, 'the body must be a JSON object {"reason": "..."}')
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ApprovalApiError(400, '"reason" must be a string')
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise ApprovalApiError(400, f'"reason" is at most {MAX_REASON_LENGTH} characters, got {len(reason)}')
    if decision == "reject" and reason is None:
        raise ApprovalApiError(400, 'a rejection needs a reason: send {"reason": "why the version is rejected"}')
    return reason


def decide_release(registry: Registry, sfn: Any, model: str, version: int, decision: str, *, actor: str,
                   reason: str | None) -> dict:
    """Record `decision` by `actor` and continue the waiting run; the answer's body (see module doc)."""
    if not actor:
        raise ApprovalApiError(403, "the caller's identity is unknown: approve and reject need SigV4 (AWS_IAM) "
                                    "requests, whose verified identity is recorded")
    try:
        registry.get_model(model)
        registry.get_version(model, version)
    except (ModelNotFound, VersionNotFound) as err:
        raise ApprovalApiError(404, str(err)) from None
    try:
        item = registry.decide(model, version, decision, actor=actor, reason=reason)
    except ApprovalError as err:
        raise ApprovalApiError(409, str(err)) from None
    except VersionNotFound as err:
        raise ApprovalApiError(404, str(err)) from None
    output = {"decision": decision, "actor": actor, "reason": reason, "at": item.get("decided_at")}
    try:
        sfn.send_task_success(taskToken=item["task_token"], output=json.dumps(output))
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code not in EXPIRED_TOKEN_ERRORS:
            raise
        expired = item.get("timeout_at") or "its timeout"
        raise ApprovalApiError(409, (
            f"the approval of model {model!r} version {version} expired at {expired}; the run was rejected "
            f"({code}). Your decision ({decision} by {actor}) is recorded on the approval item but changes "
            "nothing: start a new run to release this model")) from None
    registry.mark_delivered(model, version)
    registry.log_release_event(model, RELEASE_EVENTS[decision], version=version, actor=actor, reason=reason,
                               execution_arn=item.get("execution_arn"))
    return {"model": model, "version": version, "decision": decision, "actor": actor, "reason": reason}
