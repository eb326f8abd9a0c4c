"""``shipyard report MODEL [--open] [--output FILE]`` on moto (stack outputs stubbed)."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from functions.core.registry import Registry
from infra import report_cli
from infra.cli import main
from tests.support import create_artifact_bucket, create_registry_table


@pytest.fixture
def stack(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cdk.json").write_text('{"context": {"shipyard": {"stack_name": "S", "models": '
                                       '{"penguins": {"target": "species"}, "iris": {"target": "species"}}}}}')
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3")
        create_artifact_bucket(s3, "artifacts")
        create_registry_table(boto3.client("dynamodb"), "registry")
        monkeypatch.setattr(report_cli, "stack_outputs", lambda name: {"ArtifactBucketName": "artifacts",
                                                                       "RegistryTableName": "registry"})
        monkeypatch.setattr("infra.commandline.stack_outputs", lambda name: {"RegistryTableName": "registry"})
        opened = []
        monkeypatch.setattr(report_cli, "_open", lambda path: opened.append(path) or True)
        yield {"s3": s3, "opened": opened, "dir": tmp_path,
               "registry": Registry("registry", known_models=["penguins", "iris"])}


def test_report_prints_the_key_writes_a_local_copy_and_opens_it(stack, capsys):
    assert main(["report", "penguins", "--open"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("s3://artifacts/reports/penguins/") and out[0].endswith(".html")
    key = out[0][len("s3://artifacts/"):]
    local = stack["dir"] / "penguins-report.html"
    assert out[1] == "wrote penguins-report.html" and local.exists()
    assert local.read_bytes() == stack["s3"].get_object(Bucket="artifacts", Key=key)["Body"].read()
    assert "Shipyard report: penguins" in local.read_text() and "no drift check yet" in local.read_text()
    assert [p.name for p in stack["opened"]] == ["penguins-report.html"]


def test_output_file_and_no_open(stack, capsys):
    assert main(["report", "iris", "--output", "out/iris.html"]) == 1  # the folder does not exist
    assert "cannot be written to out/iris.html" in capsys.readouterr().err
    (stack["dir"] / "out").mkdir()
    assert main(["report", "iris", "--output", "out/iris.html"]) == 0
    assert (stack["dir"] / "out/iris.html").exists() and stack["opened"] == []


def test_unknown_model_says_did_you_mean(stack, capsys):
    assert main(["report", "pengiuns"]) == 1
    err = capsys.readouterr().err
    assert "model 'pengiuns' is not configured in cdk.json" in err and "did you mean 'penguins'?" in err
