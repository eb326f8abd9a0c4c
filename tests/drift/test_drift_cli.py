"""`shipyard drift check`: the text it prints, and its errors (the happy path runs in test_drift_local)."""
from __future__ import annotations

import json

import boto3
from moto import mock_aws

from infra import cli

REPORT = {
    "model": "iris", "version": 3, "rows": 500, "window": 500, "drift_detected": True, "drifted_share": 2 / 3,
    "share": 0.5, "skipped": False, "reason": None, "report_key": "drift/iris/2025-01-01T00-00-00.000Z.json",
    "report_uri": "s3://artifacts/drift/iris/2025-01-01T00-00-00.000Z.json",
    "features": {
        "quiet": {"type": "number", "statistic": "wasserstein", "value": 0.02, "threshold": 0.1, "drifted": False,
                  "ks": 0.03, "psi": 0.01, "missing_rate": 0.0, "reason": None},
        "colour": {"type": "string", "statistic": "jensen_shannon", "value": 0.4, "threshold": 0.1, "drifted": True,
                   "chi2_p_value": 0.0, "unseen_share": 0.25, "psi": 1.2, "missing_rate": 0.0, "reason": None},
        "x": {"type": "number", "statistic": "wasserstein", "value": 0.9, "threshold": 0.1, "drifted": True,
              "ks": 0.4, "psi": 0.8, "missing_rate": 0.1, "reason": None},
    },
}


def test_table_lists_drifted_features_first_by_how_far_over_the_threshold():
    lines = cli.format_drift_report(REPORT).splitlines()
    assert lines[0] == ("model iris v3: DRIFT DETECTED: 2 of 3 features drifted (share 0.67, alarm at >= 0.50), "
                        "500 rows checked")
    assert lines[1].split() == ["feature", "type", "statistic", "value", "threshold", "drift", "details"]
    assert [line.split()[0] for line in lines[3:6]] == ["x", "colour", "quiet"]
    assert [line.split()[5] for line in lines[3:6]] == ["DRIFTED", "DRIFTED", "ok"]
    assert "unseen=0.250" in lines[4] and "ks=0.400" in lines[3]
    assert lines[-1] == "report: s3://artifacts/drift/iris/2025-01-01T00-00-00.000Z.json"


def test_skipped_check_says_why():
    text = cli.format_drift_report({**REPORT, "skipped": True, "version": None, "features": {},
                                    "reason": "model 'iris' has no production version yet: nothing to compare"})
    assert text.splitlines() == ["model iris: check skipped: model 'iris' has no production version yet: "
                                 "nothing to compare", "report: s3://artifacts/drift/iris/2025-01-01T00-00-00.000Z.json"]


def test_missing_drift_function_is_a_clear_error(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        assert cli.main(["--stack", "Yard", "drift", "check", "iris"]) == 1
    err = capsys.readouterr().err
    assert "drift function 'Yard-drift' of stack 'Yard' not found" in err and "--function" in err


def test_function_error_is_reported_with_exit_1(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)

    class Payload:
        def read(self):
            return json.dumps({"errorType": "BaselineMissing", "errorMessage": "no baseline at s3://a/b"}).encode()

    class Client:
        def invoke(self, **kw):
            assert kw["FunctionName"] == "custom" and json.loads(kw["Payload"]) == {"model": "iris"}
            return {"FunctionError": "Unhandled", "Payload": Payload()}

    monkeypatch.setattr(boto3, "client", lambda *a, **k: Client())
    assert cli.main(["drift", "check", "iris", "--function", "custom"]) == 1
    assert "the drift check of model 'iris' failed: BaselineMissing: no baseline at s3://a/b" in capsys.readouterr().err
