"""Batch scoring of a 1M-row CSV on the local cloud, end to end (docs/batch.md): upload to
``batch/<model>/`` → the rule → Prepare → the Distributed Map's ScoreBatch children → Summarize, timed
from the PutObject to the run's end, as rows per second.

The floor, measured in the same run on the same bytes: one process parsing the same CSV (the csv
module, numbers as float32 columns, missing values NaN) and running the same ONNX session (the
production model's bytes from the artifacts bucket, one thread, as ``OnnxModel.from_bytes``) over all
rows at once. The ratio is batch rows/s over floor rows/s (goal ≥ 0.5 on 2 cores). The model is
Palmer penguins' species with the configured default estimator, trained and promoted by the
pipeline; the rows are the penguins file resampled.
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import ratio

ROWS = 1_000_000
MODEL = "penguins"
STACK = "ShipyardBench"
CONFIG = {"stack_name": STACK, "api": {"auth": "iam"},
          "models": {MODEL: {"target": "species", "task": "classification"}}}


def batch_csv(rows: int, seed: int = 0) -> bytes:
    from tests import realdata

    reader = csv.reader(io.StringIO(realdata.penguins().decode()))
    header = next(reader)
    source = [",".join(r) for r in reader]  # penguins has no quoted cells
    rng = random.Random(seed)
    return ("\n".join([",".join(header), *rng.choices(source, k=rows)]) + "\n").encode()


def floor(data: bytes, onnx: bytes, schema: dict) -> dict:
    """Parse the CSV and run the session over every row in one process: seconds and rows/s."""
    import onnxruntime as ort

    started = time.perf_counter()
    reader = csv.reader(io.StringIO(data.decode()))
    header = next(reader)
    columns = dict(zip(header, zip(*reader)))
    feeds = {}
    for f in schema["features"]:
        cells = columns[f["name"]]
        if f["type"] == "number":
            values = np.fromiter((float(c) if c != "NA" else np.nan for c in cells), np.float32, len(cells))
        else:
            values = np.array(["" if c == "NA" else c for c in cells], dtype=object)
        feeds[f["name"]] = values.reshape(-1, 1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx, sess_options=opts, providers=["CPUExecutionProvider"])
    out = session.run(["label", "probabilities"], feeds)
    seconds = time.perf_counter() - started
    rows = len(out[0])
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def _wait_run(sfn, arn: str, version_id: str, timeout: float) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for e in sfn.list_executions(stateMachineArn=arn)["executions"]:
            d = sfn.describe_execution(executionArn=e["executionArn"])
            if json.loads(d["input"])["object"]["version_id"] == version_id and d["status"] != "RUNNING":
                return d
        time.sleep(0.2)
    raise TimeoutError(f"the batch run did not end within {timeout:.0f} s")


def phases(sfn, execution: dict, put_at: float) -> dict:
    """Seconds from the PutObject to the execution's start (S3 event, rule), and in each state."""
    events = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
    entered: dict[str, float] = {}
    out = {"upload_to_start": round(execution["startDate"].timestamp() - put_at, 2)}
    for e in events:
        kind = e["type"]
        if kind.endswith("StateEntered"):
            entered[e["stateEnteredEventDetails"]["name"]] = e["timestamp"].timestamp()
        elif kind.endswith("StateExited"):
            name = e["stateExitedEventDetails"]["name"]
            out[name] = round(e["timestamp"].timestamp() - entered.get(name, e["timestamp"].timestamp()), 2)
    return out


def run(*, rows: int = ROWS, log=print) -> dict:
    from infra.stack import build_app
    from localcloud import LocalCloud, Template

    outdir = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    app, stack = build_app(CONFIG, outdir=outdir, nag=False, build_layers=False)
    app.synth()
    cloud = LocalCloud(Template.load(outdir, stack_name=STACK), aws_port=0, api_port=0, clock=False,
                       log=lambda m: None)
    cloud.start()
    try:
        s3, sfn = cloud.client("s3"), cloud.client("stepfunctions")
        data_bucket, artifacts = cloud.outputs["DataBucketName"], cloud.outputs["ArtifactBucketName"]
        from tests import realdata

        s3.put_object(Bucket=data_bucket, Key=f"datasets/{MODEL}/penguins.csv", Body=realdata.penguins())
        cloud.wait_for_executions(cloud.outputs["PipelineArn"], timeout=600)
        from functions.core.registry import Registry

        registry = Registry(cloud.outputs["RegistryTableName"], client=cloud.client("dynamodb"),
                            audit_table=cloud.outputs["AuditTableName"])
        version = registry.get_alias(MODEL)
        if version is None:
            raise RuntimeError(f"the pipeline did not promote {MODEL}: {registry.list_versions(MODEL)}")
        record = registry.get_version(MODEL, int(version))
        onnx = s3.get_object(Bucket=artifacts, Key=record["artifact_key"],
                             VersionId=record["artifact_version_id"])["Body"].read()
        data = batch_csv(rows)
        log(f"  {rows:,} rows, {len(data) / 1e6:.0f} MB; floor (one process: parse + one session run)")
        floors = [floor(data, onnx, record["schema"]) for _ in range(2)]
        best_floor = min(floors, key=lambda f: f["seconds"])
        log(f"  floor {best_floor['rows_per_s']:,} rows/s ({best_floor['seconds']} s); batch run on the local cloud")
        started, put_at = time.perf_counter(), time.time()
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        put = s3.put_object(Bucket=data_bucket, Key=f"batch/{MODEL}/bench.csv", Body=data)
        execution = _wait_run(sfn, cloud.outputs["BatchStateMachineArn"], put["VersionId"], timeout=1800)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        # the local cloud's own process (Step Functions interpreter, Map runner, S3/EventBridge/Lambda
        # front ends) during the run; the Lambda workers are child processes, counted after stop()
        main_cpu = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        if execution["status"] != "SUCCEEDED":
            raise RuntimeError(f"batch run {execution['status']}: {execution.get('cause')}")
        prefix = f"predictions/{MODEL}/{execution['name']}/"
        summary = json.loads(s3.get_object(Bucket=data_bucket, Key=prefix + "summary.json")["Body"].read())
        if summary["scored"] != rows:
            raise RuntimeError(f"{summary['scored']} of {rows} rows scored: {summary['errors_by_kind']}")
        rate = rows / seconds
        result = {
            "rows": rows, "csv_bytes": len(data), "model_version": int(version),
            "estimator": record.get("estimator"),
            "seconds": round(seconds, 2), "rows_per_s": round(rate), "batches": summary["batches"],
            "floor": best_floor, "floors": floors,
            "batch_vs_floor": ratio(rate, best_floor["rows_per_s"]),
            "phases_s": phases(sfn, execution, put_at),
            "cpu_s": {"local_cloud_process": round(main_cpu, 1)},
            "worker_cap": cloud.runtime.concurrency,
            "peak_workers": dict(cloud.runtime.peak_workers),
        }
        log(f"  phases (s): {result['phases_s']}")
        log(f"  batch {result['rows_per_s']:,} rows/s ({seconds:.1f} s, {summary['batches']} batches): "
            f"{result['batch_vs_floor']} of the floor")
    finally:
        cloud.stop()
    # the workers' CPU (Lambda functions; the training run's too, a few seconds), once they were reaped
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu_s"]["lambda_workers"] = round(done.ru_utime - children.ru_utime + done.ru_stime - children.ru_stime, 1)
    log(f"  CPU seconds: {result['cpu_s']} for {seconds:.1f} s on {os.cpu_count()} cores")
    return result


if __name__ == "__main__":
    import sys

    print(json.dumps(run(rows=int(sys.argv[1]) if len(sys.argv) > 1 else ROWS), indent=2))
