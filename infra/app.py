"""The CDK app of a Shipyard project: ``cdk.json`` → ``context.shipyard`` → ``ShipyardStack`` →
cdk-nag → synth.

A project's ``app.py`` (Shipyard's own, or the one ``shipyard init`` writes) calls `main`. It works
under the CDK CLI (``cdk synth``/``cdk deploy``, where ``-c`` context wins) and on its own
(``python app.py``, which reads ``cdk.json`` itself and writes ``cdk.out``). A bad configuration or
an unacknowledged cdk-nag error prints one line and exits non-zero.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _validation_failures(assembly_dir: str) -> list[str]:
    """Rule ids of failing validation plugins (cdk-nag) in the cloud assembly's report."""
    report = Path(assembly_dir) / "validation-report.json"
    if not report.exists():
        return []
    failures = []
    for plugin in json.loads(report.read_text()).get("pluginReports", []):
        if plugin.get("conclusion") == "failure":
            failures += [v.get("ruleName", "?") for v in plugin.get("violations", [])
                         if v.get("severity") in ("error", "fatal")]
    return failures


def main(project_dir: str | os.PathLike | None = None) -> int:
    """Synthesize the project in ``project_dir`` (its ``cdk.json``; default: the current directory
    under the CDK CLI, else Shipyard's own checkout); exit status as the CDK CLI expects."""
    from infra.config import ConfigError
    from infra.stack import build_app

    try:
        # Under the CLI, CDK_OUTDIR says where to write; on its own, cdk.out next to cdk.json.
        root = Path(project_dir).resolve() if project_dir is not None else Path.cwd()
        outdir = None if os.environ.get("CDK_OUTDIR") else root / "cdk.out"
        app, _stack = build_app(outdir=outdir, cdk_json=root / "cdk.json")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        assembly = app.synth()
    except RuntimeError as exc:  # jsii surfaces JavaScript errors (e.g. ValidationFailed) as this
        # The whole message (a budget failure names the function, its layers, sizes and the budget),
        # without the JavaScript stack that jsii appends.
        lines = [line for line in str(exc).strip().splitlines() if not line.strip().startswith("at ")]
        print("error: synth failed: " + ("\n".join(lines) or type(exc).__name__), file=sys.stderr)
        return 1
    failures = _validation_failures(assembly.directory)
    if failures:  # under the CDK CLI the report is printed but the app does not raise
        print(f"error: cdk-nag found {len(failures)} unacknowledged error(s): {', '.join(failures)} "
              f"(see {assembly.directory}/validation-report.json)", file=sys.stderr)
        return 1
    return 0
