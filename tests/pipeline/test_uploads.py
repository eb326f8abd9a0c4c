"""Which uploads start the pipeline, on the local cloud with the synthesized upload rule: dataset
files (``datasets/<model>/…`` ending ``.csv`` or ``.csv.gz``) do; a folder placeholder, notes or
a ``.CSV`` do not, so they allocate no version and trip no alarm (issue 12, finding 5), but the
uploads function says so (``IgnoredUploads``). An upload under a folder no model owns starts
nothing either: the uploads function logs a warning naming the models and the closest one, emits
``UnownedUploads`` and the ``<stack>-unowned-uploads`` alarm fires (issue 13, item 3). The same
holds under ``batch/``: only ``batch/<model>/…`` ending ``.csv`` starts a batch scoring run; a
``.CSV``, a ``.csv.gz`` or a folder no model owns starts none and is reported."""
from __future__ import annotations

import gzip
import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.pipeline import data

pytestmark = pytest.mark.slow

MODEL = "prices"


def _executions(cloud, output: str = "PipelineArn") -> list[dict]:
    sfn = cloud.client("stepfunctions")
    arn = cloud.outputs[output]
    cloud.wait_idle()
    cloud.wait_for_executions(arn)
    return [json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])
            for e in sfn.list_executions(stateMachineArn=arn)["executions"]]


@pytest.fixture
def reports(cloud, monkeypatch):
    """The uploads function's invocations from now on: (S3 key, its JSON log lines)."""
    real, seen = cloud.runtime.invoke, []

    def invoke(name, event, **kwargs):
        inv = real(name, event, **kwargs)
        key = ((event.get("detail") or {}).get("object") or {}).get("key") if isinstance(event, dict) else None
        if "uploads" in name and key is not None:
            lines = [json.loads(line) for line in inv.logs.splitlines() if line.startswith("{")]
            seen.append((key, lines, inv))
        return inv

    monkeypatch.setattr(cloud.runtime, "invoke", invoke)
    return seen


def _said(reports, key: str) -> list[dict]:
    """What the uploads function logged about *key* (its log lines with a message)."""
    return [line for k, lines, _ in reports if k == key for line in lines if "message" in line]


def _started(cloud, key: str) -> list[dict]:
    """The pipeline runs (input ``dataset.key``) and batch scoring runs (input ``object.key``) of *key*."""
    return ([e for e in _executions(cloud) if (e.get("dataset") or {}).get("key") == key]
            + [e for e in _executions(cloud, "BatchStateMachineArn") if (e.get("object") or {}).get("key") == key])


def _metric_sum(cloud, name: str) -> float:
    now = datetime.now(UTC)
    points = cloud.client("cloudwatch").get_metric_statistics(
        Namespace="Shipyard", MetricName=name, Statistics=["Sum"], Period=60,
        Dimensions=[{"Name": "Bucket", "Value": cloud.outputs["DataBucketName"]}],
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=1))["Datapoints"]
    return sum(p["Sum"] for p in points)


def test_only_dataset_files_start_a_run(cloud, run, registry, reports):
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
    # ... and each is said to be ignored, with a metric (no alarm: the model's folder is right)
    for key in ignored:
        (said,) = _said(reports, key)
        assert said["level"] in ("INFO", "WARNING") and said["verdict"] == "ignored", said
        assert said["message"].startswith(f"ignored: not a dataset file (.csv or .csv.gz): {key} "), said
    assert "rename it to export.csv" in _said(reports, f"datasets/{MODEL}/export.CSV")[0]["message"]
    assert _metric_sum(cloud, "IgnoredUploads") >= len(ignored)

    # A gzip-compressed CSV still starts one (and trains: load_csv reads gzip).
    r = run(MODEL, gzip.compress(data.prices(seed=63)), "2024-05.csv.gz")
    execution = r.execution()
    assert execution["status"] == "SUCCEEDED", execution
    assert json.loads(execution["input"])["dataset"]["key"] == f"datasets/{MODEL}/2024-05.csv.gz"
    (version,) = registry.list_versions(MODEL)
    assert version["status"] in ("production", "candidate", "rejected")
    started = [e for e in _executions(cloud) if e.get("model") == MODEL]
    assert [e["dataset"]["key"] for e in started] == [f"datasets/{MODEL}/2024-05.csv.gz"]


@pytest.mark.parametrize(("key", "prefix", "run"), [
    ("datasets/animal/x.csv", "datasets/", "pipeline run"),  # the model is `animals`
    ("batch/animal/x.csv", "batch/", "batch scoring run"),
])
def test_an_upload_no_model_owns_is_reported_and_alarms(cloud, registry, reports, key, prefix, run):
    s3 = cloud.client("s3")
    bucket = cloud.outputs["DataBucketName"]
    before = _metric_sum(cloud, "UnownedUploads")  # the other case's upload may be in the window
    s3.put_object(Bucket=bucket, Key=key, Body=data.animals(seed=71))
    cloud.wait_idle()
    assert _started(cloud, key) == []  # no pipeline run, no batch scoring run
    assert registry.list_versions("animal") == []

    (said,) = _said(reports, key)
    assert said["level"] == "WARNING"
    assert said["message"].startswith(f"unowned upload: {key} is under {prefix}animal/, which no model owns, so it "
                                      f"started no {run}. Did you mean {prefix}animals/ (model 'animals')?")
    assert "configured models: animals, prices, strict" in said["message"]
    assert (said["key"], said["prefix"], said["closest_model"], said["bucket"]) == (
        key, f"{prefix}animal/", "animals", bucket)
    assert "animals" in said["models"] and "prices" in said["models"]
    assert not [r for r in cloud.function_errors if "uploads" in r["function"]]

    # the metric reached CloudWatch (EMF in the function's log), and the alarm fires on it
    assert _metric_sum(cloud, "UnownedUploads") == before + 1
    changes = [c for c in cloud.evaluate_alarms() if c["alarm"] == "Shipyard-unowned-uploads"]
    assert [c["to"] for c in changes] == ["ALARM"]
    assert re.search(r"1 datapoint\(s\) evaluated, 1 breaching \[[12]\]", changes[0]["reason"]), changes[0]
    # CloudWatch may publish to the alarm topic for it (the topic and key policies admit <stack>-*)
    assert not [f for f in cloud.cloudwatch.action_failures if f["alarm"] == "Shipyard-unowned-uploads"]
    later = time.time() + 301  # the next 5-minute period: no unowned upload, the alarm is OK again
    (back,) = [c for c in cloud.evaluate_alarms(now=later) if c["alarm"] == "Shipyard-unowned-uploads"]
    assert back["to"] == "OK"


def test_only_batch_inputs_start_a_batch_run(cloud, reports):
    """``batch/<model>/…`` ending ``.csv`` starts a batch scoring run (whatever becomes of it: no
    production model here may fail it); a ``.CSV`` or a ``.csv.gz`` there starts none and is said."""
    s3 = cloud.client("s3")
    bucket = cloud.outputs["DataBucketName"]
    hints = {
        f"batch/{MODEL}/nightly.CSV": "the suffix is case-sensitive: rename it to nightly.csv",
        f"batch/{MODEL}/nightly.csv.gz": "a gzip file is not read: upload it uncompressed as nightly.csv",
        f"batch/{MODEL}/": "a folder placeholder",
    }
    before = _metric_sum(cloud, "IgnoredUploads")
    rows = data.prices(seed=81)
    for key in hints:
        body = gzip.compress(rows) if key.endswith(".gz") else b"" if key.endswith("/") else rows
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3.put_object(Bucket=bucket, Key=f"batch/{MODEL}/nightly.csv", Body=rows)
    cloud.wait_idle()
    for key, hint in hints.items():
        assert _started(cloud, key) == [], key
        (said,) = _said(reports, key)
        assert (said["verdict"], said["model"], said["prefix"]) == ("ignored", MODEL, f"batch/{MODEL}/"), said
        assert said["message"].startswith(f"ignored: not a batch input (.csv): {key} is under model '{MODEL}''s "
                                          f"prefix batch/{MODEL}/ but started no batch scoring run"), said
        assert said["message"].endswith(f"{hint})"), said
        assert said["level"] == ("INFO" if key.endswith("/") else "WARNING")
    assert _metric_sum(cloud, "IgnoredUploads") == before + len(hints)
    # the control: the .csv beside them did start one, and the uploads function said nothing of it
    assert len(_started(cloud, f"batch/{MODEL}/nightly.csv")) == 1
    assert _said(reports, f"batch/{MODEL}/nightly.csv") == []
    assert [k for k, _, _ in reports if k == f"batch/{MODEL}/nightly.csv"]  # it ran, quietly
