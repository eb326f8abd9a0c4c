"""Batch scoring of CSV rows (functions/core/batchscore.py) on real scikit-learn models converted to ONNX:
every valid row scored like the API scores it, every bad row refused with its line, column and the
API's own message, never failing the batch."""
from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest

from functions.core.batchscore import (
    BatchInputError,
    check_header,
    field_counts,
    output_header,
    score_batch,
)
from functions.core.onnx_model import OnnxModel
from functions.core.schema import SchemaError
from tests import models


@pytest.fixture(scope="module")
def clf():
    trained = models.classifier()
    return trained, OnnxModel.from_bytes(trained.onnx, trained.schema)


@pytest.fixture(scope="module")
def reg():
    trained = models.regressor()
    return trained, OnnxModel.from_bytes(trained.onnx, trained.schema)


def csv_items(columns, rows, start=0):
    """Rows as Step Functions' CSV reader gives them: every value a string, keyed by the header."""
    return [{"index": start + i, "row": {c: "" if v is None else str(v) for c, v in zip(columns, r)}}
            for i, r in enumerate(rows)]


def read(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def api_answer(model: OnnxModel, instances):
    """What POST /models/{name}/predict computes: the schema's validation, then OnnxModel.predict."""
    return model.predict(model.schema.to_feeds(instances))


def test_valid_rows_match_the_api_including_probabilities(clf):
    trained, model = clf
    columns = ["id", *trained.columns]  # an id column and the target are carried through
    rows = [[f"r{i}", *r] for i, r in enumerate(trained.rows[:50])]
    result = score_batch(model, 3, columns, csv_items(columns, rows))
    assert (result.rows, result.scored, result.refused, result.errors_csv) == (50, 50, 0, None)
    out = read(result.part_csv)
    assert list(out[0]) == columns + ["prediction", "probability_cat", "probability_dog", "probability_fish",
                                      "version"]
    instances = [{f: (None if r[trained.columns.index(f)] is None else r[trained.columns.index(f)])
                  for f in trained.schema.names} for r in trained.rows[:50]]
    expected = api_answer(model, instances)
    assert [o["prediction"] for o in out] == expected["predictions"]
    got = [[float(o[f"probability_{c}"]) for c in ("cat", "dog", "fish")] for o in out]
    assert got == expected["probabilities"]  # the very numbers the API answers
    assert {o["version"] for o in out} == {"3"}
    assert [o["id"] for o in out] == [f"r{i}" for i in range(50)]
    # a missing cell (None in the table, "" in the CSV) is imputed, not refused
    assert out[3]["x1"] == "" and out[7]["colour"] == ""


def test_bad_cells_are_refused_per_row_with_the_apis_message(clf):
    trained, model = clf
    columns = trained.columns
    rows = [list(r) for r in trained.rows[:12]]
    rows[1][0] = "abc"          # text in a numeric column
    rows[2][1] = "inf"          # not a finite number
    rows[4][0] = "1e39"         # beyond float32
    rows[5][1] = "NaN"          # a missing value, as in the datasets: imputed
    rows[6][0] = "twelve"
    rows[6][1] = "x"            # two bad cells in one row: two error lines, one refused row
    result = score_batch(model, 1, columns, csv_items(columns, rows, start=100))
    assert (result.rows, result.scored, result.refused) == (12, 8, 4)
    assert result.errors_by_kind == {"not_a_number": 3, "out_of_range": 1}
    errors = read(result.errors_csv)
    assert [(e["line"], e["column"], e["value"]) for e in errors] == [
        ("103", "x1", "abc"), ("104", "x2", "inf"), ("106", "x1", "1e39"), ("108", "x1", "twelve"), ("108", "x2", "x")]
    # exactly what the API answers for the same cell sent as JSON
    with pytest.raises(SchemaError) as api:
        model.schema.to_feeds([{"x1": "abc", "x2": 1.0, "colour": "red"}])
    assert errors[0]["message"] == str(api.value).removeprefix("instance 0: ")
    assert "out of range" in errors[2]["message"]
    scored = read(result.part_csv)
    assert len(scored) == 8 and {s["x1"] for s in scored}.isdisjoint({"abc", "1e39", "twelve"})
    assert any(s["x2"] == "NaN" for s in scored)


def test_missing_and_extra_columns_and_ragged_rows(reg):
    trained, model = reg
    columns = trained.columns  # region, x1, x2, price
    items = csv_items(columns, trained.rows[:6])
    del items[1]["row"]["x2"]                     # a row without a column
    items[2]["row"]["colour"] = "blue"            # a row with a column the header does not have
    ragged = {3: 3, 4: 6}                         # Prepare's count: fewer and more fields than the header
    result = score_batch(model, 2, columns, items, ragged=ragged)
    assert (result.scored, result.refused) == (2, 4)
    assert result.errors_by_kind == {"missing_column": 1, "extra_column": 1, "ragged_row": 2}
    errors = {(e["line"], e["column"]): e["message"] for e in read(result.errors_csv)}
    assert "missing" in errors[("3", "x2")] and "not in the header" in errors[("4", "colour")]
    assert errors[("5", "")].startswith("line 5 has 3 fields, expected 4")
    assert "extra fields" in errors[("6", "")]
    out = read(result.part_csv)
    assert list(out[0]) == [*columns, "prediction", "version"]  # a regressor: no probability columns
    expected = api_answer(model, [{f: r[columns.index(f)] for f in model.schema.names}
                                  for r in (trained.rows[0], trained.rows[5])])["predictions"]
    np.testing.assert_allclose([float(o["prediction"]) for o in out], expected, rtol=1e-6)


def test_a_batch_of_only_bad_rows_writes_errors_and_no_part(reg):
    trained, model = reg
    items = csv_items(trained.columns, [["north", "x", "1", "0"], ["south", "1", "y", "0"]])
    result = score_batch(model, 1, trained.columns, items)
    assert (result.scored, result.refused, result.part_csv) == (0, 2, None)
    assert len(read(result.errors_csv)) == 2


def test_quoted_cells_survive_the_output(clf):
    trained, model = clf
    columns = ["note", *trained.columns]
    rows = [['a, "quoted"\nnote', *trained.rows[0]], ["plain", *trained.rows[1]]]
    out = read(score_batch(model, 1, columns, csv_items(columns, rows)).part_csv)
    assert [o["note"] for o in out] == ['a, "quoted"\nnote', "plain"]


def test_output_header_and_header_check(clf):
    trained, model = clf
    assert output_header(["a"], model)[-5:] == ["prediction", "probability_cat", "probability_dog",
                                                "probability_fish", "version"]
    check_header(["id", "x1", "x2", "colour"], model.schema.names)
    with pytest.raises(BatchInputError, match=r"lacks the model's features \['colour'\]"):
        check_header(["x1", "x2"], model.schema.names)
    with pytest.raises(BatchInputError, match="duplicate"):
        check_header(["x1", "x1", "x2", "colour"], model.schema.names)
    # a semicolon file (as spreadsheets in many locales save) reads as one column: say so
    with pytest.raises(BatchInputError, match="looks ';'-separated; batch files must be comma-separated"):
        check_header(["x1;x2;colour"], model.schema.names)
    with pytest.raises(BatchInputError, match=re.escape("looks '\\t'-separated")):
        check_header(["x1\tx2\tcolour"], model.schema.names)


def test_field_counts_finds_ragged_rows_and_multiline_records():
    text = 'a,b,c\n1,2,3\n4,5\n\n6,7,8,9\n"x\ny",1,2\n'
    counts = field_counts(io.StringIO(text, newline=""))
    assert counts["header"] == ["a", "b", "c"] and counts["rows"] == 4
    assert counts["ragged"] == {1: 2, 2: 4} and counts["lines_exact"] is False
    assert field_counts(io.StringIO("a,b\n1,2\n3,4\n"))["lines_exact"] is True
