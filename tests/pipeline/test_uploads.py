"""Which uploads start the pipeline, on the local cloud with the synthesized upload rule: dataset
files (``datasets/<model>/…`` ending ``.csv`` or ``.csv.gz``) do; a folder placeholder, notes or
a ``.CSV`` do not, so they allocate no version and trip no alarm (issue 12, finding 5)."""
from __future__ import annotations

import gzip
import json

import pytest

from tests.pipeline import data

pytestmark = pytest.mark.slow

MODEL = "prices"


def _executions(cloud) -> list[dict]:
    sfn = cloud.client("stepfunctions")
    arn = cloud.outputs["PipelineArn"]
    cloud.wait_idle()
    cloud.wait_for_executions(arn)
    return [json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])
            for e in sfn.list_executions(stateMachineArn=arn)["executions"]]


def test_only_dataset_files_start_a_run(cloud, run, registry):
    s3 = cloud.client("s3")
    bucket = cloud.outputs["DataBucketName"]
    ignored = {
        f"datasets/{MODEL}/": b"",                          # the folder placeholder a console creates
        f"datasets/{MODEL}/notes.txt": b"where this data came from\n",
        f"datasets/{MODEL}/export.CSV": data.prices(seed=61),  # the rule, like evaluation/, wants .csv
        f"datasets/{MODEL}/data.csv.bak": data.prices(seed=62),
    }
    for key, body in ignored.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    started = [e for e in _executions(cloud) if e.get("model") == MODEL]
    assert started == []
    assert registry.list_versions(MODEL) == []  # no version allocated, nothing failed

    # A gzip-compressed CSV still starts one (and trains: load_csv reads gzip).
    r = run(MODEL, gzip.compress(data.prices(seed=63)), "2024-05.csv.gz")
    execution = r.execution()
    assert execution["status"] == "SUCCEEDED", execution
    assert json.loads(execution["input"])["dataset"]["key"] == f"datasets/{MODEL}/2024-05.csv.gz"
    (version,) = registry.list_versions(MODEL)
    assert version["status"] in ("production", "candidate", "rejected")
    started = [e for e in _executions(cloud) if e.get("model") == MODEL]
    assert [e["dataset"]["key"] for e in started] == [f"datasets/{MODEL}/2024-05.csv.gz"]
