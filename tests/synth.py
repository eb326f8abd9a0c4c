"""Synthesizing the app for tests: the stack, its template and cdk-nag's findings.

``build_layers=False``: the dependency layers are used if built, else empty placeholders, so
tests never run the layer builder (pip) and stay fast.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from infra.stack import ShipyardStack, build_app


@dataclass
class Synth:
    stack: ShipyardStack
    template: object  # aws_cdk.assertions.Template
    template_dict: dict
    outdir: Path
    nag: list[dict]  # unacknowledged AwsSolutions findings (errors and warnings)
    report: dict  # validation-report.json written by the synth

    def resources(self, type_: str) -> dict[str, dict]:
        return {k: v for k, v in self.template_dict["Resources"].items() if v["Type"] == type_}


def synthesize(outdir: Path, config: dict | None = None) -> Synth:
    from aws_cdk.assertions import Template

    from infra.nag import nag_findings

    app, stack = build_app(config, outdir=outdir, build_layers=False)
    assembly = app.synth()
    template_dict = json.loads((Path(assembly.directory) / stack.template_file).read_text())
    report_path = Path(assembly.directory) / "validation-report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return Synth(
        stack=stack,
        template=Template.from_json(template_dict),
        template_dict=template_dict,
        outdir=Path(assembly.directory),
        nag=nag_findings(app),
        report=report,
    )
