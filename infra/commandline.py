"""What every `shipyard` command shares: its errors and exit codes, the stack it works on (found
by name: ``--stack``, else ``SHIPYARD_STACK``, else ``stack_name`` in ./cdk.json, else "Shipyard"; its
outputs say where the registry table and the API are), the caller's identity, and tables.

The commands live in ``infra.cli`` and in a module each (``infra.runs``, ``infra.logs``,
``infra.predict``, ``infra.evaluate``); all of them import these from here, none from ``infra.cli``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_ERROR = 0, 1  # argparse exits 2 on usage errors


class CliError(Exception):
    """A failure the user can act on: printed as one line, exit code 1."""


def unknown_model(model: str, known: Sequence[str]) -> CliError:
    """The error for a model cdk.json does not configure, naming the one most likely meant."""
    from functions.pipeline.uploads import closest_model

    close = closest_model(model, known)
    hint = f"; did you mean {close!r}?" if close and close != model else ""
    return CliError(f"model {model!r} is not configured in cdk.json (configured: {', '.join(known) or 'none'}){hint}")


# --------------------------------------------------------------------------- stack discovery


def _read_project_config(path: Path = Path("cdk.json")) -> dict:
    try:
        from infra.config import without_comments

        return without_comments(json.loads(path.read_text()).get("context", {}).get("shipyard", {}) or {})
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, AttributeError) as err:
        raise CliError(f"{path} is not valid JSON: {err}") from err


def _project_config(args) -> dict:
    """``context.shipyard`` of ./cdk.json (``{}`` without one), read once per command."""
    if getattr(args, "project_config", None) is None:
        args.project_config = _read_project_config()
    return args.project_config


def _stack_name(args) -> str:
    return args.stack or os.environ.get("SHIPYARD_STACK") or _project_config(args).get("stack_name") or "Shipyard"


def stack_outputs(stack: str, session=None) -> dict[str, str]:
    """The stack's outputs by OutputKey (ApiUrl, RegistryTableName, …)."""
    import boto3
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    client = (session or boto3.Session()).client("cloudformation")
    try:
        stacks = client.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as err:
        raise CliError(
            f"stack {stack!r} not found ({err.response['Error'].get('Message', err)}); deploy it with "
            "`cdk deploy`, start it locally with `shipyard local up`, or name it with --stack"
        ) from err
    except (NoCredentialsError, EndpointConnectionError) as err:
        raise CliError(f"cannot reach AWS to find stack {stack!r}: {err}") from err
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def _output(outputs: dict, key: str, stack: str) -> str:
    if key not in outputs:
        raise CliError(f"stack {stack!r} has no output {key!r} (has: {', '.join(sorted(outputs)) or 'none'})")
    return outputs[key]


def _registry(args):
    from functions.core.registry import Registry

    stack = _stack_name(args)
    outputs = stack_outputs(stack)
    table = _output(outputs, "RegistryTableName", stack)
    known = list((_project_config(args).get("models") or {}).keys())
    # A stack from before the audit log had a table of its own keeps its events in the registry table.
    return Registry(table, known_models=known, audit_table=outputs.get("AuditTableName"))


def caller_arn(session=None) -> str:
    """The caller's AWS identity (STS GetCallerIdentity ARN): the actor of every alias move and
    pipeline run the CLI makes. No anonymous actor: when STS cannot answer, nothing is moved."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return (session or boto3.Session()).client("sts").get_caller_identity()["Arn"]
    except ClientError as err:
        detail = err.response.get("Error", {}).get("Message") or err
    except BotoCoreError as err:
        detail = err
    raise CliError(f"cannot tell who you are (STS GetCallerIdentity failed: {detail}); the audit log records "
                   "the caller's AWS identity, so nothing was changed. Check AWS_PROFILE / credentials "
                   "(or AWS_ENDPOINT_URL for the local cloud)")


# --------------------------------------------------------------------------- formatting


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[("-" if c is None else str(c)) for c in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_check(function: str, model: str, *, stack: str, what: str, expect: str, not_found: str) -> dict:
    """Invoke a stack's check function (drift, quality) for *model* now, as its schedule does, and return
    the report it answers; a missing function (*not_found* says what to do), a function error or an
    answer without the *expect* key is a CliError naming *what* failed."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    client = boto3.client("lambda", config=Config(read_timeout=960, connect_timeout=10, retries={"max_attempts": 0}))
    try:
        answer = client.invoke(FunctionName=function, Payload=json.dumps({"model": model}).encode())
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise CliError(f"{what} function {function!r} of stack {stack!r} not found; {not_found}") from err
        raise CliError(f"cannot invoke {what} function {function!r}: {err}") from err
    raw = answer["Payload"].read()
    try:
        report = json.loads(raw or b"null")
    except json.JSONDecodeError:
        report = {"errorMessage": raw.decode(errors="replace")[:500]}
    if answer.get("FunctionError") or not isinstance(report, dict) or expect not in report:
        detail = report if not isinstance(report, dict) else report.get("errorMessage", report)
        kind = (report.get("errorType") + ": ") if isinstance(report, dict) and report.get("errorType") else ""
        raise CliError(f"the {what} check of model {model!r} failed: {kind}{detail}")
    return report
