"""`python app.py` as the CDK CLI runs it: synthesizes with the contract's outputs; a bad config is one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = {"ApiUrl", "DataBucketName", "ArtifactBucketName", "RegistryTableName", "AuditTableName", "PipelineArn",
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


def test_a_project_of_its_own_synthesizes_its_own_models_and_stack_name(tmp_path):
    """A user's project: their cdk.json (own stack name and models) next to the app, Shipyard installed."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text((ROOT / "app.py").read_text())
    (project / "cdk.json").write_text(json.dumps({"app": "python3 app.py", "context": {"shipyard": {
        "stack_name": "Houses", "models": {"houses": {"target": "price", "task": "regression"}}}}}))
    out = tmp_path / "out"
    env = dict(os.environ, CDK_OUTDIR=str(out), CDK_CONTEXT_JSON=json.dumps({"shipyard:build_layers": "false"}),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, "app.py"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    template = json.loads((out / "Houses.template.json").read_text())
    patterns = [json.dumps(r["Properties"].get("EventPattern", {})) for r in template["Resources"].values()
                if r["Type"] == "AWS::Events::Rule"]
    assert any("datasets/houses/" in p for p in patterns)
    assert not any("datasets/iris/" in p for p in patterns)
