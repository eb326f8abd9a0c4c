"""Approval function: ``POST /models/{name}/versions/{version}/approve`` and ``…/reject`` (docs/api.md).

Thin by design: read the path, the body and the caller API Gateway verified
(``requestContext.identity.userArn``: both methods are ``AWS_IAM`` whatever ``api.auth`` is),
call ``functions.approval.service.decide_release`` and shape the answer. Environment:
REGISTRY_TABLE, AUDIT_TABLE, SHIPYARD_MODELS.
"""
from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger

from functions.approval.service import ApprovalApiError, decide_release, model_name, parse_reason, version_number
from functions.core import clients

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "shipyard-approval"))


def _answer(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body),
            "isBase64Encoded": False}


def _decision(event: dict) -> str:
    resource = event.get("resource") or event.get("path") or ""
    if event.get("httpMethod") == "POST":
        for word in ("approve", "reject"):
            if resource.rstrip("/").endswith("/" + word):
                return word
    raise ApprovalApiError(404, f"no route {event.get('httpMethod')} {resource}: POST "
                                "/models/{name}/versions/{version}/approve or /reject")


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event: dict, context: Any) -> dict:
    try:
        decision = _decision(event)
        params = event.get("pathParameters") or {}
        model = model_name(params.get("name"))
        version = version_number(model, params.get("version"))
        reason = parse_reason(decision, event.get("body"))
        identity = (event.get("requestContext") or {}).get("identity") or {}
        actor = identity.get("userArn")
        answer = decide_release(clients.registry(), clients.client("stepfunctions"), model, version, decision,
                                actor=actor, reason=reason)
    except ApprovalApiError as err:
        logger.info("refused", extra={"status": err.status, "reason": err.message})
        return _answer(err.status, {"message": err.message})
    except Exception:  # noqa: BLE001 - never a traceback to the caller
        logger.exception("approval failed")
        return _answer(500, {"message": "internal error; the request was logged"})
    logger.info("decided", extra=answer)
    return _answer(200, answer)
