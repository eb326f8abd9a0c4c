"""The model quality check (functions.quality.check) on moto: captures (in the format the inference
function writes, inference ids included) joined with label CSVs; counts, per-version scores equal to
scikit-learn's, confusion matrix, residuals, the skip rule, report/registry/metrics/event."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import numpy as np
import pytest
from moto import mock_aws
from sklearn import metrics as skm

from functions.quality import check as quality
from functions.quality.check import QualitySettings, run_check
from tests.support import create_artifact_bucket, create_registry_table

NOW = datetime(2025, 3, 4, 12, 30, tzinfo=UTC)
CLASSES = ["cat", "dog", "fish"]


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_registry_table(ddb, "registry")
        create_artifact_bucket(s3, "artifacts")
        create_artifact_bucket(s3, "data")
        events = boto3.client("events", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="quality", EventPattern=json.dumps(
            {"source": ["shipyard"], "detail-type": ["Quality Degraded"]}))
        events.put_targets(Rule="quality", Targets=[{"Id": "q", "Arn": arn}])
        from functions.core.registry import Registry

        registry = Registry("registry", client=ddb, known_models=["animals", "prices"])
        yield {"s3": s3, "events": events, "sqs": sqs, "queue": queue, "registry": registry}


def promote(aws, model="animals", times=1):
    reg = aws["registry"]
    for _ in range(times):
        v = reg.allocate_version(model)["version"]
        reg.record_candidate(model, v, artifact_key=f"models/{model}/v{v}/model.onnx", artifact_sha256="ab" * 32,
                             schema={}, metrics={}, lineage={})
        reg.promote(model, v, reason="test", actor="test")
    return v


def put_capture(aws, *, model="animals", version=1, at=NOW - timedelta(hours=1), ids, predictions,
                probabilities=None, classes=CLASSES, name="c"):
    line = {"model": model, "version": version, "captured_at": at.isoformat(),
            "instances": [{"x": float(i)} for i in range(len(predictions))], "predictions": predictions,
            "inference_ids": ids}
    if classes is not None:
        line["classes"] = classes
    if probabilities is not None:
        line["probabilities"] = probabilities
    key = f"capture/{model}/{at:%Y/%m/%d/%H}/{name}-{at:%Y-%m-%d-%H-%M-%S}"
    aws["s3"].put_object(Bucket="artifacts", Key=key, Body=(json.dumps(line) + "\n").encode())


def put_labels(aws, rows, *, model="animals", name="a.csv", target="species", header=None):
    head = header or f"inference_id,{target}"
    body = head + "\n" + "".join(f"{i},{t}\n" for i, t in rows)
    aws["s3"].put_object(Bucket="data", Key=f"labels/{model}/{name}", Body=body.encode())


def settings(**kw):
    base = {"target": "species", "task": "classification", "metric": "accuracy", "min_score": 0.8,
            "min_labels": 5, "window": 86400, "late_lookback": 7 * 86400}
    return QualitySettings(**{**base, **kw})


def check(aws, model="animals", s=None, emit=None, events=True):
    return run_check(model, registry=aws["registry"], s3=aws["s3"], bucket="artifacts", data_bucket="data",
                     settings=s or settings(), events=aws["events"] if events else None, now=NOW, emit=emit,
                     html=False)


def emf(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]


def queued(aws):
    msgs = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in msgs]


# --------------------------------------------------------------------------- the join's counts


def test_matched_unmatched_late_malformed_and_duplicates_are_counted(aws):
    promote(aws)
    # in the window: p0..p9; older than the window (2 days ago): old0..old2
    put_capture(aws, ids=[f"p{i}" for i in range(10)], predictions=["cat"] * 10, name="new")
    put_capture(aws, ids=["old0", "old1", "old2"], predictions=["cat"] * 3, at=NOW - timedelta(days=2), name="old")
    put_labels(aws, [(f"p{i}", "cat") for i in range(6)] + [("old0", "cat"), ("old1", "dog"), ("ghost", "cat"),
                                                           ("", "cat"), ("p7", ""), ("p8", "whale")])
    put_labels(aws, [("p0", "dog"), ("p1", "cat")], name="b.csv")  # p0, p1 labelled again: the last label wins
    aws["s3"].put_object(Bucket="data", Key="labels/animals/photo.csv", Body=b"\x89PNG\x00\x00\nbinary\x00\n")
    report = check(aws)
    labels = report["labels"]
    assert labels["files"] == 3
    assert labels["matched"] == 6           # p0..p5 (p8's 'whale' is no class: malformed)
    assert labels["late"] == 2              # old0, old1
    assert labels["unmatched"] == 1         # ghost
    assert labels["duplicates"] == 2        # p0, p1
    assert labels["malformed"] == 3 + 2     # no id, no target, 'whale'; the binary file's 2 lines
    assert labels["malformed_files"] == ["labels/animals/photo.csv"]
    assert labels["rows"] == 12 + 2 + 2
    assert report["captured"] == 10 and report["coverage"] == pytest.approx(0.6)
    # the last label of p0 ('dog') counts: 5 of 6 right
    assert report["versions"]["1"]["labelled"] == 6
    assert report["versions"]["1"]["score"] == pytest.approx(5 / 6)


def test_label_file_without_the_columns_is_malformed_not_fatal(aws):
    promote(aws)
    put_capture(aws, ids=["a"], predictions=["cat"])
    put_labels(aws, [("a", "cat")], header="id,species")
    report = check(aws)
    assert report["labels"]["malformed"] == 1 and report["labels"]["matched"] == 0
    assert report["labels"]["malformed_files"] == ["labels/animals/a.csv"]
    assert report["skipped"] is True and "fewer than min_labels=5" in report["reason"]


def test_regression_target_that_is_not_a_number_is_malformed(aws):
    promote(aws, "prices")
    put_capture(aws, model="prices", ids=["a", "b"], predictions=[1.0, 2.0], classes=None)
    put_labels(aws, [("a", "1.5"), ("b", "cheap")], model="prices", target="price")
    report = check(aws, "prices", settings(target="price", task="regression", metric="rmse", min_score=10.0,
                                           min_labels=1))
    assert report["labels"]["malformed"] == 1 and report["labels"]["matched"] == 1
    assert report["versions"]["1"]["residuals"]["count"] == 1


# --------------------------------------------------------------------------- scores equal scikit-learn's


@pytest.mark.parametrize("metric", ["accuracy", "f1", "roc_auc"])
def test_per_version_classification_score_equals_sklearn(aws, metric):
    promote(aws, times=2)  # production v2; v1 served earlier traffic
    rng = np.random.default_rng(3)
    truth, preds, probas = {}, {}, {}
    for version, n in ((1, 40), (2, 60)):
        ids = [f"v{version}-{i}" for i in range(n)]
        p = rng.dirichlet([1, 1, 1], n)
        pred = [CLASSES[int(np.argmax(row))] for row in p]
        put_capture(aws, version=version, ids=ids, predictions=pred, probabilities=p.tolist(), name=f"v{version}")
        lab = [pred[i] if rng.random() < 0.7 else CLASSES[int(rng.integers(3))] for i in range(n)]
        truth[version], preds[version], probas[version] = lab, pred, p
        put_labels(aws, list(zip(ids, lab)), name=f"v{version}.csv")
    report = check(aws, s=settings(metric=metric, min_score=0.0))
    for version in (1, 2):
        got = report["versions"][str(version)]["score"]
        if metric == "accuracy":
            want = skm.accuracy_score(truth[version], preds[version])
        elif metric == "f1":
            want = skm.f1_score(truth[version], preds[version], average="macro")
        else:
            want = skm.roc_auc_score(truth[version], probas[version], multi_class="ovr", labels=CLASSES)
        assert got == pytest.approx(want, abs=1e-12), (metric, version)
    assert report["version"] == 2 and report["score"] == report["versions"]["2"]["score"]


def test_confusion_matrix_rows_are_labels_columns_predictions(aws):
    promote(aws)
    ids = [f"i{k}" for k in range(6)]
    pred = ["cat", "cat", "dog", "dog", "fish", "cat"]
    lab = ["cat", "dog", "dog", "fish", "fish", "cat"]
    put_capture(aws, ids=ids, predictions=pred)
    put_labels(aws, list(zip(ids, lab)))
    cm = check(aws)["versions"]["1"]["confusion_matrix"]
    assert cm["labels"] == CLASSES
    assert cm["matrix"] == skm.confusion_matrix(lab, pred, labels=CLASSES).tolist()


@pytest.mark.parametrize("metric", ["r2", "rmse", "mae"])
def test_regression_score_and_residuals(aws, metric):
    promote(aws, "prices")
    rng = np.random.default_rng(5)
    y = rng.normal(10, 3, 50)
    pred = y + rng.normal(0.5, 1.0, 50)
    ids = [f"r{i}" for i in range(50)]
    put_capture(aws, model="prices", ids=ids, predictions=[[float(v)] for v in pred], classes=None)
    put_labels(aws, [(i, repr(float(v))) for i, v in zip(ids, y)], model="prices", target="price")
    report = check(aws, "prices", settings(target="price", task="regression", metric=metric, min_score=0.0))
    entry = report["versions"]["1"]
    want = {"r2": skm.r2_score(y, pred), "rmse": skm.root_mean_squared_error(y, pred),
            "mae": skm.mean_absolute_error(y, pred)}[metric]
    assert entry["score"] == pytest.approx(want, rel=1e-12)
    res = entry["residuals"]
    assert res["count"] == 50 and res["mean"] == pytest.approx(float(np.mean(y - pred)))
    assert res["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert res["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred))
    assert res["p90"] == pytest.approx(float(np.percentile(np.abs(y - pred), 90)))


# --------------------------------------------------------------------------- verdict, metrics, event, registry


def test_below_min_labels_is_skipped_and_publishes_no_model_quality(aws, capsys):
    promote(aws)
    put_capture(aws, ids=["a", "b", "c"], predictions=["cat"] * 3)
    put_labels(aws, [("a", "dog"), ("b", "dog"), ("c", "dog")])
    report = check(aws, emit=quality.emit_metrics)
    assert report["skipped"] is True and report["degraded"] is False and report["score"] == 0.0
    names = {m["Name"] for line in emf(capsys.readouterr().out) for d in line["_aws"]["CloudWatchMetrics"]
             for m in d["Metrics"]}
    assert "LabelledCount" in names and "LabelCoverage" in names and "ModelQuality" not in names
    assert queued(aws) == []


def test_degraded_model_writes_report_records_publishes_and_sends_event(aws, capsys):
    promote(aws)
    ids = [f"d{i}" for i in range(10)]
    put_capture(aws, ids=ids, predictions=["cat"] * 10)
    put_labels(aws, [(i, "dog" if k < 8 else "cat") for k, i in enumerate(ids)])
    report = check(aws, s=settings(retrain="dataset+labels"), emit=quality.emit_metrics)
    assert report["degraded"] is True and report["skipped"] is False and report["score"] == pytest.approx(0.2)
    assert report["retrain"] == {"mode": "dataset+labels", "requested": True}
    stored = json.loads(aws["s3"].get_object(Bucket="artifacts", Key=report["report_key"])["Body"].read())
    assert report["report_key"].startswith("quality/animals/2025-03-04T12-30-00")
    assert set(stored) >= {"model", "checked_at", "window", "metric", "min_score", "min_labels", "labels", "captured",
                           "coverage", "versions", "version", "score", "degraded", "skipped", "reason", "retrain"}
    assert set(stored["labels"]) >= {"files", "rows", "matched", "unmatched", "malformed", "duplicates", "late"}
    (item,) = aws["registry"].quality_history("animals")
    assert item["report_key"] == report["report_key"] and item["degraded"] is True
    assert item["versions"] == {"1": {"labelled": 10, "score": pytest.approx(0.2)}}
    lines = emf(capsys.readouterr().out)
    quality_points = [(tuple(d["Dimensions"][0]), line["ModelQuality"]) for line in lines
                      for d in line["_aws"]["CloudWatchMetrics"] if "ModelQuality" in line]
    assert (("Model",), [pytest.approx(0.2)]) in quality_points
    assert (("Model", "Version"), [pytest.approx(0.2)]) in quality_points
    (event,) = queued(aws)
    assert event["detail-type"] == "Quality Degraded"
    assert {k: event["detail"][k] for k in ("model", "version", "metric", "labelled", "report_key")} == {
        "model": "animals", "version": 1, "metric": "accuracy", "labelled": 10, "report_key": report["report_key"]}


def test_error_metric_degrades_above_min_score(aws):
    promote(aws, "prices")
    ids = [f"e{i}" for i in range(5)]
    put_capture(aws, model="prices", ids=ids, predictions=[0.0] * 5, classes=None)
    put_labels(aws, [(i, "10") for i in ids], model="prices", target="price")
    s = settings(target="price", task="regression", metric="rmse", min_score=5.0)
    assert check(aws, "prices", s)["degraded"] is True
    assert check(aws, "prices", settings(target="price", task="regression", metric="rmse",
                                         min_score=20.0))["degraded"] is False


def test_no_production_version_is_skipped(aws):
    report = check(aws)
    assert report["skipped"] is True and "no production version" in report["reason"] and report["coverage"] is None


def test_settings_from_env():
    env = {"QUALITY_MODELS": json.dumps({"animals": {"target": "species", "task": "classification",
                                                     "metric": "f1", "min_score": 0.7, "min_labels": 3,
                                                     "window": 3600, "retrain": "dataset"}})}
    s = quality.settings_from_env("animals", env)
    assert (s.metric, s.min_score, s.min_labels, s.window, s.retrain) == ("f1", 0.7, 3, 3600, "dataset")
    with pytest.raises(quality.QualityCheckError, match="no quality monitoring"):
        quality.settings_from_env("prices", env)


# --------------------------------------------------------------------------- retraining


def test_retraining_modes_start_the_pipeline_with_their_trigger(aws):
    from functions.quality.retraining import labelled_rows, start_retraining

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    arn = sfn.create_state_machine(name="pipeline", roleArn=role, definition=json.dumps(
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
    s3 = aws["s3"]
    base = s3.put_object(Bucket="data", Key="datasets/animals/first.csv",
                         Body=b"x,colour,species\n1.0,red,cat\n2.0,blue,dog\n")["VersionId"]
    promote(aws)
    put_capture(aws, ids=["a", "b", "c"], predictions=["cat", "cat", "dog"], at=datetime.now(UTC) - timedelta(hours=1))
    put_labels(aws, [("a", "dog"), ("b", "cat"), ("zz", "cat")])
    s = settings(retrain="dataset+labels")
    kw = dict(spec={"target": "species"}, settings=s, s3=s3, sfn=sfn, state_machine_arn=arn, data_bucket="data",
              artifact_bucket="artifacts", trigger={"event_id": "e1"})
    plain = start_retraining("animals", mode="dataset", **kw)
    doc = json.loads(sfn.describe_execution(executionArn=plain["execution_arn"])["input"])
    assert doc["force"] is True and doc["dataset"]["key"] == "datasets/animals/first.csv"
    assert doc["trigger"] == {"event_id": "e1", "source": "quality", "mode": "dataset"}
    combined = start_retraining("animals", mode="dataset+labels", **kw)
    doc = json.loads(sfn.describe_execution(executionArn=combined["execution_arn"])["input"])
    key = doc["dataset"]["key"]
    assert key.startswith("datasets/animals/retrain-") and key.endswith("-with-labels.csv") and "force" not in doc
    assert doc["trigger"]["source"] == "quality" and doc["trigger"]["base_dataset"] == {
        "bucket": "data", "key": "datasets/animals/first.csv", "version_id": base}
    assert doc["trigger"]["labels"] == {"files": ["labels/animals/a.csv"], "rows": 2, "skipped_instances": 0}
    obj = s3.get_object(Bucket="data", Key=key, VersionId=doc["dataset"]["version_id"])
    assert obj["Body"].read().decode().splitlines() == ["x,colour,species", "1.0,red,cat", "2.0,blue,dog",
                                                        "0.0,,dog", "1.0,,cat"]
    assert obj["Metadata"] == {"shipyard-source": "quality", "base-dataset-key": "datasets/animals/first.csv",
                               "base-dataset-version-id": base, "label-files": "labels/animals/a.csv",
                               "labelled-rows": "2"}
    # a combined dataset is never the base of the next one
    again = start_retraining("animals", mode="dataset+labels", **kw)
    assert again["base_dataset"]["key"] == "datasets/animals/first.csv"
    # arrays in the dataset's feature order (the header without the target) fit too
    pairs = [quality.Pair("i", "1", [3.0, "red"], "cat", None, None, "dog", "f")]
    assert labelled_rows(pairs, ["x", "colour", "species"], "species") == ([["3.0", "red", "dog"]], 0)
    assert labelled_rows(pairs, ["x", "species"], "species") == ([], 1)


def test_the_cli_says_what_was_wrong_with_a_label_file():
    """Found by hand: a ';'-separated file with an 'id' column was only listed as malformed; the
    check's examples say why, and `shipyard quality check` prints them."""
    from infra.quality_cli import format_quality_report

    why = ("labels/penguins/bad.csv: no column 'inference_id' or 'species' in the header "
           "(expected 'inference_id' and the target 'species')")
    out = format_quality_report({
        "model": "penguins", "metric": "accuracy", "min_score": 0.0, "version": 1, "score": 1.0, "degraded": False,
        "skipped": False, "window": {"start": "a", "end": "b"}, "captured": 120, "coverage": 0.83, "min_labels": 30,
        "versions": {}, "labels": {"files": 2, "rows": 126, "matched": 100, "malformed": 21,
                                   "malformed_files": ["labels/penguins/bad.csv"], "malformed_examples": [why]}})
    assert "malformed files: labels/penguins/bad.csv" in out
    assert "  " + why in out.splitlines()
