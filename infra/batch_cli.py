"""``shipyard batch MODEL FILE.csv|s3://bucket/key [--version N] [--wait] [--timeout S]`` (docs/batch.md).

A local file is uploaded to ``batch/<model>/<name>`` in the data bucket, an ``s3://`` object outside
that folder is copied there: the upload rule starts the run, as for any upload. An object already
under ``batch/<model>/`` is started by hand (StartExecution, the rule's input). ``--version N`` pins
a version: the object carries it as ``x-amz-meta-shipyard-version``, which Prepare reads. Prints
the run and where its output will be; ``--wait`` follows it (progress on stderr) and prints the
summary. Exit status: 0 scored, 1 failed, 5 still running at ``--timeout``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

from functions.core.layout import BATCH_PREFIX, PREDICTIONS_PREFIX
from infra.commandline import (
    EXIT_ERROR,
    EXIT_OK,
    CliError,
    _output,
    _project_config,
    _stack_name,
    stack_outputs,
    unknown_model,
)

EXIT_TIMEOUT = 5
VERSION_METADATA = "shipyard-version"  # functions/batch/steps.py reads it
FIND_TIMEOUT = 120.0  # seconds to wait for the upload rule to start the run


def _sleep(seconds: float) -> None:  # a seam for tests
    time.sleep(seconds)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket or not key or key.endswith("/"):
        raise CliError(f"expected s3://bucket/key of a CSV object, got {uri!r}")
    return bucket, key


def _find_run(sfn, arn: str, version_id: str, started_after: float, timeout: float) -> dict:
    """The execution the upload rule started for this object version."""
    deadline = time.time() + timeout
    while True:
        for e in sfn.list_executions(stateMachineArn=arn, maxResults=50)["executions"]:
            if e["startDate"].timestamp() < started_after - 5:
                break  # newest first: older ones cannot be this upload's
            d = sfn.describe_execution(executionArn=e["executionArn"])
            if (json.loads(d.get("input") or "{}").get("object") or {}).get("version_id") == version_id:
                return d
        if time.time() > deadline:
            raise CliError(f"no batch run started for the upload within {timeout:g} s: is the upload rule of "
                           "this model deployed (cdk deploy after adding the model)? The object is in place; "
                           "its run may still start")
        _sleep(1.0)


def _follow(sfn, s3, execution_arn: str, bucket: str, prefix: str, timeout: float | None) -> dict:
    """Poll until the run ends; output parts written so far on stderr."""
    deadline = None if timeout is None else time.time() + timeout
    seen = -1

    def parts() -> int:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "part-")
        return sum(page.get("KeyCount", 0) for page in pages)

    while True:
        d = sfn.describe_execution(executionArn=execution_arn)
        if d["status"] != "RUNNING":  # the last word on the parts, however fast the run was
            n = parts()
            print(f"{d['status'].lower()}: {n} part file{'s' if n != 1 else ''} written", file=sys.stderr)
            return d
        n = parts()
        if n != seen:
            print(f"running: {n} part file{'s' if n != 1 else ''} written", file=sys.stderr)
            seen = n
        if deadline is not None and time.time() > deadline:
            return d
        _sleep(1.0)


def cmd_batch(args) -> int:
    import boto3
    from botocore.exceptions import ClientError

    known = list((_project_config(args).get("models") or {}).keys())
    if known and args.model not in known:
        raise unknown_model(args.model, known)
    stack = _stack_name(args)
    outputs = stack_outputs(stack)
    arn = _output(outputs, "BatchStateMachineArn", stack)
    data = _output(outputs, "DataBucketName", stack)
    s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
    folder = f"{BATCH_PREFIX}{args.model}/"
    metadata = {VERSION_METADATA: str(args.version)} if args.version is not None else {}
    started = time.time()
    try:
        if args.file.startswith("s3://"):
            bucket, key = parse_s3_uri(args.file)
            if bucket == data and key.startswith(folder):
                # Already in place (its upload started a run then): start one by hand, the rule's input.
                head = s3.head_object(Bucket=bucket, Key=key)
                name = f"cli-{args.model}-{uuid.uuid4().hex[:12]}"
                doc = {"model": args.model, "version": "" if args.version is None else str(args.version),
                       "object": {"bucket": bucket, "key": key, "version_id": head.get("VersionId"),
                                  "size": head["ContentLength"]}, "trigger": {"source": "cli"}}
                execution = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(doc))
                run = sfn.describe_execution(executionArn=execution["executionArn"])
            else:
                target = folder + Path(key).name
                copied = s3.copy_object(Bucket=data, Key=target, CopySource={"Bucket": bucket, "Key": key},
                                        Metadata=metadata, MetadataDirective="REPLACE", ContentType="text/csv")
                run = _find_run(sfn, arn, copied.get("VersionId"), started, args.find_timeout)
        else:
            path = Path(args.file)
            if not path.name.endswith(".csv"):
                raise CliError(f"{path}: expected a .csv file (Step Functions reads the batch input as CSV)")
            if not path.is_file():
                raise CliError(f"{path}: no such file")
            with path.open("rb") as fh:
                put = s3.put_object(Bucket=data, Key=folder + path.name, Body=fh, Metadata=metadata,
                                    ContentType="text/csv")
            run = _find_run(sfn, arn, put.get("VersionId"), started, args.find_timeout)
    except ClientError as err:
        raise CliError(f"cannot put the file in place: {err.response['Error'].get('Message') or err}") from err
    name = run["name"]
    prefix = f"{PREDICTIONS_PREFIX}{args.model}/{name}/"
    print(f"run {name}")
    print(f"output s3://{data}/{prefix} (summary: s3://{data}/{prefix}summary.json)")
    print(f"execution {run['executionArn']}", file=sys.stderr)
    if not args.wait:
        return EXIT_OK
    final = _follow(sfn, s3, run["executionArn"], data, prefix, args.timeout)
    if final["status"] == "RUNNING":
        print(f"still running after {args.timeout:g} s; the run goes on", file=sys.stderr)
        return EXIT_TIMEOUT
    if final["status"] != "SUCCEEDED":
        print(f"batch run {name} {final['status'].lower()}: {final.get('cause') or final.get('error') or ''}",
              file=sys.stderr)
        return EXIT_ERROR
    summary = json.loads(s3.get_object(Bucket=data, Key=prefix + "summary.json")["Body"].read())
    print(json.dumps({k: summary.get(k) for k in ("status", "version", "rows", "scored", "refused", "failed_rows",
                                                  "errors_by_kind", "error_files")}, indent=1))
    return EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("batch", help="a batch scoring run of a CSV; prints where the output is")
    p.add_argument("model")
    p.add_argument("file", help="a local .csv, or s3://bucket/key")
    p.add_argument("--version", type=int, help="score with this version (default: production)")
    p.add_argument("--wait", action="store_true", help="follow the run and print its summary")
    p.add_argument("--timeout", type=float, metavar="S", help="with --wait: give up after S seconds (exit 5)")
    p.add_argument("--find-timeout", type=float, default=FIND_TIMEOUT, help=argparse.SUPPRESS)
    p.set_defaults(run=cmd_batch)

