"""Model quality on live traffic, end to end on the local cloud with the stack as `cdk synth` builds it:

upload → pipeline → production v1 → predictions through the signed API (captured by Firehose with their
inference ids) → labels under labels/graded/ → the hourly quality schedule → quality/graded/<ts>.json,
registry item, ModelQuality metric → labels that disagree → `shipyard quality check` → Quality Degraded →
alarm <stack>-graded-quality in ALARM → retrain rule → the combined dataset
(datasets/graded/retrain-<ts>-with-labels.csv, its metadata naming the sources) → a pipeline run whose
trigger says quality, and a version whose lineage names the combined dataset. Late labels (of a capture
older than the window) and unmatched ones are counted, never fatal.
"""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests import models
from tests.pipeline import data
from tests.pipeline.test_inference_ids_local import call

pytestmark = pytest.mark.slow

MODEL = "graded"
CLASSES = ["cat", "dog", "fish"]


def executions(cloud) -> list[dict]:
    sfn = cloud.client("stepfunctions")
    arn = cloud.outputs["PipelineArn"]
    cloud.wait_for_executions(arn, timeout=300)
    return [sfn.describe_execution(executionArn=e["executionArn"])
            for e in sfn.list_executions(stateMachineArn=arn)["executions"]]


def put_labels(cloud, name: str, rows: list[tuple[str, str]]) -> None:
    body = "inference_id,species\n" + "".join(f"{i},{t}\n" for i, t in rows)
    cloud.client("s3").put_object(Bucket=cloud.outputs["DataBucketName"], Key=f"labels/{MODEL}/{name}",
                                  Body=body.encode())


def quality_reports(cloud) -> list[dict]:
    s3 = cloud.client("s3")
    bucket = cloud.outputs["ArtifactBucketName"]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"quality/{MODEL}/").get("Contents", []))
    return [json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]


def test_predictions_labels_quality_alarm_and_retraining(cloud, registry, monkeypatch, capsys):
    started = time.perf_counter()
    s3 = cloud.client("s3")
    run_input = data.animals(n=400, seed=0)
    s3.put_object(Bucket=cloud.outputs["DataBucketName"], Key=f"datasets/{MODEL}/first.csv", Body=run_input)
    (first,) = [e for e in executions(cloud) if json.loads(e["input"])["model"] == MODEL]
    assert first["status"] == "SUCCEEDED", first
    assert registry.get_alias(MODEL, "production") == 1

    # 60 predictions with the caller's ids through the API (captured with their ids)
    columns, rows = models.classification_table(n=60, seed=9)
    records = [{c: r[j] for j, c in enumerate(columns) if c != "species"} for r in rows]
    ids = [f"g-{i}" for i in range(60)]
    status, _, answer = call(cloud, f"/models/{MODEL}/predict", {"instances": records, "ids": ids})
    assert status == 200 and answer["inference_ids"] == ids, answer
    predicted = dict(zip(ids, answer["predictions"]))
    # a capture older than the window (a day): its labels are late, not matched
    old = datetime.now(UTC) - timedelta(days=2)
    s3.put_object(Bucket=cloud.outputs["ArtifactBucketName"],
                  Key=f"capture/{MODEL}/{old:%Y/%m/%d/%H}/old-capture-{old:%Y-%m-%d-%H-%M-%S}",
                  Body=(json.dumps({"model": MODEL, "version": 1, "captured_at": old.isoformat(),
                                    "instances": records[:2], "predictions": ["cat", "dog"],
                                    "inference_ids": ["old-0", "old-1"], "classes": CLASSES}) + "\n").encode())
    cloud.wait_idle()
    served = time.perf_counter()

    # labels that agree for 40 predictions, 2 late, 3 unmatched, 2 malformed
    put_labels(cloud, "a-agree.csv", [(i, predicted[i]) for i in ids[:40]]
               + [("old-0", "cat"), ("old-1", "dog"), ("ghost-1", "cat"), ("ghost-2", "cat"), ("ghost-3", "dog"),
                  ("", "cat"), ("g-50", "")])
    fired = cloud.tick(now=time.time() + 3601)  # the hourly quality schedule
    assert any("Quality" in name for name in fired), fired
    cloud.wait_idle()
    quality_errors = [e for e in cloud.function_errors if "Quality" in (e.get("logical_id") or "")]
    assert quality_errors == [], quality_errors
    (report,) = quality_reports(cloud)
    assert report["degraded"] is False and report["skipped"] is False and report["version"] == 1
    assert report["score"] == 1.0 and report["metric"] == "accuracy"
    assert {k: report["labels"][k] for k in ("matched", "late", "unmatched", "malformed", "duplicates")} == {
        "matched": 40, "late": 2, "unmatched": 3, "malformed": 2, "duplicates": 0}
    assert report["captured"] == 60 and report["coverage"] == pytest.approx(40 / 60)
    assert sum(map(sum, report["versions"]["1"]["confusion_matrix"]["matrix"])) == 40
    (item,) = registry.quality_history(MODEL)
    assert item["report_key"] == f"quality/{MODEL}/" + item["report_key"].split("/")[-1] and item["score"] == 1.0
    cw = cloud.client("cloudwatch")
    stats = cw.get_metric_statistics(Namespace="Shipyard", MetricName="ModelQuality",
                                     Dimensions=[{"Name": "Model", "Value": MODEL}],
                                     StartTime=datetime.now(UTC) - timedelta(hours=2),
                                     EndTime=datetime.now(UTC) + timedelta(hours=2), Period=3600,
                                     Statistics=["Minimum"])["Datapoints"]
    assert [d["Minimum"] for d in stats] == [1.0], stats
    assert not [c for c in cloud.evaluate_alarms() if c["alarm"] == "Shipyard-graded-quality" and c["to"] == "ALARM"]
    checked = time.perf_counter()

    # labels that disagree, for the same 40 ids (the newer file wins: 40 duplicates), then a check by hand
    wrong = {c: CLASSES[(CLASSES.index(c) + 1) % 3] for c in CLASSES}
    put_labels(cloud, "b-disagree.csv", [(i, wrong[predicted[i]]) for i in ids[:35]]
               + [(i, predicted[i]) for i in ids[35:40]])
    from infra import cli

    for key, value in cloud.environment().items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    check_started = time.perf_counter()
    assert cli.main(["quality", "check", MODEL]) == 0
    check_seconds = time.perf_counter() - check_started
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"model {MODEL} v1: QUALITY DEGRADED: accuracy 0.125 < min_score 0.7"), out
    assert "v1 (production)" in out and "matched 40" in out and "late 2" in out and "unmatched 3" in out
    assert "malformed 2" in out and "duplicates 40" in out and "retrain: dataset+labels" in out
    assert lines[-1].startswith(f"report: s3://{cloud.outputs['ArtifactBucketName']}/quality/{MODEL}/")
    latest = quality_reports(cloud)[-1]
    assert latest["degraded"] is True and latest["score"] == pytest.approx(5 / 40)
    # the HTML report after each check (functions.core.report), its failures never the check's
    html = s3.list_objects_v2(Bucket=cloud.outputs["ArtifactBucketName"], Prefix=f"reports/{MODEL}/")
    assert html.get("KeyCount", 0) >= 2, html
    assert not [line for line in cloud.log_lines if "HTML report could not be written" in str(line)]

    # the alarm: ModelQuality < 0.7 → ALARM (to the alarm topic)
    changes = cloud.evaluate_alarms()
    assert [c["to"] for c in changes if c["alarm"] == "Shipyard-graded-quality"] == ["ALARM"], changes

    # Quality Degraded → retrain rule → combined dataset → a run on it, its trigger naming the sources
    cloud.wait_idle()
    runs = executions(cloud)
    retrains = [e for e in runs if json.loads(e["input"]).get("trigger", {}).get("source") == "quality"]
    assert len(retrains) == 1, [json.loads(e["input"]).get("trigger") for e in runs]
    payload = json.loads(retrains[0]["input"])
    key = payload["dataset"]["key"]
    assert key.startswith(f"datasets/{MODEL}/retrain-") and key.endswith("-with-labels.csv")
    assert payload["trigger"]["base_dataset"]["key"] == f"datasets/{MODEL}/first.csv"
    assert payload["trigger"]["labels"]["rows"] == 40
    assert payload["trigger"]["labels"]["files"] == [f"labels/{MODEL}/b-disagree.csv"]
    head = s3.head_object(Bucket=cloud.outputs["DataBucketName"], Key=key, VersionId=payload["dataset"]["version_id"])
    assert head["Metadata"]["base-dataset-key"] == f"datasets/{MODEL}/first.csv"
    assert head["Metadata"]["labelled-rows"] == "40" and "b-disagree.csv" in head["Metadata"]["label-files"]
    body = s3.get_object(Bucket=cloud.outputs["DataBucketName"], Key=key)["Body"].read().decode()
    assert len(body.splitlines()) == 1 + 400 + 40
    # the combined upload also matched the upload rule: one run trains it, the other is a duplicate
    on_combined = [e for e in runs if json.loads(e["input"])["dataset"]["key"] == key]
    assert all(e["status"] == "SUCCEEDED" for e in on_combined), on_combined
    (v2,) = [v for v in registry.list_versions(MODEL) if v["version"] == 2]
    assert v2["lineage"]["dataset"]["key"] == key
    assert v2["lineage"]["dataset"]["version_id"] == payload["dataset"]["version_id"]
    retrained = time.perf_counter()

    # `shipyard lineage` names the sources of the combined dataset
    assert cli.main(["lineage", MODEL, "2"]) == 0
    lineage = capsys.readouterr().out
    assert f"sources    base dataset datasets/{MODEL}/first.csv" in lineage and "40 labelled predictions" in lineage
    print("\n" + out)
    print(f"[timing] train+serve {served - started:.1f}s, scheduled check {checked - served:.1f}s, "
          f"check by hand {check_seconds:.1f}s, alarm+retrain {retrained - checked:.1f}s, "
          f"total {time.perf_counter() - started:.1f}s")
