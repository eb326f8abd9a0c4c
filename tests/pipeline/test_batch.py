"""Batch scoring end to end on the local cloud (docs/batch.md): the synthesized state machine, its
Distributed Map run by the local cloud, the real functions. A penguins model trained and promoted
by the pipeline scores 1M real rows (resampled) with bad rows among them; every valid row's
prediction is the API's answer, every bad row an error line; lineage, event, summary, alarm."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import time

import pytest

from tests import realdata
from tests.pipeline.conftest import CONFIG, Run, events_of
from tests.pipeline.test_pipeline import _predict

MODEL = "penguins-rf"
ROWS = 1_000_000  # the size: every valid row checked to be there once, a sample against the API


@pytest.fixture(scope="module")
def production(cloud, registry_module):
    execution = Run(cloud, MODEL, realdata.penguins(), "penguins.csv").execution()
    assert execution["status"] == "SUCCEEDED", execution
    version = registry_module.get_alias(MODEL)
    assert version is not None
    return int(version)


@pytest.fixture(scope="module")
def registry_module(cloud):
    from functions.core.registry import Registry

    return Registry(cloud.outputs["RegistryTableName"], client=cloud.client("dynamodb"),
                    audit_table=cloud.outputs["AuditTableName"])


def _batch_file(rows: int, seed: int = 7) -> tuple[bytes, dict[int, tuple[str, str]]]:
    """Penguins rows resampled to ``rows``, with an id column; bad rows at known lines."""
    reader = csv.reader(io.StringIO(realdata.penguins().decode()))
    header = next(reader)
    source = list(reader)
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["row_id", *header])
    bad: dict[int, tuple[str, str]] = {}  # line -> (column, kind)
    col = {name: i + 1 for i, name in enumerate(header)}
    for i in range(rows):
        line = i + 2
        cells = [f"id{i}", *rng.choice(source)]
        if i % 5000 == 17:
            cells[col["bill_length_mm"]] = "forty"
            bad[line] = ("bill_length_mm", "not_a_number")
        elif i % 5000 == 29:
            cells[col["flipper_length_mm"]] = "inf"
            bad[line] = ("flipper_length_mm", "not_a_number")
        elif i % 5000 == 41:
            cells[col["body_mass_g"]] = "1e39"
            bad[line] = ("body_mass_g", "out_of_range")
        elif i % 10000 == 53:
            cells = cells[:4]  # a short row: Step Functions would read its missing fields as ""
            bad[line] = ("", "ragged_row")
        elif i % 10000 == 67:
            cells = [*cells, "extra"]
            bad[line] = ("", "ragged_row")
        writer.writerow(cells)
    return out.getvalue().encode(), bad


def _batch_execution(cloud, version_id: str, timeout: float = 240) -> dict:
    sfn = cloud.client("stepfunctions")
    arn = cloud.outputs["BatchStateMachineArn"]
    deadline = time.time() + timeout
    while True:
        cloud.wait_for_executions(arn, timeout=timeout)
        for e in sfn.list_executions(stateMachineArn=arn)["executions"]:
            d = sfn.describe_execution(executionArn=e["executionArn"])
            if json.loads(d["input"])["object"]["version_id"] == version_id and d["status"] != "RUNNING":
                return d
        assert time.time() < deadline, "no batch run for the upload"
        time.sleep(0.5)


def _read_csv(s3, bucket: str, key: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())))


def test_a_1m_row_upload_is_scored_like_the_api_with_bad_rows_reported(cloud, production, registry_module):
    s3 = cloud.client("s3")
    bucket = cloud.outputs["DataBucketName"]
    body, bad = _batch_file(ROWS)
    put = s3.put_object(Bucket=bucket, Key=f"batch/{MODEL}/scores.csv", Body=body)
    execution = _batch_execution(cloud, put["VersionId"], timeout=900)
    assert execution["status"] == "SUCCEEDED", execution
    run = execution["name"]
    prefix = f"predictions/{MODEL}/{run}/"
    summary = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "summary.json")["Body"].read())
    assert summary["status"] == "succeeded" and summary["version"] == production
    assert (summary["rows"], summary["refused"], summary["scored"]) == (ROWS, len(bad), ROWS - len(bad))
    kinds: dict[str, int] = {}
    for _, kind in bad.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    assert summary["errors_by_kind"] == kinds
    assert summary["input"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert summary["input"]["version_id"] == put["VersionId"] and summary["batches"] > 1

    # every refused row is an error line naming its line and column
    errors = [e for key in summary["error_files"] for e in _read_csv(s3, bucket, key)]
    assert {int(e["line"]): e["column"] for e in errors} == {line: c for line, (c, _) in bad.items()}
    assert all(e["message"] for e in errors)
    # every valid row is in a part, once, with the version; the parts are the keys listed
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "part-")
    listed = sorted(o["Key"] for page in pages for o in page["Contents"])
    assert listed == summary["outputs"]
    scored = [r for key in listed for r in _read_csv(s3, bucket, key)]
    assert len(scored) == ROWS - len(bad) == len({r["row_id"] for r in scored})
    assert {r["version"] for r in scored} == {str(production)}
    classes = sorted(k for k in scored[0] if k.startswith("probability_"))
    assert classes == ["probability_Adelie", "probability_Chinstrap", "probability_Gentoo"]

    # a sample against the API: same label, same probabilities
    features = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]
    sample = random.Random(1).sample(scored, 300)
    instances = [{f: (None if r[f] == "NA" else (r[f] if f in ("island", "sex") else float(r[f]))) for f in features}
                 for r in sample]
    answer = _predict(cloud, MODEL, instances)
    assert answer.status_code == 200, answer.text
    answer = answer.json()
    assert answer["version"] == production
    assert [r["prediction"] for r in sample] == answer["predictions"]
    for r, probs in zip(sample, answer["probabilities"]):
        assert [float(r[c]) for c in classes] == pytest.approx(probs, abs=1e-6)

    # lineage: input object version + sha256, model version, output keys, status
    item = registry_module.get_batch_run(MODEL, run)
    assert item["status"] == "succeeded" and item["version"] == production
    assert item["input"]["sha256"] == summary["input"]["sha256"] and item["input"]["version_id"] == put["VersionId"]
    # the item keeps the first MAX_KEYS_IN_REGISTRY keys (a DynamoDB item is at most 400 KB); summary.json all
    from functions.batch.steps import MAX_KEYS_IN_REGISTRY

    assert item["output_keys"] == listed[:MAX_KEYS_IN_REGISTRY] and item["parts"] == len(listed)
    assert item["output_keys_complete"] == (len(listed) <= MAX_KEYS_IN_REGISTRY)
    assert item["summary_key"] == prefix + "summary.json"
    event = [e for e in events_of(cloud, "Batch Scored") if e["detail"]["run"] == run]
    assert len(event) == 1 and event[0]["detail"]["status"] == "succeeded"
    assert event[0]["detail"]["scored"] == ROWS - len(bad)


def test_no_production_version_fails_the_run_clearly_and_alarms(cloud, registry_module):
    s3 = cloud.client("s3")
    bucket = cloud.outputs["DataBucketName"]
    model = "deadline"  # configured, never trained in this module
    put = s3.put_object(Bucket=bucket, Key=f"batch/{model}/x.csv", Body=b"x1,x2\n1,2\n")
    execution = _batch_execution(cloud, put["VersionId"])
    assert execution["status"] == "FAILED"
    assert execution["error"] == "BatchFailed"
    assert "has no production version" in execution["cause"] and "BatchInputError" in execution["cause"]
    item = registry_module.get_batch_run(model, execution["name"])
    assert item["status"] == "failed" and "no production version" in item["reason"]
    failed = [e for e in events_of(cloud, "Batch Scored") if e["detail"]["run"] == execution["name"]]
    assert failed and failed[0]["detail"]["status"] == "failed"
    cloud.evaluate_alarms()
    cw = cloud.client("cloudwatch")
    state = cw.describe_alarms(AlarmNames=[f"{CONFIG['stack_name']}-batch-failed"])["MetricAlarms"][0]
    assert state["StateValue"] == "ALARM", state


def test_shipyard_batch_wait_on_a_file(cloud, production, monkeypatch, tmp_path, capsys):
    from infra import cli

    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"shipyard": CONFIG}}))
    monkeypatch.chdir(tmp_path)
    for k, v in cloud.environment().items():
        monkeypatch.setenv(k, v)
    body, bad = _batch_file(800, seed=3)
    (tmp_path / "small.csv").write_bytes(body)
    status = cli.main(["batch", MODEL, "small.csv", "--wait", "--timeout", "240"])
    out = capsys.readouterr()
    assert status == 0, out.err
    lines = out.out.splitlines()
    assert lines[0].startswith("run ") and lines[1].startswith(f"output s3://{cloud.outputs['DataBucketName']}/"
                                                                f"predictions/{MODEL}/")
    summary = json.loads("\n".join(lines[2:]))
    assert (summary["status"], summary["rows"], summary["refused"]) == ("succeeded", 800, len(bad))
    # the end says how many parts there are, even when the run finished before the first look
    assert "succeeded: 1 part file written" in out.err.splitlines(), out.err


def test_a_pinned_version_scores_with_that_version_and_a_missing_one_fails_clearly(
        cloud, registry_module, monkeypatch, tmp_path, capsys):
    """The issue's "the production version (or a pinned one)": `shipyard batch --version N`. A model
    of its own (this module's others rely on MODEL's production), trained twice on the same real
    data: two versions, one serving, the other archived or rejected; the other one is pinned."""
    from infra import cli

    model = "penguins-hgb"
    for name in ("first.csv", "again.csv"):
        execution = Run(cloud, model, realdata.penguins(), name).execution()
        assert execution["status"] == "SUCCEEDED", execution
    serving = int(registry_module.get_alias(model))
    other = next(int(v["version"]) for v in registry_module.list_versions(model)
                 if int(v["version"]) != serving and v.get("artifact_key"))
    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"shipyard": CONFIG}}))
    monkeypatch.chdir(tmp_path)
    for k, v in cloud.environment().items():
        monkeypatch.setenv(k, v)
    body, bad = _batch_file(300, seed=5)
    (tmp_path / "pinned.csv").write_bytes(body)
    assert cli.main(["batch", model, "pinned.csv", "--version", str(other), "--wait", "--timeout", "240"]) == 0
    summary = json.loads("\n".join(capsys.readouterr().out.splitlines()[2:]))
    assert (summary["status"], summary["version"], summary["scored"]) == ("succeeded", other, 300 - len(bad))
    assert other != serving

    assert cli.main(["batch", model, "pinned.csv", "--version", "99", "--wait", "--timeout", "240"]) == 1
    err = capsys.readouterr().err
    assert "failed" in err and "99" in err, err
