"""``shipyard report MODEL [--open] [--output FILE]`` (docs/reports.md).

Builds the model's HTML report now with :func:`functions.core.report.write_report` against the stack
(registry table and artifacts bucket from its outputs; the standard AWS environment, so a deployed
stack and the local cloud alike), prints where it was put (``s3://<artifacts>/reports/<model>/<ts>.html``),
writes a local copy (``./<model>-report.html`` or ``--output``) and, with ``--open``, opens that copy
in the browser.
"""
from __future__ import annotations

import webbrowser
from pathlib import Path

from infra.commandline import (
    EXIT_ERROR,
    EXIT_OK,
    CliError,
    _output,
    _project_config,
    _registry,
    _stack_name,
    stack_outputs,
    unknown_model,
)


def _open(path: Path) -> bool:  # a seam for tests
    return webbrowser.open(path.resolve().as_uri())


def cmd_report(args) -> int:
    import boto3

    from functions.core.report import write_report

    known = list((_project_config(args).get("models") or {}).keys())
    if known and args.model not in known:
        raise unknown_model(args.model, known)
    stack = _stack_name(args)
    bucket = _output(stack_outputs(stack), "ArtifactBucketName", stack)
    s3 = boto3.client("s3")
    key = write_report(s3, bucket, _registry(args), args.model)
    print(f"s3://{bucket}/{key}")
    out = Path(args.output) if args.output else Path(f"{args.model}-report.html")
    try:
        out.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except OSError as err:
        raise CliError(f"the report is at s3://{bucket}/{key} but cannot be written to {out}: {err}") from err
    print(f"wrote {out}")
    if args.open and not _open(out):
        print(f"no browser could be opened; open {out.resolve().as_uri()}")
        return EXIT_ERROR
    return EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="build a model's HTML report now (versions, drift, quality); --open shows it")
    p.add_argument("model")
    p.add_argument("--open", action="store_true", help="open the local copy in the browser")
    p.add_argument("--output", metavar="FILE", help="local copy (default: ./<model>-report.html)")
    p.set_defaults(run=cmd_report)
