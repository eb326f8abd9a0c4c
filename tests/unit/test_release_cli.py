"""shipyard release status MODEL (infra/release_cli.py) against moto's DynamoDB and CloudWatch."""
import argparse
import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from functions.core.registry import Registry
from infra import release_cli
from infra.cli import build_parser
from tests.support import create_registry_table


@pytest.fixture
def env(monkeypatch):
    with mock_aws():
        ddb = boto3.client("dynamodb")
        create_registry_table(ddb)
        reg = Registry("registry", client=ddb, known_models=["iris"])
        for _ in range(2):
            v = reg.allocate_version("iris", estimator="t", params={})["version"]
            reg.record_candidate("iris", v, artifact_key=f"models/iris/v{v}/model.onnx", artifact_sha256="0" * 64,
                                 schema={}, metrics={}, lineage={})
        reg.promote("iris", 1, reason="t", actor="tests")
        monkeypatch.setattr(release_cli, "_registry", lambda args: reg)
        monkeypatch.setattr(release_cli, "_project_config", lambda args: {"models": {"iris": {}}})
        yield reg, boto3.client("cloudwatch")


def args(*argv):
    return build_parser().parse_args(["release", "status", *argv])


def put(cw, metric, version, values):
    cw.put_metric_data(Namespace="Shipyard", MetricData=[{
        "MetricName": metric, "Values": values,
        "Dimensions": [{"Name": "Model", "Value": "iris"}, {"Name": "Version", "Value": str(version)}]}])


def test_registered_in_the_cli():
    a = args("iris", "--json")
    assert a.run is release_cli.cmd_release_status and a.model == "iris" and a.json


def test_no_release_says_what_production_is(env, capsys):
    assert release_cli.cmd_release_status(args("iris")) == 0
    assert capsys.readouterr().out.startswith("no release running for iris; production is v1")


def test_a_shadow_release_and_its_numbers(env, capsys):
    reg, cw = env
    reg.start_release("iris", 2, mode="shadow", release_id="rel-9", expected_production=1,
                      execution_arn="arn:x", bake=1800, actor="tests", reason="gate passed")
    put(cw, "VersionPredictions", 1, [10.0, 10.0])
    put(cw, "VersionLatency", 1, [3.0, 5.0])
    put(cw, "ShadowPredictions", 2, [10.0, 10.0])
    put(cw, "ShadowAgreement", 2, [1.0] * 15 + [0.0] * 5)
    put(cw, "ShadowLatency", 2, [1.0, 2.0])
    now = datetime.now(UTC) + timedelta(minutes=1)
    assert release_cli.cmd_release_status(args("iris"), cloudwatch=cw, now=now) == 0
    out = capsys.readouterr().out
    assert "iris: shadow release rel-9 of v2 against production v1" in out
    assert "bake 30 min" in out
    assert "agreement with production: 75.00% of 20 instances" in out
    assert "20 instances in 2 requests, 0 failed" in out
    row = next(line for line in out.splitlines() if line.startswith("v1"))
    assert row.split()[:6] == ["v1", "production", "2", "20", "0", "0.00%"] and "4.0 ms" in row
    assert "release_started v2 by tests — gate passed" in out
    assert release_cli.cmd_release_status(args("iris", "--json"), cloudwatch=cw, now=now) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["numbers"]["shadow"]["agreement"] == 0.75 and doc["release"]["id"] == "rel-9"


def test_an_unknown_model_is_refused(env):
    with pytest.raises(release_cli.CliError, match="iris"):
        release_cli.cmd_release_status(argparse.Namespace(model="irsi", json=False, stack=None))
