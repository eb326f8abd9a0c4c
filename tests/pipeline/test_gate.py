"""The gate a bad dataset cannot pass, end to end on the local cloud (real data: iris).

A dataset with two labels swapped is learnt perfectly well and scores 1.0 on its own holdout; only
production's stored holdout and the trusted evaluation sets (``evaluation/<model>/*.csv``) show
it disagrees with what production learned. Each run's decision, with every score, is in the
version record (``metrics.validation.comparisons``) and, for a promotion, in the audit event.
"""
from __future__ import annotations

import csv
import io

import pytest

from tests import realdata

pytestmark = pytest.mark.slow


def _swapped(a: str, b: str) -> bytes:
    """iris with every `a` labelled `b` and every `b` labelled `a`."""
    rows = list(csv.reader(io.StringIO(realdata.sklearn_csv("iris").decode())))
    swap = {a: b, b: a}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(rows[0])
    for row in rows[1:]:
        writer.writerow(row[:-1] + [swap.get(row[-1], row[-1])])
    return out.getvalue().encode()


def _version(registry, model, r):
    (rec,) = registry.versions_from_dataset(r.bucket, r.key, r.version_id)
    return registry.get_version(model, rec["version"])


def test_a_label_flipped_upload_is_rejected_on_productions_holdout(run, registry):
    first = run("flip", realdata.sklearn_csv("iris"), "iris.csv")
    assert first.execution()["status"] == "SUCCEEDED"
    v1 = _version(registry, "flip", first)
    assert v1["status"] == "production"

    flipped = run("flip", _swapped("setosa", "versicolor"), "flipped.csv")
    assert flipped.execution()["status"] == "SUCCEEDED"
    v2 = _version(registry, "flip", flipped)
    assert v2["status"] == "rejected", v2.get("reason")
    validation = v2["metrics"]["validation"]
    assert validation["candidate_score"] > 0.9  # its own (flipped) holdout looks fine
    (own,) = [c for c in validation["comparisons"] if c["set"] == f"production v{v1['version']}'s holdout"]
    assert own["candidate"] < 0.5 < own["production"]
    assert f"on production v{v1['version']}'s holdout" in v2["reason"] and "labelling disagree" in v2["reason"]
    assert registry.get_alias("flip") == v1["version"]


def test_trusted_evaluation_sets_gate_every_candidate_and_are_recorded(cloud, run, registry):
    s3, bucket = cloud.client("s3"), cloud.outputs["DataBucketName"]
    iris = realdata.sklearn_csv("iris")
    header, *lines = iris.decode().splitlines()
    s3.put_object(Bucket=bucket, Key="evaluation/trusted/holdout-2025.csv",
                  Body=("\n".join([header] + lines[::3]) + "\n").encode())
    s3.put_object(Bucket=bucket, Key="evaluation/trusted/broken.csv", Body=b"not,the,columns\n1,2,3\n")

    first = run("trusted", iris, "iris.csv")
    assert first.execution()["status"] == "SUCCEEDED"
    v1 = _version(registry, "trusted", first)
    assert v1["status"] == "production", v1.get("reason")
    by_set = {c["set"]: c for c in v1["metrics"]["validation"]["comparisons"]}
    assert by_set["evaluation/trusted/holdout-2025.csv"]["candidate"] > 0.9
    assert by_set["evaluation/trusted/holdout-2025.csv"]["rows"] == 50
    assert "target column 'target' not found" in by_set["evaluation/trusted/broken.csv"]["error"]  # recorded
    assert "on evaluation/trusted/holdout-2025.csv" in v1["metrics"]["validation"]["reason"]
    audit = registry.last_event("trusted", "production")
    assert audit["to_version"] == v1["version"] and "evaluation/trusted/holdout-2025.csv" in audit["reason"]

    # A dataset that disagrees with production and with the trusted set: its own holdout says 0.93.
    flipped = run("trusted", _swapped("versicolor", "virginica"), "flipped.csv")
    flipped.execution()
    v2 = _version(registry, "trusted", flipped)
    assert v2["status"] == "rejected" and f"on production v{v1['version']}'s holdout" in v2["reason"]
    scored = {c["set"]: c for c in v2["metrics"]["validation"]["comparisons"]}
    trusted = scored["evaluation/trusted/holdout-2025.csv"]
    assert trusted["candidate"] < 0.8 <= trusted["production"]  # would have failed there too
    assert registry.get_alias("trusted") == v1["version"]
