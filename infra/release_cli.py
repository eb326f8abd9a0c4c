"""``shipyard release status MODEL [--json]``: the running canary or shadow release of a model and
its numbers (docs/release.md): per version requests, predictions, errors, error rate, latency;
for a shadow release, the candidate's agreement with production (classification) or the
distribution of its differences (regression). Numbers come from CloudWatch
(``functions.core.releasestats.release_numbers``), the release from the registry; both through the
standard AWS environment, so the same command reads a deployed stack and the local cloud.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from infra.commandline import EXIT_OK, CliError, _project_config, _registry, _table, unknown_model

LOG_ENTRIES = 5


def add_parser(sub) -> None:
    release = sub.add_parser("release", help="progressive releases (canary, shadow)").add_subparsers(
        dest="release_command", required=True)
    p = release.add_parser("status", help="the running canary/shadow release of a model and its numbers")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="the release and its numbers as JSON")
    p.add_argument("--stack", help="stack name (default: SHIPYARD_STACK, cdk.json stack_name, Shipyard)")
    p.set_defaults(run=cmd_release_status)


def _num(v: Any, fmt: str = "{:.4g}") -> str:
    return "-" if v is None else fmt.format(v)


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _bake(v: Any) -> str:
    if v is None:
        return "-"
    s = int(v)
    return f"{s // 60} min" if s % 60 == 0 else f"{s} s"


def format_status(model: str, release: dict, numbers: dict, log: list[dict]) -> str:
    lines = []
    mode, cand, prod = release.get("mode"), release.get("version"), release.get("production")
    head = f"{model}: {mode} release {release.get('id')} of v{cand} against production v{prod}"
    if mode == "canary":
        head += f", {_num(release.get('percent'))}% of callers on v{cand}"
    lines.append(head)
    lines.append(f"started {release.get('started_at')}, bake {_bake(release.get('bake'))}; "
                 f"numbers from {numbers['start']} to {numbers['end']}")
    lines.append("")
    rows = []
    for role in ("production", "candidate"):
        n = numbers.get(role)
        if not n:
            continue
        lat = n["latency"]
        rows.append([f"v{n['version']}", role, n["requests"], n["predictions"], n["errors"], _pct(n["error_rate"]),
                     _ms(lat["p50"]), _ms(lat["p99"]), _ms(lat["mean"]), _ms(lat["max"])])
    lines.append(_table(rows, ["version", "role", "requests", "predictions", "errors", "error rate",
                               "p50", "p99", "mean", "max"]))
    s = numbers.get("shadow")
    if s is not None:
        lines.append("")
        lines.append(f"shadow v{s['version']} scored a copy of production's traffic: {s['samples']} instances in "
                     f"{s['requests']} requests, {s['errors']} failed")
        if s["agreement"] is not None:
            lines.append(f"  agreement with production: {_pct(s['agreement'])} of {s['agreement_samples']} instances")
        d = s["difference"]
        if d is not None:
            lines.append(f"  |shadow - production|: mean {_num(d['mean'])}, p50 {_num(d['p50'])}, "
                         f"p90 {_num(d['p90'])}, p99 {_num(d['p99'])}, max {_num(d['max'])} "
                         f"({d['samples']} instances)")
        if s["agreement"] is None and d is None:
            lines.append("  no shadow scoring recorded yet")
        lines.append(f"  added latency per request: p50 {_ms(s['latency_p50'])}, p99 {_ms(s['latency_p99'])}, "
                     f"mean {_ms(s['latency_mean'])}, max {_ms(s['latency_max'])}")
    served = [n for n in (numbers.get("production"), numbers.get("candidate")) if n and n["requests"]]
    if any(n["latency"]["p50"] is None and n["latency"]["mean"] is not None for n in served):
        lines.append("")
        lines.append("(p50/p99 '-': this CloudWatch answered no percentiles, e.g. the local cloud; "
                     "mean and max are exact)")
    lines += _log_lines(log)
    return "\n".join(lines)


def _log_lines(log: list[dict]) -> list[str]:
    if not log:
        return []
    out = ["", "release log (latest last):"]
    for e in log[-LOG_ENTRIES:]:
        who = e.get("actor") or "-"
        reason = f" — {e['reason']}" if e.get("reason") else ""
        version = f" v{e['version']}" if e.get("version") is not None else ""
        out.append(f"  {e.get('at')}  {e.get('kind')}{version} by {who}{reason}")
    return out


def cmd_release_status(args, *, cloudwatch: Any = None, now: datetime | None = None) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from functions.core.registry import ModelNotFound
    from functions.core.releasestats import release_numbers

    known = list((_project_config(args).get("models") or {}).keys())
    if known and args.model not in known:
        raise unknown_model(args.model, known)
    registry = _registry(args)
    try:
        model = registry.get_model(args.model)
    except ModelNotFound as err:
        raise CliError(str(err)) from None
    release = model.get("release")
    production = (model.get("aliases") or {}).get("production")
    log = registry.release_log(args.model)
    if not release:
        if args.json:
            print(json.dumps({"model": args.model, "production": production, "release": None,
                              "log": log[-LOG_ENTRIES:]}, indent=2, default=str))
            return EXIT_OK
        where = f"production is v{production}" if production is not None else "no production version yet"
        print(f"no release running for {args.model}; {where}")
        if log:
            print("\n".join(_log_lines(log)[1:]))
        return EXIT_OK
    if cloudwatch is None:
        import boto3

        cloudwatch = boto3.client("cloudwatch")
    try:
        numbers = release_numbers(cloudwatch, args.model, release, end=now or datetime.now(UTC))
    except (ClientError, BotoCoreError) as err:
        raise CliError(f"cannot read the release's metrics from CloudWatch ({err}); "
                       "the caller needs cloudwatch:GetMetricStatistics") from None
    if args.json:
        print(json.dumps({"model": args.model, "production": production, "release": release, "numbers": numbers,
                          "log": log[-LOG_ENTRIES:]}, indent=2, default=str))
        return EXIT_OK
    print(format_status(args.model, release, numbers, log))
    return EXIT_OK
