"""One synthesis of the app per test session (default cdk.json config), shared by the infra tests.

``build_layers=False``: the dependency layers are used if built, else empty placeholders, so the
infra tests never run the layer builder (pip) and stay fast.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.stack import ShipyardStack, build_app, read_cdk_json_context


@dataclass
class Synth:
    stack: ShipyardStack
    template: "object"  # aws_cdk.assertions.Template
    template_dict: dict
    outdir: Path
    nag: list[dict]  # unacknowledged AwsSolutions findings (errors and warnings)
    report: dict  # validation-report.json written by the synth
    seconds: float

    def resources(self, type_: str) -> dict[str, dict]:
        return {k: v for k, v in self.template_dict["Resources"].items() if v["Type"] == type_}


def synthesize(outdir: Path, config: dict | None = None) -> Synth:
    from aws_cdk.assertions import Template

    from infra.nag import nag_findings

    started = time.perf_counter()
    app, stack = build_app(config, outdir=outdir, build_layers=False)
    assembly = app.synth()
    seconds = time.perf_counter() - started
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
        seconds=seconds,
    )


@pytest.fixture(scope="session")
def default_config() -> dict:
    return read_cdk_json_context()["shipyard"]


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Synth:
    """The app as ``cdk synth`` builds it from cdk.json."""
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def synth_api_key(tmp_path_factory, default_config) -> Synth:
    """The one extra synthesis: api.auth = api_key, a regression model, x86_64, alarm e-mail."""
    config = json.loads(json.dumps(default_config))
    config["api"] = {"auth": "api_key", "rate_limit": 10, "burst_limit": 20}
    config["architecture"] = "x86_64"
    config["alarm_email"] = "ml-team@example.com"
    config["models"]["house-prices"] = {"target": "price", "task": "regression"}
    return synthesize(tmp_path_factory.mktemp("cdk.out.api_key"), config)
