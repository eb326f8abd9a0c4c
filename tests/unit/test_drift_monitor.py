"""The drift check orchestration (functions.drift.check) and its handlers, on moto.

Capture objects in S3 as Firehose writes them → report in drift/, registry item, EMF metrics,
Drift Detected event (delivered by a moto EventBridge rule to an SQS queue), skip rules, errors.
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta

import boto3
import numpy as np
import pytest
from moto import mock_aws

from functions.core.baseline import build_baseline
from functions.core.registry import ModelNotFound, Registry
from functions.drift import check as drift_check
from functions.drift.check import (
    BaselineMissing,
    DriftCheckError,
    DriftSettings,
    drift_history,
    read_capture_window,
    report_key,
    run_check,
    settings_from_env,
)
from functions.pipeline.execution import latest_dataset
from tests.support import create_artifact_bucket, create_registry_table

NOW = datetime(2025, 3, 4, 12, 30, tzinfo=UTC)
SCHEMA = {"target": "label", "task": "classification",
          "features": [{"name": "x", "type": "number"}, {"name": "y", "type": "number"},
                       {"name": "colour", "type": "string", "categories": ["blue", "green", "red"]}],
          "classes": ["a", "b"]}
FEATURES = [("x", "number"), ("y", "number"), ("colour", "string")]


def training_columns(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(0.0, 1.0, n), "y": rng.uniform(0, 10, n),
            "colour": np.array(rng.choice(["red", "blue", "green"], n, p=[0.5, 0.3, 0.2]), dtype=object)}


def traffic(n, *, shift=0.0, seed=1, arrays=False):
    """n request instances; shift moves x and y (in units of their spread) and the colour mix."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    y = rng.uniform(0, 10, n) + 3 * shift
    p = [0.5, 0.3, 0.2] if shift == 0 else [0.1, 0.2, 0.7]
    colour = rng.choice(["red", "blue", "green"], n, p=p)
    if arrays:
        return [[float(a), float(b), str(c)] for a, b, c in zip(x, y, colour)]
    return [{"x": float(a), "y": float(b), "colour": str(c)} for a, b, c in zip(x, y, colour)]


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
        queue = sqs.create_queue(QueueName="drift-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="drift", EventPattern=json.dumps(
            {"source": ["shipyard"], "detail-type": ["Drift Detected"], "detail": {"model": ["iris"]}}))
        events.put_targets(Rule="drift", Targets=[{"Id": "q", "Arn": queue_arn}])
        registry = Registry("registry", client=ddb, known_models=["iris", "wine"])
        yield {"s3": s3, "ddb": ddb, "events": events, "sqs": sqs, "queue": queue, "registry": registry}


def promote_version(aws, model="iris", baseline=True, window=500, baseline_body=None):
    """A production version; its baseline.json written (unless baseline=False) and its sha256 in lineage,
    as training records them (``baseline_body`` replaces the built baseline's bytes)."""
    registry = aws["registry"]
    v = registry.allocate_version(model)["version"]
    prefix = f"models/{model}/v{v}/"
    if baseline_body is None:
        base = build_baseline(training_columns(), SCHEMA, window=window, threshold=0.1, seed=0)
        baseline_body = json.dumps(base).encode()
    lineage = {"artifacts": {"baseline.json": {"key": prefix + "baseline.json",
                                               "sha256": hashlib.sha256(baseline_body).hexdigest()}}}
    registry.record_candidate(model, v, artifact_key=prefix + "model.onnx", artifact_sha256="ab" * 32,
                              schema=SCHEMA, metrics={"accuracy": 0.9}, lineage=lineage)
    registry.promote(model, v, reason="test", actor="test")
    if baseline:
        aws["s3"].put_object(Bucket="artifacts", Key=prefix + "baseline.json", Body=baseline_body)
    return v


def put_capture(aws, instances, *, model="iris", at=NOW - timedelta(minutes=10), per_line=10, version=1,
                name="Shipyard-Capture-iris-1"):
    """One Firehose object: JSON lines of `per_line` instances each, under capture/<model>/YYYY/MM/DD/HH/."""
    lines = []
    for i in range(0, len(instances), per_line):
        lines.append(json.dumps({"model": model, "version": version,
                                 "captured_at": (at + timedelta(seconds=i)).isoformat(),
                                 "instances": instances[i:i + per_line], "predictions": ["a"] * per_line}))
    key = f"capture/{model}/{at:%Y/%m/%d/%H}/{name}-{at:%Y-%m-%d-%H-%M-%S}-{len(instances)}"
    aws["s3"].put_object(Bucket="artifacts", Key=key, Body=("\n".join(lines) + "\n").encode())
    return key


def run(aws, model="iris", settings=None, emit=drift_check.emit_metrics, **kw):
    return run_check(model, registry=aws["registry"], s3=aws["s3"], bucket="artifacts",
                     settings=settings or DriftSettings(), events=aws["events"], now=NOW, emit=emit, **kw)


def emf_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]


def queued(aws) -> list[dict]:
    msgs = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in msgs]


# --------------------------------------------------------------------------- the report


def test_drifted_window_writes_report_records_emits_and_sends_event(aws, capsys):
    v = promote_version(aws)
    put_capture(aws, traffic(600, shift=1.0))
    report = run(aws)

    assert report["model"] == "iris" and report["version"] == v
    assert report["rows"] == 500 and report["window"] == 500  # newest `window` rows of 600
    assert report["drift_detected"] is True and report["drifted_share"] == 1.0
    assert report["skipped"] is False and report["reason"] is None
    assert set(report["features"]) == {"x", "y", "colour"}
    for name, entry in report["features"].items():
        assert {"statistic", "value", "threshold", "drifted"} <= set(entry), name
        assert entry["drifted"] is True
    assert report["features"]["x"]["statistic"] == "wasserstein"
    assert report["features"]["colour"]["statistic"] == "jensen_shannon"

    # the report in S3: docs/monitoring.md's shape, at drift/<model>/<timestamp>.json
    assert report["report_key"] == "drift/iris/2025-03-04T12-30-00.000Z.json"
    stored = json.loads(aws["s3"].get_object(Bucket="artifacts", Key=report["report_key"])["Body"].read())
    assert {"model", "version", "rows", "window", "drift_detected", "drifted_share", "features"} <= set(stored)
    assert stored == json.loads(json.dumps({k: v for k, v in report.items() if k != "event_id"}))
    assert stored["baseline_key"] == f"models/iris/v{v}/baseline.json"
    assert stored["capture"]["objects_read"] == 1 and stored["capture"]["served_versions"] == {"1": 500}

    # the registry item: one query answers "what did the drift checks of iris say"
    (item,) = drift_history(aws["registry"], "iris")
    assert item["version"] == v and item["drift_detected"] is True and item["report_key"] == report["report_key"]
    assert item["drifted_features"] == ["x", "y", "colour"] and item["checked_at"] == "2025-03-04T12:30:00.000Z"
    # ... and the registry's own views are untouched by it
    assert [x["version"] for x in aws["registry"].list_versions("iris")] == [v]
    assert aws["registry"].history("iris")[-1]["to_version"] == v

    # metrics: EMF in namespace Shipyard, Model (+ Feature) dimensions, no service dimension
    docs = emf_lines(capsys.readouterr().out)
    by_dims = {tuple(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]): d for d in docs}
    model_doc = by_dims[("Model",)]
    assert model_doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shipyard"
    assert model_doc["Model"] == "iris" and model_doc["DriftedShare"] == [1.0]
    assert model_doc["RowsChecked"] == [500.0] and model_doc["DriftDetected"] == [1.0]
    features = {d["Feature"]: d for d in docs if "Feature" in d}
    assert set(features) == {"x", "y", "colour"}
    assert features["x"]["DriftScore"] == [pytest.approx(report["features"]["x"]["value"])]
    assert features["x"]["DriftThreshold"] == [pytest.approx(report["features"]["x"]["threshold"])]
    assert all("service" not in d for d in docs)

    # the event, routed by an EventBridge rule to SQS
    (event,) = queued(aws)
    assert event["source"] == "shipyard" and event["detail-type"] == "Drift Detected"
    assert event["detail"]["model"] == "iris" and event["detail"]["version"] == v
    assert event["detail"]["report"] == {"bucket": "artifacts", "key": report["report_key"]}
    assert report["event_id"]


def test_quiet_window_sends_no_event(aws, capsys):
    promote_version(aws)
    put_capture(aws, traffic(800, shift=0.0, seed=7))
    report = run(aws)
    assert report["skipped"] is False and report["rows"] == 500
    assert report["drift_detected"] is False and report["drifted_share"] < 0.5
    assert "event_id" not in report and queued(aws) == []
    model_doc = next(d for d in emf_lines(capsys.readouterr().out) if "DriftedShare" in d)
    assert model_doc["DriftDetected"] == [0.0]


def test_window_takes_the_newest_rows_across_objects_and_days(aws):
    promote_version(aws)
    # old drifted traffic two days ago, then quiet traffic split over yesterday and today
    put_capture(aws, traffic(1000, shift=2.0), at=NOW - timedelta(days=2))
    put_capture(aws, traffic(300, seed=3), at=NOW - timedelta(days=1, hours=1), name="a")
    put_capture(aws, traffic(300, seed=4), at=NOW - timedelta(hours=1), name="b")
    window = read_capture_window(aws["s3"], "artifacts", "iris", FEATURES, 500, now=NOW)
    assert window.rows == 500 and window.objects_read == 2  # stopped before the drifted object
    assert window.first_captured_at.startswith((NOW - timedelta(days=1)).strftime("%Y-%m-%d"))
    report = run(aws)
    assert report["drift_detected"] is False

    # with a larger window the drifted rows come in (newest 1,000 of them)
    report = run(aws, settings=DriftSettings(window=1600))
    assert report["rows"] == 1600 and report["drift_detected"] is True


def test_lookback_limits_how_far_back_the_window_reaches(aws):
    promote_version(aws)
    put_capture(aws, traffic(600), at=NOW - timedelta(days=3))
    assert run(aws, settings=DriftSettings(lookback_days=2))["skipped"] is True
    assert run(aws, settings=DriftSettings(lookback_days=3))["rows"] == 500


def test_array_instances_nulls_and_bad_lines(aws):
    promote_version(aws)
    instances = traffic(520, arrays=True)
    instances[0] = [None, 1.0, None]   # missing values count as missing
    instances[1] = [1.0, 2.0]          # wrong length: left out
    instances[2] = "nonsense"          # not an instance: left out
    key = put_capture(aws, instances)
    body = aws["s3"].get_object(Bucket="artifacts", Key=key)["Body"].read() + b"not json\n"
    aws["s3"].put_object(Bucket="artifacts", Key=key, Body=body)
    window = read_capture_window(aws["s3"], "artifacts", "iris", FEATURES, 1000, now=NOW)
    assert window.rows == 518 and window.bad_instances == 2 and window.bad_lines == 1
    assert np.isnan(window.columns["x"][0]) and window.columns["colour"][0] is None
    assert window.columns["colour"].dtype == object and window.columns["x"].dtype == float
    report = run(aws)
    assert report["rows"] == 500 and report["drift_detected"] is False


# --------------------------------------------------------------------------- skip rules and errors


def test_too_few_rows_is_skipped_with_a_recorded_reason(aws, capsys):
    promote_version(aws)
    put_capture(aws, traffic(120))
    report = run(aws)
    assert report["skipped"] is True and report["drift_detected"] is False and report["rows"] == 120
    assert "120 captured rows" in report["reason"] and "min_rows=500" in report["reason"]
    assert report["features"] == {}
    stored = json.loads(aws["s3"].get_object(Bucket="artifacts", Key=report["report_key"])["Body"].read())
    assert stored["skipped"] is True and stored["reason"] == report["reason"]
    (item,) = drift_history(aws["registry"], "iris")
    assert item["skipped"] is True and item["reason"] == report["reason"]
    docs = emf_lines(capsys.readouterr().out)
    (model_doc,) = docs
    assert model_doc["RowsChecked"] == [120.0] and model_doc["DriftChecksSkipped"] == [1.0]
    assert "DriftedShare" not in model_doc  # no decision: the alarm keeps its state
    assert queued(aws) == []


def test_min_rows_is_a_setting(aws):
    promote_version(aws)
    put_capture(aws, traffic(120, shift=2.0))
    report = run(aws, settings=DriftSettings(window=120, min_rows=100))
    assert report["skipped"] is False and report["rows"] == 120 and report["drift_detected"] is True


def test_no_production_version_is_skipped_with_a_reason(aws):
    put_capture(aws, traffic(600))
    report = run(aws, model="wine")  # configured, never trained
    assert report["skipped"] is True and report["version"] is None
    assert "no production version" in report["reason"]
    assert aws["s3"].get_object(Bucket="artifacts", Key=report["report_key"])
    assert drift_history(aws["registry"], "wine")[0]["skipped"] is True


def test_missing_baseline_is_a_clear_error(aws):
    v = promote_version(aws, baseline=False)
    put_capture(aws, traffic(600))
    with pytest.raises(BaselineMissing, match=rf"production version {v} has no drift baseline at "
                                              rf"s3://artifacts/models/iris/v{v}/baseline.json"):
        run(aws)
    assert aws["s3"].list_objects_v2(Bucket="artifacts", Prefix="drift/").get("KeyCount") == 0


def test_unknown_model_is_an_error(aws):
    with pytest.raises(ModelNotFound):
        run(aws, model="nope")


def test_baseline_that_is_not_a_baseline_is_an_error(aws):
    promote_version(aws, baseline_body=b"[1, 2]")
    with pytest.raises(DriftCheckError, match="has no 'features' object"):
        run(aws)


def test_history_is_newest_first_and_checks_do_not_collide(aws):
    promote_version(aws)
    put_capture(aws, traffic(600))
    first = run_check("iris", registry=aws["registry"], s3=aws["s3"], bucket="artifacts", now=NOW, emit=None)
    second = run_check("iris", registry=aws["registry"], s3=aws["s3"], bucket="artifacts",
                       now=NOW + timedelta(milliseconds=1), emit=None)
    assert first["report_key"] < second["report_key"]
    assert [h["checked_at"] for h in drift_history(aws["registry"], "iris")] == [
        second["checked_at"], first["checked_at"]]
    assert len(drift_history(aws["registry"], "iris", limit=1)) == 1


# --------------------------------------------------------------------------- settings, keys


def test_settings_from_env():
    env = {"DRIFT_MODELS": json.dumps({"iris": {"window": 800, "share": 0.3, "threshold": 0.1}}),
           "DRIFT_MIN_ROWS": "200", "DRIFT_LOOKBACK_DAYS": "2"}
    assert settings_from_env("iris", env) == DriftSettings(window=800, share=0.3, min_rows=200, lookback_days=2)
    with pytest.raises(DriftCheckError, match="model 'wine' has no drift monitoring configured"):
        settings_from_env("wine", env)
    with pytest.raises(DriftCheckError, match="not valid JSON"):
        settings_from_env("iris", {"DRIFT_MODELS": "{"})
    with pytest.raises(DriftCheckError, match="share must be within"):
        DriftSettings(share=0)


def test_report_keys_sort_in_time_order():
    a = report_key("iris", datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))
    assert a == "drift/iris/2025-01-02T03-04-05.006Z.json"
    assert a < report_key("iris", datetime(2025, 1, 2, 3, 4, 5, 7000, tzinfo=UTC))


# --------------------------------------------------------------------------- handlers


def test_drift_handler_runs_the_check_from_the_environment(aws, monkeypatch, capsys):
    from functions.drift import handler as drift_handler

    promote_version(aws)
    put_capture(aws, traffic(600, shift=1.0), at=datetime.now(UTC) - timedelta(minutes=5))
    monkeypatch.setenv("REGISTRY_TABLE", "registry")
    monkeypatch.setenv("ARTIFACT_BUCKET", "artifacts")
    monkeypatch.setenv("SHIPYARD_MODELS", json.dumps(["iris", "wine"]))
    monkeypatch.setenv("DRIFT_MODELS", json.dumps({"iris": {"window": 500, "share": 0.5}, "wine": {}}))
    from functions.core import clients

    monkeypatch.setattr(clients, "_cache", {"s3": aws["s3"], "events": aws["events"]})

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "drift", 1024, "req-1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:drift"

    report = drift_handler.handler({"model": "iris"}, Context())
    assert report["drift_detected"] is True and report["rows"] == 500
    registry = clients.registry()  # built once per warm Lambda, then reused
    monkeypatch.setattr(clients.Registry, "from_env", lambda **kw: pytest.fail("registry built again"))
    assert drift_handler.handler({"model": "iris"}, Context())["version"] == report["version"]
    assert clients.registry() is registry
    assert queued(aws)[0]["detail"]["model"] == "iris"
    with pytest.raises(DriftCheckError, match='expected an event {"model": "<name>"}'):
        drift_handler.handler({"nope": 1}, Context())
    assert drift_handler.parse_event({"detail": {"model": "wine"}}) == "wine"


def test_latest_dataset_and_retrain_handler(aws, monkeypatch):
    from functions.drift import retrain

    s3 = aws["s3"]
    assert latest_dataset(s3, "data", "iris") is None
    s3.put_object(Bucket="data", Key="datasets/iris/a.csv", Body=b"x\n1\n")
    s3.put_object(Bucket="data", Key="datasets/iris/b.csv", Body=b"x\n2\n")
    time.sleep(1.05)  # S3 listings carry LastModified in whole seconds
    s3.put_object(Bucket="data", Key="datasets/iris/a.csv", Body=b"x\n3\n")  # a.csv is now the newest
    s3.put_object(Bucket="data", Key="datasets/iris-2/z.csv", Body=b"x\n3\n")  # another model's prefix
    s3.put_object(Bucket="data", Key="datasets/iris/notes.txt", Body=b"not a dataset")  # newer, not a dataset
    s3.put_object(Bucket="data", Key="datasets/iris/old/", Body=b"")  # a folder placeholder
    head = s3.head_object(Bucket="data", Key="datasets/iris/a.csv")
    found = latest_dataset(s3, "data", "iris")
    assert found["key"] == "datasets/iris/a.csv" and found["version_id"] == head["VersionId"]

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    arn = sfn.create_state_machine(name="pipeline", roleArn=role, definition=json.dumps(
        {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
    monkeypatch.setenv("DATA_BUCKET", "data")
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    monkeypatch.setenv("RETRAIN_SPECS", json.dumps({"iris": {"target": "label", "task": "classification"}}))
    from functions.core import clients

    monkeypatch.setattr(clients, "_cache", {"s3": s3, "stepfunctions": sfn})

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "retrain", 256, "req-2"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:retrain"

    event = {"id": "ev-1", "source": "shipyard", "detail-type": "Drift Detected",
             "detail": {"model": "iris", "drifted_share": 1.0, "report": {"bucket": "artifacts", "key": "k"}}}
    answer = retrain.handler(event, Context())
    execution = sfn.describe_execution(executionArn=answer["execution_arn"])
    payload = json.loads(execution["input"])
    # the upload rule's input shape (infra/pipeline.py), forced past the per-dataset duplicate claim
    assert payload["model"] == "iris" and payload["spec"] == {"target": "label", "task": "classification"}
    assert payload["dataset"] == {"bucket": "data", "key": "datasets/iris/a.csv", "version_id": head["VersionId"],
                                  "size": 4, "etag": head["ETag"].strip('"')}
    assert payload["trigger"]["source"] == "drift" and payload["trigger"]["event_id"] == "ev-1"
    assert payload["force"] is True
    assert execution["name"].startswith("drift-iris-")
    with pytest.raises(DriftCheckError, match="holds no dataset to retrain on"):
        retrain.handler({**event, "detail": {"model": "wine"}}, Context())
    s3.put_object(Bucket="data", Key="datasets/wine/w.csv", Body=b"x\n1\n")
    with pytest.raises(DriftCheckError, match="not set up for retraining"):
        retrain.handler({**event, "detail": {"model": "wine"}}, Context())


def test_newer_hours_come_first_whatever_order_the_objects_were_written_in(aws):
    promote_version(aws)
    late = NOW.replace(hour=10, minute=30)
    # the newer hour's object is written first (a slow writer), the older hour's object after it:
    # the hour in the key decides, not the write time
    put_capture(aws, traffic(500, seed=5), at=late, name="z-newer-hour")
    time.sleep(1.1)  # S3's LastModified has one-second resolution: make the older hour's write later
    put_capture(aws, traffic(500, shift=2.0), at=late - timedelta(hours=1), name="a-older-hour")
    window = read_capture_window(aws["s3"], "artifacts", "iris", FEATURES, 500, now=late + timedelta(minutes=5))
    assert window.objects_read == 1 and window.rows == 500
    assert window.first_captured_at.startswith(late.strftime("%Y-%m-%dT%H"))


def test_history_follows_pagination(aws, monkeypatch):
    """Pages smaller than the history (as DynamoDB's 1 MB pages are) still give every check, newest first."""
    for i in range(5):
        aws["registry"].put_drift_check("iris", {"checked_at": f"2025-03-04T12:00:0{i}.000Z", "rows": i})
    ddb, original = aws["ddb"], aws["ddb"].query
    pages = []
    monkeypatch.setattr(ddb, "query",
                        lambda **kw: pages.append(kw) or original(**{**kw, "Limit": min(kw.get("Limit", 2), 2)}))
    assert [h["rows"] for h in drift_history(aws["registry"], "iris")] == [4, 3, 2, 1, 0]
    assert len(pages) == 3
    assert [h["rows"] for h in drift_history(aws["registry"], "iris", limit=3)] == [4, 3, 2]
    assert all(h["kind"] == "drift_check" and h["model"] == "iris" and "pk" not in h for h in
               drift_history(aws["registry"], "iris"))


def test_baseline_is_read_only_with_the_sha256_training_recorded(aws):
    v = promote_version(aws)
    put_capture(aws, traffic(600))
    key = f"models/iris/v{v}/baseline.json"
    honest = json.loads(aws["s3"].get_object(Bucket="artifacts", Key=key)["Body"].read())
    honest["features"]["x"]["threshold"] = 1e9  # a tampered (or half-written) baseline
    aws["s3"].put_object(Bucket="artifacts", Key=key, Body=json.dumps(honest).encode())
    with pytest.raises(DriftCheckError, match=rf"version {v}: the drift baseline cannot be trusted, it is not the "
                                              r"file training wrote: .*sha256"):
        run(aws)
    assert aws["s3"].list_objects_v2(Bucket="artifacts", Prefix="drift/").get("KeyCount") == 0


def test_baseline_without_a_recorded_digest_is_refused(aws):
    registry = aws["registry"]
    v = registry.allocate_version("iris")["version"]
    registry.record_candidate("iris", v, artifact_key=f"models/iris/v{v}/model.onnx", artifact_sha256="ab" * 32,
                              schema=SCHEMA, metrics={"accuracy": 0.9})
    registry.promote("iris", v, reason="test", actor="test")
    base = build_baseline(training_columns(), SCHEMA, window=500, threshold=0.1, seed=0)
    aws["s3"].put_object(Bucket="artifacts", Key=f"models/iris/v{v}/baseline.json", Body=json.dumps(base).encode())
    put_capture(aws, traffic(600))
    with pytest.raises(DriftCheckError, match="lineage records no sha256 for baseline.json"):
        run(aws)


def test_a_refused_drift_event_is_a_drift_check_error():
    class Events:
        def __init__(self, answer):
            self.answer, self.entries = answer, []

        def put_events(self, Entries):
            self.entries.extend(Entries)
            return self.answer

    report = {"model": "iris", "version": 1, "checked_at": "t", "rows": 500, "drifted_share": 1.0, "share": 0.5,
              "drifted_features": ["x"], "report_key": "drift/iris/t.json"}
    events = Events({"FailedEntryCount": 1, "Entries": [{"ErrorCode": "AccessDeniedException", "ErrorMessage": "no"}]})
    refused = "refused the Drift Detected event of model 'iris': AccessDeniedException: no"
    with pytest.raises(DriftCheckError, match=refused):
        drift_check.send_drift_event(events, report, "artifacts", "shipyard-bus")
    (entry,) = events.entries
    assert entry["EventBusName"] == "shipyard-bus" and entry["Source"] == "shipyard" and "Resources" not in entry
    assert json.loads(entry["Detail"]) == drift_check.drift_event_detail(report, "artifacts")
    events = Events({"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]})
    assert drift_check.send_drift_event(events, report, "artifacts") == "e-1"
    assert events.entries[0]["EventBusName"] == "default"


def test_a_check_reads_the_model_item_once(aws, monkeypatch):
    promote_version(aws)
    ddb = aws["registry"].client
    reads, original = [], ddb.get_item
    monkeypatch.setattr(ddb, "get_item", lambda **kw: reads.append(kw["Key"]["sk"]["S"]) or original(**kw))
    # The check's own reads: the HTML report written after it (functions/core/report.py) gathers its own.
    monkeypatch.setattr(drift_check, "html_report", lambda *a, **k: "reports/iris/x.html")
    run(aws, emit=None)
    assert reads.count("iris") == 1  # existence and production alias from one GetItem


def test_the_baseline_version_training_recorded_is_read_even_after_an_overwrite(aws):
    """With the S3 version id in lineage (training records it), an overwritten baseline.json is
    never read: the check runs on the bytes training wrote."""
    registry = aws["registry"]
    v = registry.allocate_version("iris")["version"]
    key = f"models/iris/v{v}/baseline.json"
    body = json.dumps(build_baseline(training_columns(), SCHEMA, window=500, threshold=0.1, seed=0)).encode()
    written = aws["s3"].put_object(Bucket="artifacts", Key=key, Body=body)
    lineage = {"artifacts": {"baseline.json": {"key": key, "sha256": hashlib.sha256(body).hexdigest(),
                                               "version_id": written["VersionId"]}}}
    registry.record_candidate("iris", v, artifact_key=f"models/iris/v{v}/model.onnx", artifact_sha256="ab" * 32,
                              schema=SCHEMA, metrics={"accuracy": 0.9}, lineage=lineage)
    registry.promote("iris", v, reason="test", actor="test")
    aws["s3"].put_object(Bucket="artifacts", Key=key, Body=b'{"features": {}}')  # overwritten
    put_capture(aws, traffic(600))
    report = run(aws)
    assert report["version"] == v and set(report["features"]) == {f["name"] for f in SCHEMA["features"]}
