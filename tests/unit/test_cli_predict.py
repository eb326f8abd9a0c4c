"""shipyard predict / evaluate without a cloud: splitting, version pinning, refused rows, the id column,
reading (BOM, dialects), output, and the evaluation's confusion matrix and residuals."""
from __future__ import annotations

import csv
import json
import re
import urllib.parse
from pathlib import Path

import pytest

from infra import evaluate as ev
from infra import predict as pr

SCHEMA = {"target": "species", "task": "classification", "classes": ["cat", "dog"],
          "features": [{"name": "x1", "type": "number"}, {"name": "colour", "type": "string"}]}


class FakeApi:
    """The API's answers: a 1000-instance limit (413 past it), 'instance i:' 400s for bad rows,
    production v3 (v2 exists too); predicts 'dog' when x1 > 0."""

    def __init__(self, limit: int = 1000, production: int = 3):
        self.limit, self.production = limit, production
        self.calls: list[tuple[str, str, dict | None]] = []
        self.requests = 0  # the answered predictions: generated inference ids are "req<n>-<index>"

    def __call__(self, method, url, data, auth, api_key=None):
        parsed = urllib.parse.urlsplit(url)
        body = json.loads(data) if data else None
        self.calls.append((method, parsed.path + (f"?{parsed.query}" if parsed.query else ""), body))
        if method == "GET" and parsed.path == "/models/animals":
            return self.answer(200, {"name": "animals", "aliases": {"production": self.production},
                                     "versions": [{"version": 2}, {"version": 3}]})
        m = re.fullmatch(r"/models/animals/versions/(\d+)", parsed.path)
        if method == "GET" and m:
            if int(m.group(1)) not in (2, 3):
                return self.answer(404, {"message": f"model 'animals' has no version {m.group(1)}"})
            return self.answer(200, {"version": int(m.group(1)), "schema": SCHEMA,
                                     "metrics": {"metric": "accuracy", "accuracy": 0.9, "holdout_rows": 20}})
        instances = body["instances"]
        if len(instances) > self.limit:
            return self.answer(413, {"message": f"{len(instances)} instances in one request; at most "
                                                f"{self.limit} are accepted, split the request"})
        for i, inst in enumerate(instances):
            unknown = sorted(set(inst) - {"x1", "colour"})
            if unknown:
                return self.answer(400, {"message": f"instance {i}: unknown features {unknown}; expected "
                                                    "exactly ['x1', 'colour']"})
            if not isinstance(inst["x1"], (int, float)) and inst["x1"] is not None:
                return self.answer(400, {"message": f"instance {i}: feature 'x1' must be a number (or null), "
                                                    f"got string {inst['x1']!r}"})
        query = urllib.parse.parse_qs(parsed.query)
        version = int(query["version"][0]) if "version" in query else self.production
        predictions = ["dog" if (inst["x1"] or 0) > 0 else "cat" for inst in instances]
        self.requests += 1
        ids = body.get("ids") or [f"req{self.requests}-{i}" for i in range(len(instances))]
        return self.answer(200, {"model": "animals", "version": version, "predictions": predictions,
                                 "probabilities": [[0.2, 0.8] if p == "dog" else [0.7, 0.3] for p in predictions],
                                 "classes": ["cat", "dog"], "inference_ids": ids})

    @staticmethod
    def answer(status, body):
        return status, {}, json.dumps(body).encode()

    def posts(self):
        return [c for c in self.calls if c[0] == "POST"]


def _csv(path: Path, header, rows, *, bom=False, delimiter=",") -> Path:
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def _api(fake):
    return pr.Api("https://api.example", "none", send=fake, sleep=lambda s: None)


def test_batches_split_at_the_limit():
    assert pr.batches(2500, 1000) == [range(0, 1000), range(1000, 2000), range(2000, 2500)]
    assert pr.batches(1000, 1000) == [range(0, 1000)]
    assert pr.batches(0, 1000) == []
    with pytest.raises(ValueError):
        pr.batches(3, 0)


def test_a_long_file_goes_in_requests_of_the_limit_pinned_to_the_first_answers_version(tmp_path):
    path = _csv(tmp_path / "big.csv", ["x1", "colour"], [[(i % 3) - 1, "red"] for i in range(2500)])
    fake, seen = FakeApi(), []
    result = pr.predict_rows(_api(fake), "animals", pr.read_table(path), progress=seen.append)
    posts = fake.posts()
    assert [len(b["instances"]) for _, _, b in posts] == [1000, 1000, 500]
    assert [p for _, p, _ in posts] == ["/models/animals/predict", "/models/animals/predict?version=3",
                                        "/models/animals/predict?version=3"]
    assert result.complete and result.requests == 3 and result.version == 3
    assert result.predictions == ["dog" if (i % 3) - 1 > 0 else "cat" for i in range(2500)]
    assert seen[-1] == "request 3/3: 2,500 of 2,500 rows predicted"


def test_a_stack_with_a_lower_limit_is_followed(tmp_path):
    path = _csv(tmp_path / "f.csv", ["x1", "colour"], [[1, "red"]] * 1000)
    fake = FakeApi(limit=400)
    result = pr.predict_rows(_api(fake), "animals", pr.read_table(path))
    assert [len(b["instances"]) for _, _, b in fake.posts()] == [1000, 400, 400, 200]
    assert result.complete and result.predictions == ["dog"] * 1000


def test_a_refused_row_is_named_by_its_file_line_and_the_rest_is_predicted(tmp_path):
    rows = [[1, "red"]] * 2500
    rows[1500] = ["oops", "red"]  # data row 1501: file line 1502, instance 500 of request 2
    path = _csv(tmp_path / "f.csv", ["x1", "colour"], rows)
    fake = FakeApi()
    result = pr.predict_rows(_api(fake), "animals", pr.read_table(path))
    (refusal,) = result.refused
    assert (refusal.row, refusal.request, refusal.where) == (1500, 2, "line 1502")
    assert refusal.message == "feature 'x1' must be a number (or null), got string 'oops'"
    assert result.predictions[1500] is None and len(result.predicted) == 2499 and not result.complete
    assert [len(b["instances"]) for _, _, b in fake.posts()] == [1000, 1000, 999, 500]


def test_wrong_columns_stop_at_once_and_say_what_was_not_sent(tmp_path, capsys):
    path = _csv(tmp_path / "f.csv", ["x1", "colour", "weight"], [[1, "red", 3]] * 1500)
    fake = FakeApi()
    result = pr.predict_rows(_api(fake), "animals", pr.read_table(path))
    assert len(fake.posts()) == 1 and not result.refused and len(result.unsent) == 1500
    assert result.stopped.status == 400 and "unknown features ['weight']" in result.stopped.message
    pr.report_problems(pr.read_table(path), result)
    err = capsys.readouterr().err
    assert "stopped at request 1 (lines 2-1001): the API answered 400" in err
    assert "1500 rows not predicted (lines 2, 3, 4" in err


def test_too_many_refused_rows_in_one_request_stop(tmp_path):
    path = _csv(tmp_path / "f.csv", ["x1", "colour"], [["bad", "red"]] * 50)
    fake = FakeApi()
    result = pr.predict_rows(_api(fake), "animals", pr.read_table(path))
    assert len(result.refused) == pr.MAX_REFUSED_PER_REQUEST and result.stopped is not None
    assert "more than 10 rows of one request refused" in result.stopped.message
    assert len(result.unsent) == 50 - pr.MAX_REFUSED_PER_REQUEST


def test_refused_instances_are_read_from_the_apis_messages():
    assert pr.refused_instances("instance 17: feature 'x' must be a number", 20) == [17]
    assert pr.refused_instances("instances [3, 5] gave non-finite outputs; …", 10) == [3, 5]
    assert pr.refused_instances("instance 17: …", 10) is None  # not in this request
    assert pr.refused_instances("'instances' is empty", 10) is None
    assert pr.reason_of("instance 17: feature 'x' must be a number") == "feature 'x' must be a number"


def test_the_id_column_is_kept_as_written_and_not_sent(tmp_path):
    path = _csv(tmp_path / "f.csv", ["customer", "x1", "colour"], [["007", 1, "red"], ["A-2", -1, "blue"]])
    table = pr.read_table(path)
    assert pr.split_id_column(table, "customer", ["x1", "colour"], "animals") == ["007", "A-2"]
    assert table.instances == [{"x1": 1.0, "colour": "red"}, {"x1": -1.0, "colour": "blue"}]


def test_a_missing_id_column_or_one_that_is_a_feature_is_an_error(tmp_path):
    path = _csv(tmp_path / "f.csv", ["Customer", "x1", "colour"], [["007", 1, "red"]])
    with pytest.raises(pr.PredictError, match=r"no column 'customer' for --id-column \(did you mean 'Customer'"):
        pr.split_id_column(pr.read_table(path), "customer", ["x1", "colour"], "animals")
    with pytest.raises(pr.PredictError, match="'x1' is a feature of model 'animals'"):
        pr.split_id_column(pr.read_table(path), "x1", ["x1", "colour"], "animals")
    arrays = tmp_path / "a.json"
    arrays.write_text("[[1, \"red\"]]")
    with pytest.raises(pr.PredictError, match="needs named columns"):
        pr.split_id_column(pr.read_table(arrays), "id", ["x1", "colour"], "animals")


def test_excel_csvs_with_a_bom_and_other_dialects_are_read(tmp_path):
    expected = [{"x1": 1.5, "colour": "red"}, {"x1": None, "colour": "blue"}]
    for kwargs in ({"bom": True}, {"bom": True, "delimiter": ";"}, {"delimiter": "\t"}, {"delimiter": "|"}):
        path = _csv(tmp_path / "f.csv", ["x1", "colour"], [["1.5", "red"], ["NA", "blue"]], **kwargs)
        table = pr.read_table(path)
        assert table.columns == ["x1", "colour"] and table.instances == expected and table.lines == [2, 3]


def _args(tmp_path, file, **kw):
    import argparse

    base = {"model": "animals", "file": str(file), "version": None, "id_column": None, "ids_from": None,
            "output": None, "json": False, "batch_size": 1000}
    base.update(kw)
    return argparse.Namespace(**base)


def test_run_predict_writes_what_succeeded_and_exits_1_when_rows_were_refused(tmp_path, capsys):
    rows = [[f"c{i}", 1 if i % 2 else -1, "red"] for i in range(1200)]
    rows[3][1] = "oops"
    path = _csv(tmp_path / "f.csv", ["customer", "x1", "colour"], rows)
    out = tmp_path / "out.csv"
    fake = FakeApi()
    assert pr.run_predict(_args(tmp_path, path, id_column="customer", output=str(out)), _api(fake), None) == 1
    # the id column was checked against production's features, then every request pinned to it
    assert [c[1] for c in fake.calls[:2]] == ["/models/animals", "/models/animals/versions/3"]
    assert all(p.endswith("?version=3") for _, p, _ in fake.posts())
    written = list(csv.reader(out.open()))
    assert written[0] == ["customer", "line", "prediction", "probability_cat", "probability_dog", "version",
                          "inference_id"]
    assert written[1] == ["c0", "2", "cat", "0.7", "0.3", "3", "req1-0"]
    assert all("ids" not in body for _, _, body in fake.posts())  # --id-column alone sends no ids
    assert len(written) == 1 + 1199 and "c3" not in {r[0] for r in written}
    captured = capsys.readouterr()
    assert "1,199 of 1,200 rows predicted in 3 requests, written to" in captured.out
    assert "request 1: line 5 refused: feature 'x1' must be a number (or null), got string 'oops'" in captured.err


def test_run_predict_refuses_to_write_its_output_over_the_input_file(tmp_path):
    path = _csv(tmp_path / "f.csv", ["customer", "x1", "colour"], [["b", 1, "red"], ["a", -1, "red"]])
    before = path.read_bytes()
    fake = FakeApi()
    with pytest.raises(pr.PredictError, match="is the input file"):
        pr.run_predict(_args(tmp_path, path, output=str(tmp_path / "." / "f.csv")), _api(fake), None)
    assert path.read_bytes() == before and fake.calls == []  # the data is intact, nothing was sent


def test_run_predict_json_keeps_ids_in_order(tmp_path, capsys):
    path = _csv(tmp_path / "f.csv", ["customer", "x1", "colour"], [["b", 1, "red"], ["a", -1, "red"]])
    assert pr.run_predict(_args(tmp_path, path, id_column="customer", json=True, version=2), _api(FakeApi()),
                          None) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["ids"] == ["b", "a"] and answer["predictions"] == ["dog", "cat"] and answer["version"] == 2
    assert answer["lines"] == [2, 3] and "refused" not in answer
    assert answer["inference_ids"] == ["req1-0", "req1-1"]


def test_ids_from_sends_the_column_as_inference_ids_and_writes_them(tmp_path, capsys):
    rows = [[f"o-{i}", 1 if i % 2 else -1, "red"] for i in range(30)]
    rows[4][1] = "oops"  # refused: the rest of its request is sent again, with its ids
    path = _csv(tmp_path / "f.csv", ["order", "x1", "colour"], rows)
    out = tmp_path / "out.csv"
    fake = FakeApi()
    assert pr.run_predict(_args(tmp_path, path, ids_from="order", output=str(out), batch_size=10),
                          _api(fake), None) == 1
    for _, _, body in fake.posts():
        assert len(body["ids"]) == len(body["instances"]) and all("order" not in i for i in body["instances"])
    assert fake.posts()[0][2]["ids"] == [f"o-{i}" for i in range(10)]
    assert fake.posts()[1][2]["ids"] == [f"o-{i}" for i in range(10) if i != 4]
    written = list(csv.reader(out.open()))
    assert written[0][0] == "order" and written[0][-1] == "inference_id"
    assert all(r[0] == r[-1] for r in written[1:]) and len(written) == 30  # 29 rows and the header
    capsys.readouterr()
    assert pr.run_predict(_args(tmp_path, path, ids_from="order", id_column="order", json=True, batch_size=10),
                          _api(FakeApi()), None) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["inference_ids"] == answer["ids"] == [f"o-{i}" for i in range(30) if i != 4]


@pytest.mark.parametrize("values, words", [
    (["a", "b", "a"], "line 4: --ids-from 'order' value 'a' repeats line 2; inference ids must be unique"),
    (["a", "", "c"], "line 3: --ids-from 'order' value '' is not an inference id; expected 1 to 128 printable"),
    (["a", "x" * 129, "c"], "line 3: --ids-from 'order' value"),
])
def test_ids_from_refuses_ids_the_api_would_refuse_before_sending_anything(tmp_path, values, words):
    path = _csv(tmp_path / "f.csv", ["order", "x1", "colour"], [[v, 1, "red"] for v in values])
    fake = FakeApi()
    with pytest.raises(pr.PredictError) as err:
        pr.run_predict(_args(tmp_path, path, ids_from="order"), _api(fake), None)
    assert words in str(err.value)
    assert fake.posts() == []


def test_id_column_and_ids_from_must_name_one_column(tmp_path):
    path = _csv(tmp_path / "f.csv", ["order", "customer", "x1", "colour"], [["a", "c", 1, "red"]])
    fake = FakeApi()
    with pytest.raises(pr.PredictError, match="name two columns"):
        pr.run_predict(_args(tmp_path, path, ids_from="order", id_column="customer"), _api(fake), None)
    assert fake.calls == []
    with pytest.raises(pr.PredictError, match="no column 'Order' for --ids-from"):
        pr.run_predict(_args(tmp_path, path, ids_from="Order"), _api(fake), None)


def test_confusion_matrix_cells_sum_to_the_rows_and_unknown_labels_get_a_row():
    cm = ev.confusion_matrix(["cat", "dog", "dog", "bird"], ["cat", "dog", "cat", "cat"], ["cat", "dog"])
    assert cm == {"labels": ["cat", "dog", "bird"], "matrix": [[1, 0, 0], [1, 1, 0], [1, 0, 0]]}
    assert sum(map(sum, cm["matrix"])) == 4
    values = ev.classification_metrics(["accuracy", "f1", "roc_auc"], ["cat", "dog", "dog", "bird"],
                                       ["cat", "dog", "cat", "cat"], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]],
                                       ["cat", "dog"])
    assert values["accuracy"]["value"] == 0.5
    assert values["roc_auc"]["value"] == 1.0 and "over the 3 rows" in values["roc_auc"]["note"]


def test_labels_are_read_as_training_reads_them():
    assert ev.label_of(" 2", [0, 1, 2]) == 2
    assert ev.label_of("2.0", [0, 1, 2]) == "2.0"
    assert ev.label_of("cat", ["cat", "dog"]) == "cat"
    assert ev.label_of("1", ["1", "2"]) == "1"


def test_residual_summary():
    res = ev.residual_summary([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 4.0, 4.0])
    assert res["rows"] == 4 and res["mean"] == 0.0 and res["mae"] == 0.5
    assert res["rmse"] == pytest.approx(0.5 ** 0.5) and res["min"] == -1.0 and res["max"] == 1.0


def test_evaluate_skips_rows_without_a_target_and_a_missing_version_is_clear(tmp_path):
    rows = [[1, "red", "dog"], [-1, "red", "cat"], [1, "blue", ""], [-1, "red", "dog"]]
    path = _csv(tmp_path / "l.csv", ["x1", "colour", "species"], rows)
    out = ev.evaluate(_api(FakeApi()), "animals", path, err=None)
    assert out["version"] == 3 and out["production"] is True and out["metric"] == "accuracy"
    assert out["rows"]["scored"] == 3 and out["rows"]["without_target_lines"] == [4]
    assert out["value"] == pytest.approx(2 / 3) and out["recorded"]["value"] == 0.9
    assert sum(map(sum, out["confusion_matrix"]["matrix"])) == 3
    text = ev.format_evaluation({k: v for k, v in out.items() if not k.startswith("_")})
    assert "accuracy  0.6667" in text and "1 without a target skipped (line 4)" in text
    with pytest.raises(pr.PredictError, match=r"model 'animals' has no version 9 \(its versions: 2, 3\)"):
        ev.evaluate(_api(FakeApi()), "animals", path, version=9)
    unlabelled = _csv(tmp_path / "u.csv", ["x1", "colour"], [[1, "red"]])
    with pytest.raises(pr.PredictError, match="no column 'species', the target of model 'animals' v3"):
        ev.evaluate(_api(FakeApi()), "animals", unlabelled)


def test_evaluate_reports_refused_rows_scores_the_rest_and_exits_1(tmp_path, capsys):
    rows = [[1, "red", "dog"], ["bad", "red", "cat"], [-1, "red", "cat"], [1, "red", "dog"]]
    path = _csv(tmp_path / "l.csv", ["x1", "colour", "species", "note"], [r + ["x"] for r in rows])
    args = _args(tmp_path, path, json=True)
    assert ev.run_evaluate(args, _api(FakeApi()), {"metric": "f1"}) == 1
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["metric"] == "f1" and out["rows"]["scored"] == 3 and out["rows"]["refused"] == 1
    assert out["refused"][0]["line"] == 3 and out["value"] == 1.0
    assert "leaving out column 'note' (not a feature of 'animals' v3)" in captured.err
    assert "request 1: line 3 refused" in captured.err
