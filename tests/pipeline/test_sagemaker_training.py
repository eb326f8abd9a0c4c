"""compute.type sagemaker end to end on the local cloud, from the synthesized template: an upload of
Palmer penguins trains in a SageMaker training job (createTrainingJob.sync; the local cloud runs the
bundle's functions/pipeline/trainjob.py in a worker with the job role's credentials), validates and is
promoted, its lineage naming the job; a dataset that fails ends the version `failed` with the job's
short reason, and production stays where it was."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests import realdata
from tests.pipeline.conftest import Run, events_of, started_cloud

pytestmark = pytest.mark.slow

MODELS = {
    "penguins-sm": {"target": "species", "estimator": "sklearn.linear_model.LogisticRegression",
                    "params": {"max_iter": 1000}, "metric": "accuracy", "min_score": 0.8,
                    "compute": {"type": "sagemaker", "instance_type": "ml.m5.large", "max_runtime": "30m"}},
    "penguins-fn": {"target": "species", "estimator": "sklearn.linear_model.LogisticRegression",
                    "params": {"max_iter": 1000}, "metric": "accuracy", "min_score": 0.8},
}
CONFIG = {"stack_name": "Shipyard", "api": {"auth": "iam"}, "models": MODELS}


def sagemaker_assembly(outdir: Path, config: dict = CONFIG) -> Path:
    """The stack with these models as `cdk synth` builds it (no layers, no wheelhouse), short retries."""
    from aws_cdk import App, Duration

    from infra.config import load_config
    from infra.stack import ShipyardStack, read_cdk_json_context

    context = {k: v for k, v in read_cdk_json_context().items() if k != "shipyard"}
    app = App(context=context, outdir=str(outdir), analytics_reporting=False)
    ShipyardStack(app, config.get("stack_name", "Shipyard"), config=load_config(config), build_layers=False,
                  pipeline_options={"retry_interval": Duration.seconds(1), "retry_backoff_rate": 1.0,
                                    "retry_attempts": 2})
    return Path(app.synth().directory)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with started_cloud(sagemaker_assembly(tmp_path_factory.mktemp("cdk.out.sagemaker"))) as c:
        yield c


@pytest.fixture(scope="module")
def registry(cloud):
    from functions.core.registry import Registry

    return Registry(cloud.outputs["RegistryTableName"], client=cloud.client("dynamodb"), known_models=list(MODELS),
                    audit_table=cloud.outputs["AuditTableName"])


def _explain(cloud, execution: dict) -> str:
    """The failure events of an execution's history, for an assertion's message."""
    history = cloud.client("stepfunctions").get_execution_history(executionArn=execution["executionArn"])["events"]
    return json.dumps([e for e in history if "Failed" in e["type"] or "Aborted" in e["type"]], default=str)[:4000]


def _version(registry, model: str, upload: Run) -> dict:
    [rec] = [v for v in registry.list_versions(model)
             if (v.get("lineage") or {}).get("dataset", {}).get("version_id") == upload.version_id
             or v.get("dataset", {}).get("version_id") == upload.version_id]
    return rec


def test_an_upload_trains_in_a_sagemaker_job_validates_and_is_promoted(cloud, registry):
    from infra.trainjob import job_name_prefix

    upload = Run(cloud, "penguins-sm", realdata.penguins(), "penguins.csv")
    execution = upload.execution()
    assert execution["status"] == "SUCCEEDED", _explain(cloud, execution)
    output = json.loads(execution["output"])
    job_name = output["run"]["training_job_name"]
    assert output["train"] == {"training_job_name": job_name, "status": "Completed"}
    assert output["validation"]["promote"] is True and output["outcome"]["promoted"] is True

    rec = _version(registry, "penguins-sm", upload)
    assert rec["status"] == "production" and registry.get_alias("penguins-sm") == int(rec["version"])
    lineage = rec["lineage"]
    assert lineage["compute"] == {"type": "sagemaker", "training_job_name": job_name, "instance_type": "ml.m5.large"}
    assert lineage["execution_arn"] == execution["executionArn"]
    assert lineage["dataset"]["sha256"] == hashlib.sha256(realdata.penguins()).hexdigest()
    assert lineage["dataset"]["rows"] == 344 and rec["metrics"]["parity"]["passed"] is True
    assert rec["metrics"]["accuracy"] >= 0.9
    # the job SageMaker (here: the local cloud) ran, under the stack's prefix, on the run's instance type
    job = cloud.client("sagemaker").describe_training_job(TrainingJobName=job_name)
    assert job["TrainingJobStatus"] == "Completed" and job["ResourceConfig"]["InstanceType"] == "ml.m5.large"
    assert job["ResourceConfig"]["VolumeSizeInGB"] == 30 and job["StoppingCondition"]["MaxRuntimeInSeconds"] == 1800
    assert job_name.startswith(job_name_prefix("Shipyard") + f"penguins-sm-v{rec['version']}-")
    # the artifact it registered is what serving reads: sha256 of the exact object version
    art = lineage["artifacts"]["model.onnx"]
    body = cloud.client("s3").get_object(Bucket=cloud.outputs["ArtifactBucketName"], Key=art["key"],
                                         VersionId=art["version_id"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == rec["artifact_sha256"]
    promoted = [e for e in events_of(cloud, "Model Promoted") if e["detail"]["model"] == "penguins-sm"]
    assert [e["detail"]["version"] for e in promoted] == [int(rec["version"])]


def test_a_failing_dataset_ends_the_version_failed_with_the_jobs_short_reason(cloud, registry):
    before = registry.get_alias("penguins-sm")
    rows = realdata.penguins().decode().splitlines()[:4]  # the header and 3 rows
    upload = Run(cloud, "penguins-sm", ("\n".join(rows) + "\n").encode(), "tiny.csv")
    execution = upload.execution()
    assert execution["status"] == "FAILED" and execution["error"] == "PipelineFailed"
    rec = _version(registry, "penguins-sm", upload)
    assert rec["status"] == "failed"
    assert rec["reason"].startswith("DatasetError: ") and "3" in rec["reason"], rec["reason"]
    assert len(rec["reason"]) < 1100 and execution["cause"] == rec["reason"]
    jobs = cloud.client("sagemaker").list_training_jobs(NameContains=f"penguins-sm-v{rec['version']}-")
    assert [j["TrainingJobStatus"] for j in jobs["TrainingJobSummaries"]] == ["Failed"]
    # production and its alias did not move
    assert registry.get_alias("penguins-sm") == before
    assert registry.get_version("penguins-sm", before)["status"] == "production"
    failed = [e for e in events_of(cloud, "Pipeline Failed") if e["detail"]["version"] == int(rec["version"])]
    assert failed and failed[0]["detail"]["reason"] == rec["reason"]


def test_a_lambda_model_of_the_same_stack_still_trains_on_lambda(cloud, registry):
    upload = Run(cloud, "penguins-fn", realdata.penguins(), "penguins.csv")
    execution = upload.execution()
    assert execution["status"] == "SUCCEEDED", _explain(cloud, execution)
    output = json.loads(execution["output"])
    assert "training_job_name" not in output["run"] and output["train"]["rows"] == 344
    rec = _version(registry, "penguins-fn", upload)
    assert rec["status"] == "production" and "compute" not in rec["lineage"]


def _locked_versions() -> dict[str, str]:
    from layers.builder import parse_requirements, requirements_file

    return {r.name: r.version for r in parse_requirements(requirements_file("training").read_text())}


def test_the_bundle_with_its_wheelhouse_trains_on_cpython_312_with_the_locked_versions(cloud, registry, tmp_path):
    """What the job does in the scikit-learn py312 image, short of the image: the real bundle (with the
    wheelhouse of layers/training.txt, x86_64 CPython 3.12 wheels) extracted as the toolkit does, its
    entry script run by CPython 3.12 with only pip and boto3 (the image's) besides: it installs the
    wheelhouse (hash-checked, offline), trains, and records the lock's versions in lineage."""
    from functions.pipeline import steps
    from infra.trainjob import build_wheelhouse, bundle_bytes, job_name_prefix
    from layers.builder import LayerBuildError
    from tests.unit.test_layers import _lambda_like_path, python312_or_skip

    python = python312_or_skip()
    try:
        house = build_wheelhouse()
    except LayerBuildError as err:  # pip download needs the package index once; cached afterwards
        pytest.skip(f"the wheelhouse cannot be built here: {str(err)[:300]}")
    code = tmp_path / "code"
    with tarfile.open(fileobj=io.BytesIO(bundle_bytes(wheelhouse=house)), mode="r:gz") as tar:
        tar.extractall(code, filter="data")
    assert (code / "wheelhouse" / "training.txt").is_file()

    # A key no upload rule matches, so no execution starts: this test plays Allocate and the job itself.
    bucket = cloud.outputs["DataBucketName"]
    key = "datasets/penguins-sm/wheelhouse-check.csv.txt"
    version_id = cloud.client("s3").put_object(Bucket=bucket, Key=key, Body=realdata.penguins())["VersionId"]
    execution_arn = "arn:aws:states:us-east-1:123456789012:execution:manual:wheelhouse-check"
    spec = {"target": "species", "estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 1000},
            "metric": "accuracy", "compute": MODELS["penguins-sm"]["compute"] | {"type": "sagemaker"}}
    event = {"model": "penguins-sm", "spec": spec,
             "dataset": {"bucket": bucket, "key": key, "version_id": version_id}}
    os.environ["TRAINING_JOB_PREFIX"] = job_name_prefix("Shipyard")
    try:
        run = steps.allocate(event, registry, execution_arn=execution_arn)
    finally:
        os.environ.pop("TRAINING_JOB_PREFIX")
    hps = {"model": "penguins-sm", "version": str(run["version"]), "execution_arn": execution_arn,
           "training_job_name": run["training_job_name"], "instance_type": "ml.m5.large",
           "spec": json.dumps(spec), "dataset": json.dumps(event["dataset"])}
    env = {**cloud.environment(), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "OPENBLAS_NUM_THREADS": "1", "POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1",
           "PYTHONPATH": str(_lambda_like_path(tmp_path)),  # boto3 & co.: the image has them, the lock leaves them out
           "SM_HPS": json.dumps(hps), "SM_OUTPUT_DIR": str(tmp_path / "output"),
           "REGISTRY_TABLE": cloud.outputs["RegistryTableName"], "AUDIT_TABLE": cloud.outputs["AuditTableName"],
           "ARTIFACT_BUCKET": cloud.outputs["ArtifactBucketName"], "SHIPYARD_MODELS": '["penguins-sm"]',
           "MIN_ROWS": "20", "CODE_VERSION": "bundle"}
    done = subprocess.run([python, "functions/pipeline/trainjob.py"], cwd=code, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "installed the wheelhouse into" in done.stdout

    rec = registry.get_version("penguins-sm", run["version"])
    assert rec["status"] == "candidate" and rec["metrics"]["parity"]["passed"] is True
    libraries = rec["lineage"]["libraries"]
    locked = _locked_versions()
    assert libraries["python"].startswith("3.12.")
    for name in ("numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime"):
        assert libraries[name] == locked[name], (name, libraries, locked[name])
    assert rec["lineage"]["compute"]["training_job_name"] == run["training_job_name"]


def test_shipyard_train_wait_and_lineage_show_the_training_job(cloud, registry, monkeypatch, tmp_path, capsys):
    """By hand: `shipyard train` builds the input from cdk.json (the model's compute included), `--wait`
    follows the job state, `shipyard lineage` names the job."""
    from infra import cli

    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"shipyard": CONFIG}}))
    monkeypatch.chdir(tmp_path)
    for k, v in cloud.environment().items():
        monkeypatch.setenv(k, v)
    bucket = cloud.outputs["DataBucketName"]
    key = "datasets/penguins-sm/penguins.csv"  # uploaded by the first test: trained again with --force
    status = cli.main(["train", "penguins-sm", "--dataset", f"s3://{bucket}/{key}", "--force", "--wait"])
    captured = capsys.readouterr()
    arn, verdict = captured.out.splitlines()
    assert status == 0 and verdict.startswith("penguins-sm v") and " promoted: " in verdict, captured
    [mine] = [v for v in registry.list_versions("penguins-sm") if v.get("execution_arn") == arn]
    job_name = mine["lineage"]["compute"]["training_job_name"]
    assert "TrainOnSageMaker done" in captured.err and f": training job {job_name} completed" in captured.err
    assert cli.main(["lineage", "penguins-sm", str(mine["version"])]) == 0
    assert f"trained by SageMaker training job {job_name} (ml.m5.large)" in capsys.readouterr().out
