"""``shipyard logs FUNCTION [--follow] [--since 10m]``: a stack function's CloudWatch Logs.

FUNCTION is the name users know (``train``, ``validate``, ``allocate``, ``record``, ``inference``,
``drift``, ``retrain``, …) or a physical function name. The names are read from the stack: its
``AWS::Lambda::Function`` resources (CloudFormation ``ListStackResources``; on the local cloud,
whose stack holds only outputs, the Lambda functions named after the stack), each named after the
module of its handler (``functions.pipeline.train.handler`` → ``train``,
``functions.inference.handler.handler`` → ``inference``); where two functions share a handler (a
Train function per ``compute.memory``) the largest keeps the name and the others get their memory
size appended (``train2048``), as their logical ids do. The log group is the function's
``LoggingConfig.LogGroup`` (the stack gives each function its own), else ``/aws/lambda/<name>``
(Lambda's default, and where the local cloud writes).

Everything goes through boto3 (``filter_log_events``), so AWS_PROFILE / AWS_REGION /
AWS_ENDPOINT_URL choose between AWS and the local cloud as for every other command.
"""
from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime

POLL_SECONDS = 1.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.I)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def _sleep(seconds: float) -> None:  # a seam for tests (`--follow` ends on KeyboardInterrupt)
    time.sleep(seconds)


def parse_since(text: str, now: float | None = None) -> int:
    """``10m``, ``90s``, ``2h``, ``1d``, ``1w`` (a bare number is minutes) ago, or an ISO 8601 time:
    epoch milliseconds."""
    from infra.commandline import CliError

    now = time.time() if now is None else now
    m = _DURATION.match(text)
    if m:
        return int((now - float(m.group(1)) * _UNIT_SECONDS[(m.group(2) or "m").lower()]) * 1000)
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--since {text!r}: expected a duration (30s, 10m, 2h, 1d) or an ISO 8601 time "
                       "(2026-01-31T12:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def logical_name(handler: str) -> str:
    """The name users know for a function with this handler: its handler's module, or the package
    when the module is called ``handler`` / ``app`` / ``main`` / ``index``."""
    parts = [p for p in handler.split(".")[:-1] if p and p != "functions"]
    while len(parts) > 1 and parts[-1] in ("handler", "app", "main", "index", "lambda_function"):
        parts.pop()
    return (parts[-1] if parts else handler).lower().replace("_", "-")


def stack_functions(stack: str, session=None) -> dict[str, dict]:
    """The stack's functions by the name users know: ``{name: {function, handler, memory, log_group}}``."""
    import boto3
    from botocore.exceptions import ClientError

    session = session or boto3.Session()
    lam = session.client("lambda")
    configs: list[dict] = []
    try:
        names = [r["PhysicalResourceId"]
                 for page in session.client("cloudformation").get_paginator("list_stack_resources").paginate(
                     StackName=stack)
                 for r in page.get("StackResourceSummaries", [])
                 if r.get("ResourceType") == "AWS::Lambda::Function" and r.get("PhysicalResourceId")]
    except ClientError as err:
        if _no_such_stack(err):  # not a reason to take other stacks' functions by their name's prefix
            from infra.commandline import CliError

            raise CliError(f"stack {stack!r} not found ({err.response['Error'].get('Message')}); name it with "
                           "--stack (or SHIPYARD_STACK), or give FUNCTION as a function name") from None
        names = []
    for name in names:
        try:
            configs.append(lam.get_function_configuration(FunctionName=name))
        except ClientError:
            continue
    if not names:  # the local cloud's stack holds its outputs only: the functions named after the stack
        prefix = stack[:25]
        configs = [f for page in lam.get_paginator("list_functions").paginate() for f in page.get("Functions", [])
                   if f["FunctionName"].startswith(prefix) and str(f.get("Handler", "")).startswith("functions.")]
    found: dict[str, list[dict]] = {}
    for c in configs:
        found.setdefault(logical_name(str(c.get("Handler") or c["FunctionName"])), []).append(c)
    out: dict[str, dict] = {}
    for name, group in sorted(found.items()):
        group.sort(key=lambda c: (-int(c.get("MemorySize") or 0), c["FunctionName"]))
        for i, c in enumerate(group):
            key = name if i == 0 else f"{name}{c.get('MemorySize')}"
            out[key] = {"function": c["FunctionName"], "handler": c.get("Handler"), "memory": c.get("MemorySize"),
                        "log_group": (c.get("LoggingConfig") or {}).get("LogGroup")
                        or f"/aws/lambda/{c['FunctionName']}"}
    return out


def _no_such_stack(err) -> bool:
    error = err.response.get("Error", {})
    return error.get("Code") == "ValidationError" and "does not exist" in str(error.get("Message", ""))


def resolve_function(stack: str, name: str, session=None) -> dict:
    """FUNCTION as a name users know or a physical name (of the stack's functions, or any function)."""
    import boto3
    from botocore.exceptions import ClientError

    from infra.commandline import CliError

    try:
        known = stack_functions(stack, session)
    except CliError as missing:  # no such stack: a function name is still taken as is
        known, stack_error = {}, missing
    else:
        stack_error = None
    if name.lower() in known:
        return {"name": name.lower(), **known[name.lower()]}
    for key, fn in known.items():
        if fn["function"] == name:
            return {"name": key, **fn}
    try:  # a physical name outside the stack
        c = (session or boto3.Session()).client("lambda").get_function_configuration(FunctionName=name)
    except ClientError:
        if stack_error is not None:
            raise stack_error from None
        listing = ", ".join(f"{k} ({v['function']})" for k, v in known.items()) or "none found"
        raise CliError(f"unknown function {name!r} in stack {stack!r}; its functions: {listing}") from None
    return {"name": name, "function": c["FunctionName"], "handler": c.get("Handler"), "memory": c.get("MemorySize"),
            "log_group": (c.get("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{c['FunctionName']}"}


def format_event(event: dict) -> str:
    when = datetime.fromtimestamp(event["timestamp"] / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    stream = event.get("logStreamName") or ""
    worker = stream.rsplit("]", 1)[-1][:8] if "]" in stream else stream[-8:]
    return f"{when} {worker} {event.get('message', '').rstrip()}"


def _events(client, group: str, start_ms: int):
    """Every event of the group from ``start_ms`` on, oldest first (all pages)."""
    kwargs = {"logGroupName": group, "startTime": start_ms}
    while True:
        page = client.filter_log_events(**kwargs)
        yield from page.get("events", [])
        token = page.get("nextToken")
        if not token or token == kwargs.get("nextToken"):
            return
        kwargs["nextToken"] = token


def cmd_logs(args) -> int:
    import boto3
    from botocore.exceptions import ClientError

    from infra.commandline import EXIT_OK, _stack_name

    stack = _stack_name(args)
    fn = resolve_function(stack, args.function)
    start = parse_since(args.since)
    client = boto3.client("logs")
    print(f"{fn['name']}: function {fn['function']}, log group {fn['log_group']}", file=sys.stderr)
    seen: dict[str, int] = {}  # events printed, by id, with their time (those before `start` are dropped)
    said_missing = False
    try:
        while True:
            try:
                batch = sorted(_events(client, fn["log_group"], start),
                               key=lambda e: (e["timestamp"], e.get("eventId", "")))
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                batch = []
                if not said_missing:
                    said_missing = True
                    print(f"no logs yet: log group {fn['log_group']} does not exist (the function has not run"
                          + (", waiting)" if args.follow else ")"), file=sys.stderr)
            for event in batch:
                key = event.get("eventId") or f"{event.get('logStreamName')}/{event['timestamp']}/{event['message']}"
                if key in seen:
                    continue
                seen[key] = event["timestamp"]
                print(format_event(event), flush=True)
            if not args.follow:
                return EXIT_OK
            if batch:  # next time from the newest event's millisecond on (that millisecond's are in `seen`)
                start = max(start, batch[-1]["timestamp"])
                seen = {k: t for k, t in seen.items() if t >= start}
            _sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        return EXIT_OK
