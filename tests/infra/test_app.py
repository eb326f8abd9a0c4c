"""`python app.py` as the CDK CLI runs it: synthesizes with the contract's outputs; a bad config is one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = {"ApiUrl", "DataBucketName", "ArtifactBucketName", "RegistryTableName", "PipelineArn",
           "AlarmTopicArn", "DashboardName"}


def _run_app(tmp_path, context: dict):
    env = dict(os.environ, CDK_OUTDIR=str(tmp_path), CDK_CONTEXT_JSON=json.dumps(context),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_app_synthesizes_the_stack_with_every_contract_output(tmp_path):
    proc = _run_app(tmp_path, {"shipyard:build_layers": "false"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    template = json.loads((tmp_path / "Shipyard.template.json").read_text())
    assert OUTPUTS <= set(template["Outputs"])


def test_a_bad_config_fails_synth_with_one_line_naming_the_model_and_key(tmp_path):
    config = json.loads((ROOT / "cdk.json").read_text())["context"]["shipyard"]
    config["models"]["iris"]["metric"] = "rmse"  # a regression metric on a classifier
    proc = _run_app(tmp_path, {"shipyard": config, "shipyard:build_layers": "false"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "iris" in lines[0] and "metric" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
