"""Training-job overhead on the local cloud: the same model on the same data trained by the Train
Lambda and by a SageMaker training job (compute.type sagemaker), in one stack, in the same run.

Two models that differ only in ``compute`` are uploaded the same CSV (a new S3 version each round,
so each round trains); from each execution's history the Train state's time (Lambda: the ``Train``
task; job: ``TrainOnSageMaker``, CreateTrainingJob to the `.sync` result) and the whole execution's.
The ratio is job ÷ Lambda on the medians. What it measures locally: a fresh process per job (the
bundle downloaded and extracted, the interpreter and scikit-learn imported each time) against a warm
Lambda worker, plus the `.sync` polling. On AWS a job adds instance provisioning and the image pull
(minutes, docs/scale.md), which no local figure shows.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.pipeline import _csv, dataset

ROWS = 20_000
SPEC = {"target": "label", "estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500},
        "metric": "accuracy", "min_score": 0.0}
MODELS = {"bench-job": {**SPEC, "compute": {"type": "sagemaker", "instance_type": "ml.m5.xlarge"}},
          "bench-fn": {**SPEC, "compute": {"type": "lambda", "memory": 3008}}}


def _assembly(outdir: Path) -> Path:
    from aws_cdk import App

    from infra.config import load_config
    from infra.stack import ShipyardStack, read_cdk_json_context

    context = {k: v for k, v in read_cdk_json_context().items() if k != "shipyard"}
    app = App(context=context, outdir=str(outdir), analytics_reporting=False)
    ShipyardStack(app, "Shipyard", config=load_config({"models": MODELS}), build_layers=False)
    return Path(app.synth().directory)


def _state_seconds(history: list[dict], state: str) -> float | None:
    entered = exited = None
    for event in history:
        details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails") or {}
        if details.get("name") != state:
            continue
        if event["type"].endswith("StateEntered"):
            entered = event["timestamp"]
        elif event["type"].endswith("StateExited"):
            exited = event["timestamp"]
    return (exited - entered).total_seconds() if entered and exited else None


def _train_once(cloud, model: str, body: bytes, state: str) -> dict:
    s3, sfn = cloud.client("s3"), cloud.client("stepfunctions")
    version = s3.put_object(Bucket=cloud.outputs["DataBucketName"], Key=f"datasets/{model}/bench.csv",
                            Body=body)["VersionId"]
    arn = cloud.outputs["PipelineArn"]
    deadline = time.time() + 600
    while time.time() < deadline:
        cloud.wait_for_executions(arn, timeout=600)
        for e in sfn.list_executions(stateMachineArn=arn)["executions"]:
            d = sfn.describe_execution(executionArn=e["executionArn"])
            if json.loads(d["input"]).get("dataset", {}).get("version_id") == version and d["status"] != "RUNNING":
                if d["status"] != "SUCCEEDED":
                    raise RuntimeError(f"{model}: execution {d['status']}: {d.get('cause')}")
                history = sfn.get_execution_history(executionArn=d["executionArn"], maxResults=1000)["events"]
                return {"train_s": _state_seconds(history, state),
                        "execution_s": (d["stopDate"] - d["startDate"]).total_seconds()}
        time.sleep(0.2)
    raise TimeoutError(f"{model}: no finished execution for version {version}")


def run(*, rounds: int = 3, rows: int = ROWS, log=print) -> dict:
    from localcloud import LocalCloud, Template

    body = _csv(*dataset(rows))
    with tempfile.TemporaryDirectory(prefix="bench-trainjob-") as tmp:
        cloud = LocalCloud(Template.load(_assembly(Path(tmp) / "cdk.out")), aws_port=0, api_port=0, clock=False,
                           log=lambda line: None)
        cloud.start()
        try:
            samples: dict[str, list[dict]] = {"job": [], "lambda": []}
            for i in range(rounds + 1):  # round 0 warms the Lambda worker and the imports: not counted
                for kind, model, state in (("lambda", "bench-fn", "Train"), ("job", "bench-job", "TrainOnSageMaker")):
                    got = _train_once(cloud, model, body, state)
                    log(f"  round {i} {kind}: train {got['train_s']:.2f} s, execution {got['execution_s']:.2f} s")
                    if i:
                        samples[kind].append(got)
        finally:
            cloud.stop()

    def median(kind: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[kind])

    out = {"rows": rows, "csv_bytes": len(body), "rounds": rounds,
           "job_train_s": median("job", "train_s"), "lambda_train_s": median("lambda", "train_s"),
           "job_execution_s": median("job", "execution_s"), "lambda_execution_s": median("lambda", "execution_s"),
           "samples": samples}
    out["job_vs_lambda_train"] = round(out["job_train_s"] / out["lambda_train_s"], 2)
    out["job_vs_lambda_execution"] = round(out["job_execution_s"] / out["lambda_execution_s"], 2)
    out["job_overhead_s"] = round(out["job_train_s"] - out["lambda_train_s"], 2)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
