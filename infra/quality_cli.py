"""``shipyard quality check MODEL [--json]``: run a model quality check now (docs/quality.md).

Invokes the stack's quality function (``<stack>-quality``) as ``shipyard drift check`` invokes the drift
function: the same code, report, registry item, metrics, event and alarm as the schedule. Prints the
verdict, per-version scores and labelled counts, coverage, the label counts and the report's key.
Also ``with_labels_sources``: what ``shipyard lineage`` prints for a dataset made of labelled traffic.
"""
from __future__ import annotations

import json
import os
from typing import Any

from infra.commandline import EXIT_OK, _stack_name, _table, run_check

MALFORMED_SHOWN = 3  # problems with the label files printed (the JSON report keeps more)


def add_parser(sub) -> None:
    quality = sub.add_parser("quality", help="model quality on labelled live traffic").add_subparsers(
        dest="quality_command", required=True)
    p = quality.add_parser("check", help="run a quality check now (labels joined with captured predictions)")
    p.add_argument("model")
    p.add_argument("--function", help="quality function name (default: SHIPYARD_QUALITY_FUNCTION, else "
                                      "<stack>-quality)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=cmd_quality_check)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def format_quality_report(report: dict) -> str:
    """A quality report as text: the verdict, one row per version, the label counts, the report's key."""
    model, version, metric = report.get("model"), report.get("version"), report.get("metric")
    head = f"model {model}" + (f" v{version}" if version is not None else "")
    cmp = "<" if report.get("higher_is_better", True) else ">"
    if report.get("skipped"):
        verdict = f"check skipped: {report.get('reason')}"
    elif report.get("degraded"):
        verdict = (f"QUALITY DEGRADED: {metric} {_num(report.get('score'))} {cmp} min_score "
                   f"{_num(report.get('min_score'))}")
    else:
        verdict = f"quality ok: {metric} {_num(report.get('score'))} (min_score {_num(report.get('min_score'))})"
    window = report.get("window") or {}
    lines = [f"{head}: {verdict}",
             f"window {window.get('start')} .. {window.get('end')}: {report.get('captured')} predictions captured, "
             f"coverage {_num(report.get('coverage'), 3)}, min_labels {report.get('min_labels')}"]
    rows = []
    for v, entry in sorted((report.get("versions") or {}).items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0):
        extra = ""
        if entry.get("residuals"):
            r = entry["residuals"]
            extra = f"mean {_num(r.get('mean'))} mae {_num(r.get('mae'))} p90 {_num(r.get('p90'))}"
        elif entry.get("confusion_matrix"):
            cm = entry["confusion_matrix"]
            extra = "confusion " + " ".join(f"{lab}:{row}" for lab, row in zip(cm["labels"], cm["matrix"]))
        if entry.get("error"):
            extra = (extra + " " if extra else "") + f"({entry['error']})"
        rows.append([f"v{v}" + (" (production)" if str(v) == str(version) else ""), entry.get("labelled"),
                     _num(entry.get("score")), extra])
    if rows:
        lines.append(_table(rows, ["version", "labelled", metric or "score", "details"]))
    labels = report.get("labels") or {}
    lines.append("labels: " + ", ".join(f"{k} {labels.get(k, 0)}" for k in
                                         ("files", "rows", "matched", "unmatched", "late", "malformed", "duplicates")))
    if labels.get("malformed_files"):
        lines.append("malformed files: " + ", ".join(labels["malformed_files"]))
    # what was wrong, not only where: the first few problems the check kept
    lines.extend(f"  {example}" for example in (labels.get("malformed_examples") or [])[:MALFORMED_SHOWN])
    if report.get("retrain"):
        lines.append(f"retrain: {report['retrain'].get('mode')} (on the Quality Degraded event)")
    lines.append(f"report: {report.get('report_uri') or report.get('report_key') or '-'}")
    return "\n".join(lines)


def cmd_quality_check(args) -> int:
    """Invoke the stack's quality function now."""
    from functions.quality import quality_function_name

    stack = _stack_name(args)
    function = args.function or os.environ.get("SHIPYARD_QUALITY_FUNCTION") or quality_function_name(stack)
    report = run_check(function, args.model, stack=stack, what="quality", expect="labels", not_found=(
        "give a model a 'quality' block in cdk.json and deploy (`cdk deploy`) or start it locally "
        "(`shipyard local up`), or name it with --function"))
    print(json.dumps(report, indent=2) if args.json else format_quality_report(report))
    return EXIT_OK


def with_labels_sources(dataset: dict, s3=None) -> str | None:
    """For a dataset made of labelled traffic (``…-with-labels.csv``): one line naming its sources, from
    the object's metadata (docs/quality.md, "Retraining"); None for any other dataset or when unreadable."""
    from functions.quality import WITH_LABELS_SUFFIX

    if not str(dataset.get("key") or "").endswith(WITH_LABELS_SUFFIX):
        return None
    kwargs = {"Bucket": dataset.get("bucket"), "Key": dataset.get("key")}
    if dataset.get("version_id") and dataset["version_id"] != "null":
        kwargs["VersionId"] = dataset["version_id"]
    try:
        if s3 is None:
            import boto3

            s3 = boto3.client("s3")
        meta = s3.head_object(**kwargs).get("Metadata") or {}
    except Exception:  # noqa: BLE001 - lineage still prints the rest
        return None
    return (f"base dataset {meta.get('base-dataset-key', '?')} (version {meta.get('base-dataset-version-id', '?')}) "
            f"+ {meta.get('labelled-rows', '?')} labelled predictions from {meta.get('label-files', '?')}")
