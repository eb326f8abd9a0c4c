"""The HTML report (functions/core/report.py): render_report on realistic data (a penguins baseline
and a drift report on a shifted copy, tests/reportdata.py), escaping, empty sections, the
distributions the drift check records, and write_report / the drift check's hook on moto."""
from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime

import boto3
import numpy as np
import pytest
from moto import mock_aws

from functions.core import report as report_mod
from functions.core.baseline import build_baseline
from functions.core.registry import ModelNotFound, Registry
from functions.core.report import (
    CONTENT_TYPE,
    current_distributions,
    reference_distribution,
    render_report,
    write_report,
)
from tests import reportdata
from tests.support import create_artifact_bucket, create_registry_table

NOW = datetime(2026, 5, 6, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def realistic():
    drift, baseline = reportdata.drift_and_baseline()
    return {"versions": reportdata.versions(), "production": 3, "drift": drift, "baseline": baseline,
            "quality": reportdata.quality_checks()}


def section(page: str, ident: str) -> str:
    m = re.search(rf'<section id="{ident}">(.*?)</section>', page, re.S)
    assert m, f"no section {ident}"
    return m.group(1)


def test_full_report_shows_every_section_with_its_values(realistic):
    page = render_report("penguins", generated_at=NOW, **realistic)
    assert page.startswith("<!DOCTYPE html>")
    assert '<b id="production">v3</b>' in page and "2026-05-06T12:00:00Z" in page
    versions = section(page, "versions")
    assert '<tr class="production"><td>v3</td><td>production</td><td>accuracy</td><td class=num>0.9855</td>' \
        '<td>v1: 0.9565</td>' in versions
    assert "accuracy 0.7101 is below min_score 0.8" in versions and "v4" in versions
    drift = section(page, "drift")
    assert "DRIFT DETECTED" in drift and "344 rows checked" in drift
    body_mass = realistic["drift"]["features"]["body_mass_g"]
    assert body_mass["drifted"] and f"{body_mass['value']:.4g}" in drift and f"{body_mass['threshold']:.4g}" in drift
    for name in reportdata.NUMERIC + reportdata.STRINGS:
        assert f"<figcaption>{name}</figcaption><svg" in drift, name
    assert drift.count("<svg") == 6 and "current (342 rows)" in drift  # 2 of 344 penguins have no measurements
    quality = section(page, "quality")
    assert "production accuracy per quality check" in quality and "min_score 0.8" in quality
    assert quality.count("<svg") == 1 and "DEGRADED" in quality
    confusion = section(page, "confusion")
    for label in reportdata.CLASSES:
        assert f"<th>{label}</th>" in confusion
    assert ">61</td>" in confusion and ">46</td>" in confusion and "160 labelled rows" in confusion


def test_page_is_self_contained_no_script_no_remote_resource(realistic):
    page = render_report("penguins", generated_at=NOW, **realistic)
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"url\(|@import", page, re.I)
    assert "http://" not in page and "https://" not in page  # pygal's comments and xmlns are stripped


def test_every_user_string_is_escaped():
    evil = "<script>alert(1)</script>"
    drift, baseline = reportdata.drift_and_baseline(extra_feature=evil)
    versions = reportdata.versions()
    versions[1]["reason"] = f"bad {evil}"
    quality = reportdata.quality_checks()
    quality[0]["versions"]["3"]["confusion_matrix"]["labels"] = ["Adelie", evil, "<b>Gentoo</b>"]
    quality[0]["reason"] = evil
    page = render_report(f"pen{evil}", versions=versions, production=3, drift=drift, baseline=baseline,
                         quality=quality, generated_at=NOW)
    assert "<script" not in page.lower() and "<b>Gentoo</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f"<figcaption>{evil.replace('<', '&lt;').replace('>', '&gt;')}</figcaption><svg" in page
    assert "&lt;b&gt;Gentoo&lt;/b&gt;" in page


def test_each_empty_section_says_so():
    page = render_report("iris", versions=[], production=None, drift=None, baseline=None, quality=None,
                         generated_at="2026-05-06T12:00:00Z")
    assert '<b id="production">none yet</b>' in page
    assert "no versions yet" in section(page, "versions")
    assert "no drift check yet" in section(page, "drift")
    assert "no quality checks yet" in section(page, "quality")
    assert "no quality checks yet" in section(page, "confusion")
    assert "<svg" not in page


def test_skipped_drift_check_and_old_report_without_distributions(realistic):
    skipped = {"model": "penguins", "version": 3, "rows": 12, "skipped": True, "drift_detected": False,
               "drifted_share": 0.0, "share": 0.5, "features": {}, "checked_at": "2026-05-05T00:00:00.000Z",
               "reason": "12 captured rows in the last 7 days, fewer than min_rows=500: not checked"}
    page = render_report("penguins", versions=[], production=3, drift=skipped, baseline=realistic["baseline"],
                         quality=[], generated_at=NOW)
    drift = section(page, "drift")
    assert "skipped" in drift and "fewer than min_rows=500" in drift
    # The baseline still gives the reference distributions.
    assert drift.count("<svg") == 6 and "reference only" in drift
    old = {k: v for k, v in realistic["drift"].items() if k != "distributions"}
    drift = section(render_report("penguins", versions=[], production=3, drift=old, baseline=realistic["baseline"],
                                  quality=[], generated_at=NOW), "drift")
    assert drift.count("<svg") == 6 and drift.count("reference only") == 6


def test_regression_quality_shows_residuals():
    quality = reportdata.quality_checks(2)
    for q in quality:
        q["metric"], q["min_score"] = "r2", 0.3
    quality[0]["versions"] = {"3": {"labelled": 90, "score": 0.41, "residuals": {
        "count": 90, "mean": -1.25, "mae": 21.5, "rmse": 30.25, "p50": 15.5, "p90": 49.0, "p99": 88.0}}}
    page = render_report("diabetes", versions=[], production=3, drift=None, baseline=None, quality=quality,
                         generated_at=NOW)
    confusion = section(page, "confusion")
    assert "Residuals" in confusion and "<svg" in confusion and "30.25" in confusion and "88" in confusion
    assert "Confusion matrix" not in confusion


def test_quality_without_any_score_says_not_enough_labels():
    quality = reportdata.quality_checks(2)
    for q in quality:
        q.update(score=None, skipped=True, reason="12 labelled rows, fewer than min_labels=50")
    quality[0].pop("versions")
    page = render_report("penguins", versions=[], production=3, drift=None, baseline=None, quality=quality,
                         generated_at=NOW)
    assert "no scored quality check yet" in section(page, "quality")
    assert "holds no per-version results" in section(page, "confusion")


def test_distributions_hold_reference_and_current_shares_on_the_same_bins(realistic):
    base = realistic["baseline"]
    cols = reportdata.columns()
    same = current_distributions(base, cols)
    mass = same["body_mass_g"]
    assert len(mass["edges"]) == report_mod.NUMERIC_BINS + 1
    assert len(mass["reference"]) == len(mass["current"]) == report_mod.NUMERIC_BINS + 2
    assert sum(mass["reference"]) == pytest.approx(1.0) and sum(mass["current"]) == pytest.approx(1.0)
    # On the training data itself, current matches reference up to the sketch's interpolation.
    assert max(abs(a - b) for a, b in zip(mass["reference"], mass["current"])) < 0.03
    shifted = current_distributions(base, reportdata.shifted(cols))
    assert shifted["body_mass_g"]["current"][-1] > 0.05 > shifted["body_mass_g"]["reference"][-1]
    island = shifted["island"]
    assert island["categories"][-1] == "(other)" and set(island["categories"][:-1]) == {"Biscoe", "Dream", "Torgersen"}
    biscoe = island["categories"].index("Biscoe")
    assert island["current"][biscoe] > 0.8 > island["reference"][biscoe]


def test_discrete_numeric_and_unseen_categories():
    rng = np.random.default_rng(0)
    cols = {"n": rng.integers(0, 4, 1000).astype(float), "c": np.array(rng.choice(["a", "b"], 1000), dtype=object)}
    base = build_baseline(cols, {"features": [{"name": "n", "type": "number"}, {"name": "c", "type": "string"}]},
                          window=100)
    assert "values" in base["features"]["n"]
    ref = reference_distribution(base["features"]["n"])
    assert sum(ref["reference"]) == pytest.approx(1.0)
    cur = current_distributions(base, {"n": cols["n"], "c": np.array(["a", "zz", "zz", None], dtype=object)})
    cats = cur["c"]["categories"]
    assert sorted(cats[:2]) == ["a", "b"] and cats[2:] == ["zz", "(other)"]  # training's first, by count
    assert dict(zip(cats, cur["c"]["current"])) == pytest.approx({"a": 1 / 3, "b": 0.0, "zz": 2 / 3, "(other)": 0.0})


# --------------------------------------------------------------------------- write_report and the drift hook


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_registry_table(ddb, "registry")
        create_artifact_bucket(s3, "artifacts")
        yield {"s3": s3, "registry": Registry("registry", client=ddb, known_models=["penguins", "iris"])}


def _production(aws, baseline):
    registry = aws["registry"]
    v = registry.allocate_version("penguins")["version"]
    prefix = f"models/penguins/v{v}/"
    body = json.dumps(baseline).encode()
    registry.record_candidate("penguins", v, artifact_key=prefix + "model.onnx", artifact_sha256="ab" * 32,
                              schema=reportdata.SCHEMA, metrics={"accuracy": 0.97},
                              lineage={"artifacts": {"baseline.json": {
                                  "key": prefix + "baseline.json", "sha256": hashlib.sha256(body).hexdigest()}}})
    registry.promote("penguins", v, reason="test", actor="test")
    aws["s3"].put_object(Bucket="artifacts", Key=prefix + "baseline.json", Body=body)
    return v


def test_write_report_gathers_from_registry_and_bucket(aws, realistic):
    s3 = aws["s3"]
    key = write_report(s3, "artifacts", aws["registry"], "penguins", now=NOW)
    assert key == "reports/penguins/2026-05-06T12-00-00.000Z.html"
    obj = s3.get_object(Bucket="artifacts", Key=key)
    assert obj["ContentType"] == CONTENT_TYPE
    page = obj["Body"].read().decode()
    assert "no versions yet" in page and "no drift check yet" in page and "no quality checks yet" in page

    v = _production(aws, realistic["baseline"])
    older = {**realistic["drift"], "checked_at": "2026-05-01T00:00:00.000Z", "drifted_share": 0.123456}
    s3.put_object(Bucket="artifacts", Key="drift/penguins/2026-05-01T00-00-00.000Z.json", Body=json.dumps(older))
    s3.put_object(Bucket="artifacts", Key="drift/penguins/2026-05-04T10-00-00.000Z.json",
                  Body=json.dumps(realistic["drift"]))
    newest = realistic["quality"][0]
    s3.put_object(Bucket="artifacts", Key="quality/penguins/2026-05-06T12-00-00.000Z.json", Body=json.dumps(newest))
    key = write_report(s3, "artifacts", aws["registry"], "penguins", now=datetime(2026, 5, 6, 13, tzinfo=UTC))
    page = s3.get_object(Bucket="artifacts", Key=key)["Body"].read().decode()
    assert f'<b id="production">v{v}</b>' in page
    assert "2026-05-04T10:00:00.000Z" in page and "0.1235" not in page  # the newest drift report
    assert "<th>Chinstrap</th>" in page  # the newest quality JSON, without a registry history
    with pytest.raises(ModelNotFound):
        write_report(s3, "artifacts", aws["registry"], "nope")


def test_write_report_reads_quality_history_when_the_registry_has_it(aws, realistic):
    class WithHistory:
        def __init__(self, inner, history):
            self.inner, self.history = inner, history

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def quality_history(self, model, limit=None):
            return self.history

    summaries = [{k: v for k, v in q.items() if k != "versions"} for q in realistic["quality"]]
    s3 = aws["s3"]
    s3.put_object(Bucket="artifacts", Key="quality/penguins/x.json", Body=json.dumps(realistic["quality"][0]))
    key = write_report(s3, "artifacts", WithHistory(aws["registry"], summaries), "penguins", now=NOW)
    quality = section(s3.get_object(Bucket="artifacts", Key=key)["Body"].read().decode(), "quality")
    assert quality.count("<tr") == 1 + 6  # header + one row per check: the newest JSON merged, not added
    for q in summaries:
        assert q["checked_at"] in quality


def test_drift_check_writes_the_html_report_and_a_failure_does_not_fail_it(aws, realistic, monkeypatch):
    from functions.drift.check import DriftSettings, run_check
    _production(aws, realistic["baseline"])
    rows = [{n: (None if isinstance(c[i], float) and np.isnan(c[i]) else
                 (float(c[i]) if n in reportdata.NUMERIC else c[i])) for n, c in reportdata.shifted(
        reportdata.columns()).items()} for i in range(344)]
    aws["s3"].put_object(Bucket="artifacts", Key=f"capture/penguins/{NOW:%Y/%m/%d/%H}/c-1",
                         Body=json.dumps({"captured_at": NOW.isoformat(), "version": 1, "instances": rows}) + "\n")
    report = run_check("penguins", registry=aws["registry"], s3=aws["s3"], bucket="artifacts",
                       settings=DriftSettings(window=500, min_rows=100), now=NOW, emit=None)
    assert report["drift_detected"] and report["html_report_key"] == "reports/penguins/2026-05-06T12-00-00.000Z.html"
    stored = json.loads(aws["s3"].get_object(Bucket="artifacts", Key=report["report_key"])["Body"].read())
    assert set(stored["distributions"]) == set(reportdata.NUMERIC + reportdata.STRINGS)
    page = aws["s3"].get_object(Bucket="artifacts", Key=report["html_report_key"])["Body"].read().decode()
    assert "DRIFT DETECTED" in page and "current (342 rows)" in page

    def broken(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr("functions.drift.check.write_report", broken)
    again = run_check("penguins", registry=aws["registry"], s3=aws["s3"], bucket="artifacts",
                      settings=DriftSettings(window=500, min_rows=100), now=datetime(2026, 5, 6, 12, 5, tzinfo=UTC),
                      emit=None)
    assert again["html_report_key"] is None and again["drift_detected"]


def test_drift_cli_output_names_the_html_report():
    from infra.cli import format_drift_report
    out = format_drift_report({"model": "penguins", "version": 3, "skipped": True, "reason": "few rows",
                               "report_uri": "s3://b/drift/penguins/x.json",
                               "html_report_uri": "s3://b/reports/penguins/x.html"})
    assert "html report: s3://b/reports/penguins/x.html" in out
