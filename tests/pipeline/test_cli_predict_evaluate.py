"""shipyard predict and evaluate on the local cloud: the real stack, models trained by its pipeline,
the CLI calling the API over SigV4-signed HTTP (infra/predict.py, infra/evaluate.py)."""
from __future__ import annotations

import csv
import io
import json

import pytest

from tests import models, realdata
from tests.pipeline.conftest import CONFIG


@pytest.fixture(scope="module")
def trained(cloud):
    """animals (string labels), wine-logistic (real data) and mass-rf (penguins' body mass: two rows
    without one) trained and promoted by the pipeline; their production versions."""
    from functions.core.registry import Registry
    from tests.pipeline.conftest import Run, data

    runs = [Run(cloud, "animals", data.animals(seed=11), "cli.csv"),
            Run(cloud, "wine-logistic", realdata.sklearn_csv("wine"), "wine.csv"),
            Run(cloud, "mass-rf", realdata.penguins(), "penguins.csv")]
    for r in runs:
        assert r.execution()["status"] == "SUCCEEDED"
    registry = Registry(cloud.outputs["RegistryTableName"], client=cloud.client("dynamodb"),
                        audit_table=cloud.outputs["AuditTableName"])
    versions = {r.model: registry.get_alias(r.model) for r in runs}
    assert all(versions.values()), versions
    return {m: registry.get_version(m, int(v)) for m, v in versions.items()}


@pytest.fixture
def shipyard(cloud, trained, monkeypatch, tmp_path, capsys):
    """``shipyard ARGS…`` against the local cloud: (exit status, stdout, stderr)."""
    from infra import cli

    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"shipyard": CONFIG}}))
    monkeypatch.chdir(tmp_path)
    for k, v in cloud.environment().items():
        monkeypatch.setenv(k, v)

    def call(*argv: str):
        status = cli.main(list(argv))
        out = capsys.readouterr()
        return status, out.out, out.err
    return call


def _animals_with_ids(n: int, seed: int) -> tuple[bytes, list[str]]:
    columns, rows = models.classification_table(n=n, seed=seed)
    ids = [f"r{i:05d}" for i in range(n)][::-1]  # not sorted, so order is the file's
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["customer", *columns])  # the target column too, as a training-shaped export
    for i, row in zip(ids, rows):
        writer.writerow([i, *("" if v is None else v for v in row)])
    return buf.getvalue().encode(), ids


def test_a_2500_row_file_is_predicted_in_3_requests_with_its_ids_in_order(shipyard, trained, tmp_path):
    body, ids = _animals_with_ids(2500, seed=12)
    (tmp_path / "big.csv").write_bytes(body)
    status, out, err = shipyard("predict", "animals", "big.csv", "--id-column", "customer", "--output", "out.csv")
    assert status == 0, err
    version = trained["animals"]["version"]
    assert out.strip() == f"model animals v{version}: 2,500 of 2,500 rows predicted in 3 requests, written to out.csv"
    assert "leaving out column 'species'" in err
    assert [line for line in err.splitlines() if line.startswith("shipyard: request")] == [
        "shipyard: request 1/3: 1,000 of 2,500 rows predicted", "shipyard: request 2/3: 2,000 of 2,500 rows predicted",
        "shipyard: request 3/3: 2,500 of 2,500 rows predicted"]
    written = list(csv.reader((tmp_path / "out.csv").open()))
    classes = trained["animals"]["schema"]["classes"]
    assert written[0] == ["customer", "line", "prediction", *(f"probability_{c}" for c in classes), "version",
                          "inference_id"]
    assert [r[0] for r in written[1:]] == ids and [int(r[1]) for r in written[1:]] == list(range(2, 2502))
    assert {r[2] for r in written[1:]} <= set(classes) and {r[-2] for r in written[1:]} == {str(version)}
    assert all(abs(sum(map(float, r[3:-2])) - 1) < 1e-3 for r in written[1:])
    assert len({r[-1] for r in written[1:]}) == 2500  # the API's generated inference ids: one per row


def test_an_excel_csv_with_a_bom_is_predicted(shipyard, tmp_path):
    columns, rows = models.classification_table(n=8, seed=13)
    rows = rows[:5]
    text = ";".join(columns[:3]) + "\n" + "\n".join(";".join("" if v is None else str(v) for v in r[:3])
                                                     for r in rows) + "\n"
    (tmp_path / "excel.csv").write_bytes(text.encode("utf-8-sig"))  # Excel's "CSV UTF-8", a semicolon list
    status, out, err = shipyard("predict", "animals", "excel.csv", "--json")
    assert status == 0, err
    answer = json.loads(out)
    assert len(answer["predictions"]) == 5 and answer["lines"] == [2, 3, 4, 5, 6]


def test_a_missing_id_column_is_a_clear_error(shipyard, tmp_path):
    body, _ = _animals_with_ids(10, seed=14)
    (tmp_path / "f.csv").write_bytes(body)
    status, out, err = shipyard("predict", "animals", "f.csv", "--id-column", "customer_id")
    assert status == 1 and out == ""
    assert err.strip() == ("shipyard: f.csv: no column 'customer_id' for --id-column; the columns are "
                           "['customer', 'x1', 'x2', 'colour', 'species']")
    status, _, err = shipyard("predict", "animals", "f.csv", "--id-column", "colour")
    assert status == 1 and "--id-column 'colour' is a feature of model 'animals'" in err


def test_a_refused_row_is_reported_by_line_and_the_rest_written(shipyard, tmp_path):
    body, ids = _animals_with_ids(1200, seed=15)
    lines = body.decode().splitlines()
    cells = lines[1100].split(",")
    cells[1] = "1e999"  # line 1101: not a finite number, sent as text: the API refuses it
    lines[1100] = ",".join(cells)
    (tmp_path / "f.csv").write_text("\n".join(lines) + "\n")
    status, out, err = shipyard("predict", "animals", "f.csv", "--id-column", "customer", "-o", "out.csv")
    print(out, err)  # shown with -s
    assert status == 1
    assert "1,199 of 1,200 rows predicted" in out
    assert "shipyard: request 2: line 1101 refused: feature 'x1' must be a number (or null), got string '1e999'" in err
    written = list(csv.reader((tmp_path / "out.csv").open()))
    assert [r[0] for r in written[1:]] == ids[:1099] + ids[1100:]


def test_evaluate_on_real_data_agrees_with_the_registrys_holdout_metric(shipyard, trained, tmp_path):
    (tmp_path / "wine.csv").write_bytes(realdata.sklearn_csv("wine"))
    status, out, err = shipyard("evaluate", "wine-logistic", "wine.csv", "--json")
    assert status == 0, err
    result = json.loads(out)
    recorded = trained["wine-logistic"]["metrics"]
    assert result["version"] == trained["wine-logistic"]["version"] and result["production"] is True
    assert result["metric"] == recorded["metric"] == "accuracy"
    assert result["rows"] == {"file": 178, "scored": 178, "without_target": 0, "without_target_lines": [],
                              "refused": 0}
    # the whole file (its training rows too) scores about as well as the holdout did
    assert result["value"] == pytest.approx(float(recorded["accuracy"]), abs=0.1)
    assert result["recorded"]["value"] == pytest.approx(float(recorded["accuracy"]))
    cm = result["confusion_matrix"]
    assert cm["labels"] == trained["wine-logistic"]["schema"]["classes"]
    assert sum(map(sum, cm["matrix"])) == 178
    assert sum(cm["matrix"][i][i] for i in range(len(cm["labels"]))) / 178 == pytest.approx(result["value"])

    status, out, _ = shipyard("evaluate", "wine-logistic", "wine.csv")
    print(out)  # shown with -s
    assert status == 0
    assert "accuracy  " in out and "confusion matrix (rows: true label, columns: predicted)" in out


def test_evaluate_a_regressor_skips_rows_without_a_target(shipyard, trained, tmp_path):
    (tmp_path / "penguins.csv").write_bytes(realdata.penguins())
    version = trained["mass-rf"]["version"]
    status, out, err = shipyard("evaluate", "mass-rf", "penguins.csv", "--version", str(version), "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["rows"]["scored"] == 342 and result["rows"]["without_target_lines"] == [5, 273]
    recorded = trained["mass-rf"]["metrics"]
    assert result["metric"] == "r2" and result["value"] == pytest.approx(float(recorded["r2"]), abs=0.15)
    res = result["residuals"]
    assert res["rows"] == 342 and res["min"] <= res["p25"] <= res["median"] <= res["p75"] <= res["max"]
    assert res["rmse"] == pytest.approx(result["metrics"]["rmse"]["value"])
    status, out, _ = shipyard("evaluate", "mass-rf", "penguins.csv")
    print(out)  # shown with -s
    assert status == 0 and "2 without a target skipped (lines 5, 273)" in out and "RMSE" in out


def test_evaluate_a_version_that_does_not_exist_is_a_clear_error(shipyard, tmp_path):
    (tmp_path / "wine.csv").write_bytes(realdata.sklearn_csv("wine"))
    status, out, err = shipyard("evaluate", "wine-logistic", "wine.csv", "--version", "99")
    assert status == 1 and out == ""
    assert err.startswith("shipyard: model 'wine-logistic' has no version 99 (its versions: ")
    assert "Traceback" not in err
