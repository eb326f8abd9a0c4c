"""The SageMaker training job's entry script (functions/pipeline/trainjob.py) run directly, with the
SM_* variables the training toolkit sets, against moto: it trains real data into the registry like
the Train function, and a failure leaves `<Error>: <message>` in the failure file and exits 1.
Also the job's name (Allocate) and the reason MarkFailed makes of a failed job."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.realdata import penguins

ROOT = Path(__file__).resolve().parents[2]
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:Pipeline:run-1"
SPEC = {"target": "species", "task": "classification", "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 1000}, "metric": "accuracy", "min_score": 0.0, "max_regression": 0.0, "holdout": 0.2,
        "drift": {"threshold": 0.1, "window": 500},
        "compute": {"type": "sagemaker", "instance_type": "ml.m5.xlarge", "volume_gb": 30, "max_runtime": 3600}}


@pytest.fixture
def aws(monkeypatch, tmp_path):
    import boto3
    from moto import mock_aws

    from functions.core import clients
    from tests.support import create_artifact_bucket, create_registry_table

    monkeypatch.setattr(clients, "_cache", {})
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        create_registry_table(boto3.client("dynamodb", region_name="us-east-1"), "registry")
        create_artifact_bucket(s3, "artifacts")
        create_artifact_bucket(s3, "data")
        for key, value in {"REGISTRY_TABLE": "registry", "ARTIFACT_BUCKET": "artifacts",
                           "SHIPYARD_MODELS": '["penguins"]', "MIN_ROWS": "20", "CODE_VERSION": "abc123",
                           "SM_OUTPUT_DIR": str(tmp_path / "output")}.items():
            monkeypatch.setenv(key, value)
        yield s3


def _allocate(body: bytes, s3) -> tuple[dict, dict]:
    from functions.core import clients
    from functions.pipeline import steps

    version_id = s3.put_object(Bucket="data", Key="datasets/penguins/p.csv", Body=body)["VersionId"]
    dataset = {"bucket": "data", "key": "datasets/penguins/p.csv", "version_id": version_id, "size": len(body)}
    event = {"model": "penguins", "spec": SPEC, "dataset": dataset}
    run = steps.allocate(event, clients.registry(), execution_arn=EXECUTION)
    return event, run


def _hps(event: dict, run: dict) -> dict:
    """What the SageMaker state passes (infra/trainjob.py), as the toolkit puts it in SM_HPS."""
    return {"model": event["model"], "version": run["version"], "execution_arn": EXECUTION,
            "training_job_name": run["training_job_name"], "instance_type": "ml.m5.xlarge",
            "spec": json.dumps(event["spec"]), "dataset": json.dumps(event["dataset"]),
            "sagemaker_program": "functions/pipeline/trainjob.py"}


def test_the_job_trains_penguins_into_the_registry_with_the_job_in_lineage(aws, monkeypatch, capsys):
    from functions.core import clients
    from functions.pipeline import trainjob

    event, run = _allocate(penguins(), aws)
    assert run["training_job_name"].startswith("shipyard-penguins-v1-")
    monkeypatch.setenv("SM_HPS", json.dumps(_hps(event, run)))
    assert trainjob.main([]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["shipyard_train_result"]
    record = clients.registry().get_version("penguins", run["version"])
    assert record["status"] == "candidate" and result["artifact_sha256"] == record["artifact_sha256"]
    lineage = record["lineage"]
    assert lineage["compute"] == {"type": "sagemaker", "training_job_name": run["training_job_name"],
                                  "instance_type": "ml.m5.xlarge"}
    assert lineage["execution_arn"] == EXECUTION and lineage["code_version"] == "abc123"
    assert lineage["dataset"]["sha256"] == hashlib.sha256(penguins()).hexdigest()
    assert lineage["dataset"]["rows"] == 344  # Palmer penguins as shipped
    assert set(lineage["artifacts"]) == {"model.onnx", "holdout.json", "baseline.json", "metrics.json"}
    onnx = aws.get_object(Bucket="artifacts", Key=lineage["artifacts"]["model.onnx"]["key"],
                          VersionId=lineage["artifacts"]["model.onnx"]["version_id"])["Body"].read()
    assert hashlib.sha256(onnx).hexdigest() == record["artifact_sha256"]
    assert not (Path(os.environ["SM_OUTPUT_DIR"]) / "failure").exists()


def test_a_dataset_error_ends_the_job_with_its_reason_in_the_failure_file(aws, monkeypatch):
    from functions.core import clients
    from functions.pipeline import steps, trainjob

    rows = penguins().decode().splitlines()[:4]  # the header and 3 rows
    event, run = _allocate(("\n".join(rows) + "\n").encode(), aws)
    monkeypatch.setenv("SM_HPS", json.dumps(_hps(event, run)))
    assert trainjob.main([]) == 1
    failure = (Path(os.environ["SM_OUTPUT_DIR"]) / "failure").read_text()
    assert failure.startswith("DatasetError: ") and "3" in failure and len(failure) <= 1024
    assert clients.registry().get_version("penguins", run["version"])["status"] == "training"
    # What the `.sync` task's Cause holds (DescribeTrainingJob), as MarkFailed reads it.
    cause = {"TrainingJobName": run["training_job_name"], "TrainingJobStatus": "Failed",
             "FailureReason": f"AlgorithmError: {failure}, exit code: 1", "HyperParameters": {"spec": "{}"}}
    assert steps.failure_reason({"Error": "States.TaskFailed", "Cause": json.dumps(cause)}) == failure


@pytest.mark.parametrize("describe, reason", [
    ({"TrainingJobName": "j", "TrainingJobStatus": "Failed",
      "FailureReason": "AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage \"\""},
     "TrainingJobFailed: training job j ended Failed: AlgorithmError: ExecuteUserScriptError:"),
    ({"TrainingJobName": "j", "TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxRuntimeExceeded"},
     "TrainingJobFailed: training job j ended Stopped (MaxRuntimeExceeded) without a failure reason"),
    ({"TrainingJobName": "j", "TrainingJobStatus": "Failed",
      "FailureReason": "ClientError: ConvertError: cannot convert"}, "ConvertError: cannot convert"),
])
def test_mark_failed_reads_a_failed_job(describe, reason):
    from functions.pipeline import steps

    got = steps.failure_reason({"Error": "States.TaskFailed", "Cause": json.dumps(describe)})
    assert got.startswith(reason), got
    # a Lambda's error is read as before
    lam = {"errorType": "DatasetError", "errorMessage": "too few rows"}
    assert steps.failure_reason({"Error": "DatasetError", "Cause": json.dumps(lam)}) == "DatasetError: too few rows"


@pytest.mark.parametrize("model, version", [("penguins", 1), ("a_b", 12), ("m" * 32, 123456)])
def test_job_names_are_valid_unique_and_stable_for_a_retry(model, version):
    from functions.pipeline import steps

    prefix = "shipyard-1a2b3c-"
    name = steps.training_job_name(prefix, model, version, EXECUTION)
    assert len(name) <= 63 and steps.TRAINING_JOB_NAME.match(name) and name.startswith(prefix)
    assert f"-v{version}-" in name and "_" not in name
    assert steps.training_job_name(prefix, model, version, EXECUTION) == name
    assert steps.training_job_name(prefix, model, version, EXECUTION + "x") != name
    assert steps.training_job_name(prefix, model, version + 1, EXECUTION) != name


def test_lambda_runs_get_no_job_name(aws):
    from functions.core import clients
    from functions.pipeline import steps

    dataset = {"bucket": "data", "key": "datasets/penguins/q.csv", "version_id": "v9"}
    spec = {**SPEC, "compute": {"type": "lambda", "memory": 3008}}
    run = steps.allocate({"model": "penguins", "spec": spec, "dataset": dataset}, clients.registry(),
                         execution_arn=EXECUTION)
    assert "training_job_name" not in run


def _run_script(tmp_path: Path, hps: dict | None, root: Path = ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env["SM_OUTPUT_DIR"] = str(tmp_path / "out")
    if hps is not None:
        env["SM_HPS"] = json.dumps(hps)
    return subprocess.run([sys.executable, "functions/pipeline/trainjob.py"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_run_as_a_script_a_bad_input_exits_1_with_the_reason(tmp_path):
    """As the toolkit runs it: `python functions/pipeline/trainjob.py` from the bundle's root."""
    done = _run_script(tmp_path, {"model": "penguins"})
    assert done.returncode == 1, done.stderr
    failure = (tmp_path / "out" / "failure").read_text()
    assert failure.startswith("JobInputError: the training job lacks hyperparameters ['version', 'spec', 'dataset']")


def _wheel(tmp_path: Path, name: str = "shipyardprobe") -> Path:
    """A minimal pure-Python wheel, built by hand (PEP 427), so the test needs no index."""
    dist = tmp_path / "dist"
    dist.mkdir()
    path = dist / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    files = {f"{name}/__init__.py": "VALUE = 42\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{k},,\n" for k in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for k, v in files.items():
            z.writestr(k, v)
        z.writestr(f"{info}/RECORD", record)
    return path


def test_the_wheelhouse_installs_offline_hash_checked_and_comes_first(tmp_path):
    from functions.pipeline import trainjob

    wheel = _wheel(tmp_path)
    house = tmp_path / "bundle" / "wheelhouse"
    house.mkdir(parents=True)
    (house / wheel.name).write_bytes(wheel.read_bytes())
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (house / "training.txt").write_text(f"shipyardprobe==1.0 --hash=sha256:{digest}\n")
    target = trainjob.install_wheelhouse(tmp_path / "bundle", tmp_path / "site")
    try:
        assert target == tmp_path / "site" and sys.path[0] == str(target)
        import shipyardprobe  # noqa: PLC0415

        assert shipyardprobe.VALUE == 42
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("shipyardprobe", None)
    # A wheel whose bytes do not match the lock is refused, with pip's reason.
    (house / "training.txt").write_text(f"shipyardprobe==1.0 --hash=sha256:{'0' * 64}\n")
    with pytest.raises(RuntimeError, match="could not install the bundle's wheelhouse.*(?i:hash)"):
        trainjob.install_wheelhouse(tmp_path / "bundle", tmp_path / "site2")
    assert trainjob.install_wheelhouse(tmp_path / "nothing") is None


@pytest.mark.parametrize("name", ["null", "true", "nan", "1e3"])
def test_a_model_name_that_reads_as_json_stays_a_name(name):
    """The pipeline JSON-quotes the model (States.JsonToString); the toolkit decodes each value once."""
    from functions.pipeline import trainjob

    as_toolkit = {"model": json.loads(json.dumps(name)), "version": 3, "spec": {"target": "y"},
                  "dataset": {"bucket": "b", "key": "k"}}
    assert trainjob.job_event(trainjob.hyperparameters(environ={"SM_HPS": json.dumps(as_toolkit)}))["model"] == name
    # as --key value arguments, without the toolkit's decoding
    args = ["--model", json.dumps(name), "--version", "3", "--spec", '{"target": "y"}',
            "--dataset", '{"bucket": "b", "key": "k"}']
    assert trainjob.job_event(trainjob.hyperparameters(args, environ={}))["model"] == name
