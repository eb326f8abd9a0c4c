"""``shipyard approve MODEL VERSION [--reason TEXT]`` / ``shipyard reject MODEL VERSION --reason TEXT``.

Both end a manual approval (docs/release.md) through the API's
``POST /models/{name}/versions/{version}/approve|reject``, which is always ``AWS_IAM`` whatever
``api.auth`` is: the request is SigV4-signed with the caller's AWS credentials (the standard AWS
environment, as every command), API Gateway verifies it and checks ``execute-api:Invoke`` on the
method, and the identity it verified is what the registry and the release log record. The API is
found as ``shipyard predict`` finds it (``--api-url``, else ``SHIPYARD_API_URL``, else the stack's
``ApiUrl`` output).
"""
from __future__ import annotations

import json
import os
import urllib.parse

from infra.apiclient import json_answer, signed_request
from infra.commandline import EXIT_OK, CliError, _output, _project_config, _stack_name, stack_outputs, unknown_model

PAST = {"approve": "approved", "reject": "rejected"}
NEXT = {"approve": "the run continues", "reject": "the run ends rejected"}


def _api_url(args) -> str:
    stack = _stack_name(args)
    return args.api_url or os.environ.get("SHIPYARD_API_URL") or _output(stack_outputs(stack), "ApiUrl", stack)


def decide(args, decision: str, send=signed_request) -> int:
    """One approve/reject request; prints the outcome, raises CliError with the API's message."""
    known = list((_project_config(args).get("models") or {}).keys())
    if known and args.model not in known:
        raise unknown_model(args.model, known)
    if args.version < 1:
        raise CliError(f"VERSION is a version number (1, 2, 3 …), got {args.version}")
    reason = (args.reason or "").strip() or None
    if decision == "reject" and reason is None:
        raise CliError("a rejection needs a reason: --reason TEXT (it is kept in the release log)")
    url = (f"{_api_url(args).rstrip('/')}/models/{urllib.parse.quote(args.model, safe='')}"
           f"/versions/{args.version}/{decision}")
    body = json.dumps({"reason": reason} if reason is not None else {}).encode()
    status, _headers, raw = send("POST", url, body, "iam")
    answer = json_answer(raw)
    message = answer.get("message") or answer.get("Message") if isinstance(answer, dict) else str(answer)
    if status == 200:
        print(f"{PAST[decision]} {args.model} v{args.version} as {answer.get('actor')}; {NEXT[decision]}"
              + (f" (reason: {answer['reason']})" if answer.get("reason") else ""))
        return EXIT_OK
    if status == 403:
        raise CliError(
            f"the API refused the {decision} (403): {message}. The caller needs execute-api:Invoke on the "
            f"approve and reject routes (arn:aws:execute-api:<region>:<account>:<api id>/prod/POST/models/"
            f"{args.model}/versions/*/{decision}): in CDK, stack.approval.grant_approve(principal"
            f"[, model={args.model!r}]); see docs/api.md, 'Approving a release'")
    if status == 404:
        raise CliError(f"cannot {decision} {args.model} v{args.version}: {message}")
    if status == 409:
        raise CliError(f"nothing was {PAST[decision]}: {message}")
    raise CliError(f"the API answered {status} to the {decision} of {args.model} v{args.version}: {message}")


def cmd_approve(args) -> int:
    return decide(args, "approve")


def cmd_reject(args) -> int:
    return decide(args, "reject")


def add_parsers(sub) -> None:
    """``approve`` and ``reject`` (registered by infra/cli.py)."""
    for name, run, text in (("approve", cmd_approve, "approve a version awaiting a manual approval (audited)"),
                            ("reject", cmd_reject, "reject a version awaiting a manual approval (audited)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("model")
        p.add_argument("version", type=int)
        p.add_argument("--reason", required=name == "reject",
                       help="why (kept in the release log; required to reject)")
        p.add_argument("--api-url", help="API base URL (default: SHIPYARD_API_URL, else the stack's ApiUrl output)")
        p.set_defaults(run=run)
