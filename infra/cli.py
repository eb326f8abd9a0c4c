"""The `shipyard` command: registry views, alias moves and predictions against any Shipyard stack.

Every command honours the standard AWS environment (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL),
so the same command drives a deployed stack and the local cloud. The stack is found by name
(`--stack`, else `SHIPYARD_STACK`, else `stack_name` in ./cdk.json, else "Shipyard") and its
outputs say where the registry table and the API are.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infra.apiclient import ApiClientError
from infra.approval_cli import add_parsers as add_approval_parsers
from infra.batch_cli import add_parser as add_batch_parser
from infra.commandline import (  # noqa: F401 - CliError, EXIT_* and stack_outputs are this module's API too
    EXIT_ERROR,
    EXIT_OK,
    CliError,
    _output,
    _project_config,
    _read_project_config,
    _registry,
    _stack_name,
    _table,
    caller_arn,
    run_check,
    stack_outputs,
    unknown_model,
)
from infra.config import ARCHITECTURES, AUTH_MODES
from infra.localstart import LocalStartError, start_local_cloud
from infra.logs import cmd_logs
from infra.quality_cli import add_parser as add_quality_parser
from infra.quality_cli import with_labels_sources
from infra.release_cli import add_parser as add_release_parser
from infra.report_cli import add_parser as add_report_parser
from infra.runs import cmd_runs, cmd_wait


def _fmt_metrics(metrics: dict | None) -> str:
    if not metrics:
        return "-"
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return " ".join(f"{k}={v:.4g}" for k, v in sorted(flat.items())) or "-"


# --------------------------------------------------------------------------- registry commands


def cmd_models(args) -> int:
    registry = _registry(args)
    models = registry.list_models()
    if args.json:
        print(json.dumps({"models": models}, indent=2))
        return EXIT_OK
    if not models:
        print("no models configured or registered")
        return EXIT_OK
    rows = []
    for m in models:
        versions = registry.list_versions(m["name"])
        latest = versions[-1] if versions else None
        rows.append([m["name"], m["production"], len(versions),
                     latest and f"v{latest['version']} {latest['status']}"])
    print(_table(rows, ["model", "production", "versions", "latest"]))
    return EXIT_OK


def cmd_lineage(args) -> int:
    registry = _registry(args)
    model = registry.get_model(args.model)
    versions = registry.list_versions(args.model)
    history = registry.history(args.model)
    if args.version is not None:
        versions = [registry.get_version(args.model, args.version)]
        history = [e for e in history if args.version in (e.get("from_version"), e.get("to_version"))]
    if args.json:
        print(json.dumps({"model": model, "versions": versions, "history": history}, indent=2, default=str))
        return EXIT_OK
    print(f"model {args.model}: production = {model['aliases'].get('production', '-')}")
    for v in versions:
        ds = (v.get("lineage") or {}).get("dataset") or {}
        print(f"\nv{v['version']}  {v['status']}  created {v.get('created_at', '-')}")
        if ds:
            print(f"  dataset    s3://{ds.get('bucket')}/{ds.get('key')} (version {ds.get('version_id', '-')}, "
                  f"sha256 {str(ds.get('sha256', '-'))[:12]}…)")
            if sources := with_labels_sources(ds):
                print(f"  sources    {sources} (quality retraining)")
            dropped = ds.get("dropped") or {}
            if dropped.get("rows"):
                lines = ", ".join(map(str, dropped.get("lines") or []))
                more = ", …" if dropped["rows"] > len(dropped.get("lines") or []) else ""
                print(f"  rows       {ds.get('rows')} trained on; {dropped['rows']} without a target left out "
                      f"(line{'s' if dropped['rows'] > 1 else ''} {lines}{more})")
        if v.get("execution_arn"):
            print(f"  execution  {v['execution_arn']}")
        compute = (v.get("lineage") or {}).get("compute") or {}
        if compute.get("training_job_name"):
            print(f"  trained by SageMaker training job {compute['training_job_name']} "
                  f"({compute.get('instance_type', '-')})")
        if v.get("estimator"):
            print(f"  estimator  {v['estimator']} {json.dumps(v.get('params') or {})}")
        if v.get("artifact_key"):
            print(f"  artifact   {v['artifact_key']} (sha256 {str(v.get('artifact_sha256'))[:12]}…)")
        if v.get("metrics"):
            print(f"  metrics    {_fmt_metrics(v['metrics'])}")
        if v.get("reason"):
            print(f"  reason     {v['reason']}")
    print("\nproduction alias history:")
    if not history:
        print("  (no alias moves yet)")
    for e in history:
        print(f"  #{e['seq']} {e['at']}  v{e.get('from_version') or '-'} -> v{e['to_version']}  "
              f"by {e['actor']}: {e['reason']}")
    return EXIT_OK


def _print_move(model: str, event: dict) -> None:
    if not event.get("moved", True):
        print(f"{model}: v{event['to_version']} already serves production; nothing changed")
        return
    print(f"{model}: production v{event.get('from_version') or '-'} -> v{event['to_version']} "
          f"(event #{event['seq']}, {event.get('kind', 'promote')} by {event['actor']})")


def cmd_promote(args) -> int:
    registry = _registry(args)
    event = registry.promote(args.model, args.version, reason=args.reason or "promoted by hand", actor=caller_arn())
    _print_move(args.model, event)
    return EXIT_OK


def cmd_rollback(args) -> int:
    registry = _registry(args)
    event = registry.rollback(args.model, reason=args.reason or "rolled back by hand", actor=caller_arn(),
                              to=args.to)
    _print_move(args.model, event)
    return EXIT_OK


# --------------------------------------------------------------------------- train


def cmd_train(args) -> int:
    """Start a pipeline run by hand, with the input an upload's rule would give (docs/pipeline.md)."""
    import boto3
    from botocore.exceptions import ClientError

    from functions.pipeline.execution import (
        describe_dataset,
        execution_input,
        latest_dataset,
        parse_s3_uri,
        spec_document,
        start,
    )
    from infra.config import ConfigError, load_config

    try:
        config = load_config(_project_config(args))
    except ConfigError as err:
        raise CliError(str(err)) from err
    if args.model not in config.models:
        raise unknown_model(args.model, list(config.models))
    stack = _stack_name(args)
    outputs = stack_outputs(stack)
    arn = _output(outputs, "PipelineArn", stack)
    s3 = boto3.client("s3")
    try:
        if args.dataset:
            try:
                bucket, key = parse_s3_uri(args.dataset)
            except ValueError as err:
                raise CliError(str(err)) from err
            dataset = describe_dataset(s3, bucket, key)
        else:
            bucket = _output(outputs, "DataBucketName", stack)
            dataset = latest_dataset(s3, bucket, args.model)
            if dataset is None:
                raise CliError(f"no dataset under s3://{bucket}/datasets/{args.model}/; upload a CSV there "
                               "(that starts a run by itself) or pass --dataset s3://bucket/key")
    except ClientError as err:
        raise CliError(f"cannot read the dataset: {err.response['Error'].get('Message') or err}") from err
    doc = execution_input(args.model, spec_document(config.models[args.model]), dataset, force=args.force,
                          allow_schema_change=args.allow_schema_change,
                          trigger={"source": "cli", "actor": caller_arn()})
    sfn = boto3.client("stepfunctions")
    execution_arn = start(sfn, arn, doc, prefix="cli")
    print(execution_arn)
    print(f"dataset s3://{dataset['bucket']}/{dataset['key']} (version {dataset['version_id']})", file=sys.stderr)
    if not args.wait:
        return EXIT_OK
    from infra.runs import follow  # progress on stderr, the outcome on stdout, exit status by outcome

    return follow(sfn, execution_arn, args.model, _registry(args))


# --------------------------------------------------------------------------- predict


def _api(args):
    """The stack's API (``--api-url``, else SHIPYARD_API_URL, else the ApiUrl output) with the auth to call it."""
    from infra.predict import Api

    stack = _stack_name(args)
    api_url = args.api_url or os.environ.get("SHIPYARD_API_URL") or _output(stack_outputs(stack), "ApiUrl", stack)
    auth = args.auth or (_project_config(args).get("api") or {}).get("auth") or "iam"
    return Api(api_url, auth, args.api_key or os.environ.get("SHIPYARD_API_KEY"))


def cmd_predict(args) -> int:
    from infra.predict import PredictError, run_predict

    target = ((_project_config(args).get("models") or {}).get(args.model) or {}).get("target")
    try:
        return run_predict(args, _api(args), target)
    except PredictError as err:
        raise CliError(str(err)) from err


def cmd_evaluate(args) -> int:
    from infra.evaluate import run_evaluate
    from infra.predict import PredictError

    spec = (_project_config(args).get("models") or {}).get(args.model) or {}
    try:
        return run_evaluate(args, _api(args), spec)
    except PredictError as err:
        raise CliError(str(err)) from err


# --------------------------------------------------------------------------- a project of one's own


def cmd_init(args) -> int:
    from infra.project import ProjectError, create_project

    try:
        written = create_project(args.directory, force=args.force, stack_name=args.stack_name)
    except ProjectError as err:
        raise CliError(str(err)) from None
    root = Path(args.directory)
    for path in written:
        print(f"  wrote {path.relative_to(root)}")
    print(f"""
a Shipyard project in {root}: its models are in cdk.json. Next:
  cd {root}
  python3 -m venv .venv && .venv/bin/pip install -r requirements.txt
  .venv/bin/shipyard demo      # the whole loop locally
  .venv/bin/shipyard local up  # the stack locally, for the aws CLI, curl and shipyard""")
    return EXIT_OK


# --------------------------------------------------------------------------- local cloud


def cmd_local_clock(args) -> int:
    """GET or POST the local cloud's clock (localcloud.cloud.CLOCK_PATH on its aws: endpoint)."""
    import requests

    from infra.config import duration_seconds
    from localcloud.cloud import CLOCK_PATH

    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        raise CliError("the local clock belongs to `shipyard local up`: set AWS_ENDPOINT_URL to the aws: address it "
                       "printed (e.g. http://127.0.0.1:5000); a deployed stack runs on AWS's time")
    url = endpoint.rstrip("/") + CLOCK_PATH
    try:
        if args.advance is None:
            resp = requests.get(url, timeout=30)
        else:
            seconds = duration_seconds(args.advance)
            if seconds is None:
                raise CliError(f"--advance {args.advance!r}: expected seconds or a duration such as 90s, 30m, 2h, 1d")
            resp = requests.post(url, json={"advance": seconds}, timeout=60)
    except requests.RequestException as err:
        raise CliError(f"no local cloud answers at {endpoint} ({err.__class__.__name__}); is `shipyard local up` "
                       "running?") from None
    if resp.status_code != 200 or "json" not in resp.headers.get("Content-Type", ""):
        raise CliError(f"{endpoint} is not a Shipyard local cloud (HTTP {resp.status_code} for {CLOCK_PATH})")
    body = resp.json()
    ahead = body["offset_seconds"]
    print(f"local clock: {body['now']} ({ahead:g} s ahead of real time)")
    if body.get("fired"):
        print("schedules fired: " + ", ".join(body["fired"]))
    return 0


def cmd_local_up(args) -> int:
    import signal
    import threading

    cloud = start_local_cloud(args.aws_port, args.api_port, assembly=args.assembly, iam=args.iam == "on",
                              state_dir=args.state_dir)
    stop = threading.Event()
    # Ctrl-C and SIGTERM both stop the cloud (and save the state). SIGINT explicitly: a process started
    # with SIGINT ignored (a background job of a script, a test runner's worker) would otherwise never
    # stop on Ctrl-C, as Python leaves an inherited SIG_IGN in place.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        env = cloud.environment()
        print(f"started in {cloud.startup_seconds:.1f}s; point the AWS CLI, boto3 or shipyard at it with:",
              file=sys.stderr)
        for key in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY"):
            print(f"  export {key}={env[key]}", file=sys.stderr)
        for key, value in sorted(cloud.outputs.items()):
            print(f"  {key} = {value}", file=sys.stderr)
        print("IAM: " + ("enforced for the functions' roles; service deliveries checked against resource policies"
                         if args.iam == "on" else "off (everything runs with full rights)"), file=sys.stderr)
        print(f"state: kept in {args.state_dir} (names and data; saved on stop and every 30 s)" if args.state_dir
              else "state: none (a restart starts empty; keep it with --state-dir DIR)", file=sys.stderr)
        print(f"aws: {cloud.aws_url}")
        print(f"api: {cloud.api_url}")
        print("ready", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping…", file=sys.stderr)
        cloud.stop()
    return EXIT_OK


def cmd_demo(args) -> int:
    from infra.demo import main as demo

    return demo(args.aws_port, args.api_port)


# --------------------------------------------------------------------------- drift check


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_drift_report(report: dict) -> str:
    """A drift report as text: a verdict line, one row per feature (drifted first), the report's key."""
    model, version = report.get("model"), report.get("version")
    where = report.get("report_uri") or report.get("report_key") or "-"
    head = f"model {model}" + (f" v{version}" if version is not None else "")
    html = report.get("html_report_uri") or report.get("html_report_key")
    html_line = f"\nhtml report: {html}" if html else ""
    if report.get("skipped"):
        return f"{head}: check skipped: {report.get('reason')}\nreport: {where}{html_line}"
    features = report.get("features") or {}
    drifted = [n for n, f in features.items() if f.get("drifted")]
    verdict = "DRIFT DETECTED" if report.get("drift_detected") else "no drift"
    lines = [f"{head}: {verdict}: {len(drifted)} of {len(features)} features drifted "
             f"(share {_fmt(report.get('drifted_share'), 2)}, alarm at >= {_fmt(report.get('share'), 2)}), "
             f"{report.get('rows')} rows checked"]
    order = sorted(features, key=lambda n: (not features[n].get("drifted"),
                                            -(features[n].get("value") or 0.0) / (features[n].get("threshold") or 1.0)))
    rows = []
    for name in order:
        f = features[name]
        if f.get("type") == "string":
            detail = f"chi2 p={_fmt(f.get('chi2_p_value'), 3)} unseen={_fmt(f.get('unseen_share'), 3)}"
        else:
            detail = f"ks={_fmt(f.get('ks'))}"
        detail += f" psi={_fmt(f.get('psi'))} missing={_fmt(f.get('missing_rate'))}"
        if f.get("reason"):
            detail += f" ({f['reason']})"
        rows.append([name, f.get("type"), f.get("statistic"), _fmt(f.get("value")), _fmt(f.get("threshold")),
                     "DRIFTED" if f.get("drifted") else "ok", detail])
    lines.append(_table(rows, ["feature", "type", "statistic", "value", "threshold", "drift", "details"]))
    lines.append(f"report: {where}{html_line}")
    return "\n".join(lines)


def cmd_drift_check(args) -> int:
    """Invoke the stack's drift function now (same code, metrics, event and alarm as the schedule)."""
    from functions.drift import drift_function_name

    stack = _stack_name(args)
    function = args.function or os.environ.get("SHIPYARD_DRIFT_FUNCTION") or drift_function_name(stack)
    report = run_check(function, args.model, stack=stack, what="drift", expect="features", not_found=(
        "deploy the stack (`cdk deploy`), start it locally (`shipyard local up`), or name it with --function"))
    print(json.dumps(report, indent=2) if args.json else format_drift_report(report))
    return EXIT_OK


# --------------------------------------------------------------------------- other commands


def cmd_layers_build(args) -> int:
    from layers import builder

    # Default: the architecture the project's functions run on (cdk.json "architecture").
    arches = args.arch or [_project_config(args).get("architecture") or "arm64"]
    argv = ["build"]
    for arch in arches:
        argv += ["--arch", arch]
    for layer in args.layer or []:
        argv += ["--layer", layer]
    return builder.main(argv)


# --------------------------------------------------------------------------- parser


def _batch_size(text: str) -> int:
    from infra.predict import API_MAX_INSTANCES

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= n <= API_MAX_INSTANCES:
        raise argparse.ArgumentTypeError(f"expected 1 to {API_MAX_INSTANCES} (the API's limit per request), got {n}")
    return n


def _add_api_arguments(p: argparse.ArgumentParser) -> None:
    """How predict and evaluate reach the API, and how many rows go in one request."""
    p.add_argument("--api-url", help="API base URL (default: the stack's ApiUrl output)")
    p.add_argument("--auth", choices=AUTH_MODES, help="API auth (default: cdk.json api.auth)")
    p.add_argument("--api-key", help="API key when auth is api_key (default: SHIPYARD_API_KEY)")
    p.add_argument("--batch-size", type=_batch_size, default=1000, metavar="N",
                   help="rows per request (default and most: 1000, the API's limit)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shipyard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", help="CloudFormation stack name (default: SHIPYARD_STACK, cdk.json, 'Shipyard')")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("models", help="list models and what serves each")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("lineage", help="dataset → execution → version → alias moves")
    p.add_argument("model")
    p.add_argument("version", nargs="?", type=int)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_lineage)

    p = sub.add_parser("promote", help="point production at a version (audited)")
    p.add_argument("model")
    p.add_argument("version", type=int)
    p.add_argument("--reason", help="why (kept in the audit log)")
    p.set_defaults(run=cmd_promote)

    p = sub.add_parser("rollback", help="point production back at the version that served before (audited)")
    p.add_argument("model")
    p.add_argument("--to", type=int, metavar="VERSION",
                   help="roll back to this version (one that served before and was not rolled back from)")
    p.add_argument("--reason", help="why (kept in the audit log)")
    p.set_defaults(run=cmd_rollback)

    p = sub.add_parser("predict", help="predict with the served model from a CSV or JSON file")
    p.add_argument("model")
    p.add_argument("file", help="FILE.csv (header = feature names) or FILE.json")
    p.add_argument("--version", type=int, help="pin a version instead of production")
    _add_api_arguments(p)
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")
    p.add_argument("--id-column", metavar="NAME",
                   help="a column that names each row: not sent to the model, kept beside each prediction")
    p.add_argument("--ids-from", metavar="NAME",
                   help="as --id-column, and send its values as the inference ids (1 to 128 printable "
                        "characters, unique): answered, captured, joined with labels")
    p.add_argument("--output", "-o", metavar="FILE.csv",
                   help="write id, line, prediction, probability per class, version and inference_id to this CSV")
    p.set_defaults(run=cmd_predict)

    p = sub.add_parser("evaluate", help="score a labelled CSV with a served version: metric, confusion matrix "
                                        "or residuals")
    p.add_argument("model")
    p.add_argument("file", help="FILE.csv with the model's features and its target column")
    p.add_argument("--version", type=int, help="the version to evaluate (default: production)")
    _add_api_arguments(p)
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("train", help="start a pipeline run by hand")
    p.add_argument("model")
    p.add_argument("--dataset", help="s3://bucket/key of the CSV (default: the model's latest dataset)")
    p.add_argument("--force", action="store_true",
                   help="train even if this dataset version already started a run (it is deduplicated otherwise)")
    p.add_argument("--allow-schema-change", action="store_true",
                   help="let a candidate whose features differ from production's be promoted")
    p.add_argument("--wait", action="store_true", help="wait for the run to finish and print its outcome")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("runs", help="a model's pipeline runs, newest first")
    p.add_argument("model")
    p.add_argument("--limit", type=int, default=20, help="at most this many runs (default 20; 0: all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_runs)

    p = sub.add_parser("wait", help="follow a pipeline run to its end; the exit status says how it ended")
    p.add_argument("model")
    p.add_argument("--version", type=int, help="the run that made this version (default: the newest run, or the "
                                                "one the newest upload is starting)")
    p.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds (exit 5; the run goes on)")
    p.set_defaults(run=cmd_wait)

    add_batch_parser(sub)  # shipyard batch MODEL FILE (infra/batch_cli.py)
    add_approval_parsers(sub)  # shipyard approve|reject MODEL VERSION (infra/approval_cli.py)
    add_release_parser(sub)  # shipyard release status MODEL (infra/release_cli.py)
    add_quality_parser(sub)  # shipyard quality check MODEL (infra/quality_cli.py)

    p = sub.add_parser("logs", help="a function's CloudWatch Logs (train, validate, inference, … or a name)")
    p.add_argument("function", help="train, validate, allocate, record, inference, drift, retrain, … or a "
                                    "function name")
    p.add_argument("--since", default="10m", help="from this long ago (30s, 10m, 2h, 1d) or an ISO time (default 10m)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until Ctrl-C")
    p.set_defaults(run=cmd_logs)

    drift = sub.add_parser("drift", help="drift monitoring").add_subparsers(dest="drift_command", required=True)
    p = drift.add_parser("check", help="run a drift check now")
    p.add_argument("model")
    p.add_argument("--function", help="drift function name (default: SHIPYARD_DRIFT_FUNCTION, else <stack>-drift)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=cmd_drift_check)
    add_report_parser(sub)

    local = sub.add_parser("local", help="the local cloud").add_subparsers(dest="local_command", required=True)
    p = local.add_parser("up", help="run the synthesized stack locally")
    p.add_argument("--aws-port", type=int, default=5000)
    p.add_argument("--api-port", type=int, default=3000)
    p.add_argument("--assembly", help="use this synthesized cloud assembly (cdk.out) instead of synthesizing")
    p.add_argument("--iam", choices=("on", "off"), default="on",
                   help="on (default): each function calls as its own role, IAM and resource policies are "
                        "enforced as in AWS; off: everything runs with full rights")
    p.add_argument("--state-dir", metavar="DIR",
                   help="keep the cloud's names and data (objects and their versions, table items, executions, "
                        "queued messages, logs) in DIR across restarts; without it every start is empty")
    p.set_defaults(run=cmd_local_up)
    p = local.add_parser("clock", help="the local cloud's clock: show it, or move it on (Wait states, approval "
                                       "timeouts, canary bakes and schedules come due)")
    p.add_argument("--advance", metavar="DURATION", help="move the clock on by DURATION: seconds or 90s, 30m, 2h, 1d")
    p.set_defaults(run=cmd_local_clock)

    p = sub.add_parser("init", help="create a Shipyard project of your own (cdk.json, app.py, CI, sample data)")
    p.add_argument("directory", help="the project folder (created if missing)")
    p.add_argument("--force", action="store_true", help="overwrite the project's files if they exist")
    p.add_argument("--stack-name", help="the CloudFormation stack name (default: from the folder's name)")
    p.set_defaults(run=cmd_init)

    p = sub.add_parser("demo", help="the whole loop locally, end to end")
    p.add_argument("--aws-port", type=int, default=0, help="local AWS port (default: any free port)")
    p.add_argument("--api-port", type=int, default=0, help="local API port (default: any free port)")
    p.set_defaults(run=cmd_demo)

    layers = sub.add_parser("layers", help="Lambda dependency layers").add_subparsers(dest="layers_command",
                                                                                    required=True)
    p = layers.add_parser("build", help="build the dependency layers without Docker")
    p.add_argument("--arch", action="append", choices=ARCHITECTURES,
                   help="architecture (repeatable; default: cdk.json's architecture, arm64)")
    p.add_argument("--layer", action="append", choices=["inference", "training"], help="layer (repeatable)")
    p.set_defaults(run=cmd_layers_build)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    from functions.core.registry import RegistryError

    # botocore reads AWS_DEFAULT_REGION only; the AWS CLI v2 and SDKs also honour AWS_REGION.
    if os.environ.get("AWS_REGION") and not os.environ.get("AWS_DEFAULT_REGION"):
        os.environ["AWS_DEFAULT_REGION"] = os.environ["AWS_REGION"]
    try:
        return args.run(args)
    except (CliError, ApiClientError, LocalStartError, RegistryError) as err:
        print(f"shipyard: {err}", file=sys.stderr)
        return EXIT_ERROR
    except BotoCoreError as err:  # no region, no credentials, endpoint unreachable
        print(f"shipyard: {err} (set AWS_REGION and AWS_PROFILE, or AWS_ENDPOINT_URL for the local cloud)",
              file=sys.stderr)
        return EXIT_ERROR
    except ClientError as err:
        print(f"shipyard: AWS refused {err.operation_name}: {err.response['Error'].get('Message', err)}",
              file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
