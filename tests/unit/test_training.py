"""functions.core.training without AWS: validate, split, fit, convert, parity, artifacts."""
import json

import numpy as np
import pytest

from functions.core import training
from functions.core.dataset import DatasetError
from tests.pipeline import data

ANIMALS = {"target": "species", "task": "classification", "estimator": "sklearn.linear_model.LogisticRegression",
           "params": {"max_iter": 500}, "metric": "accuracy", "holdout": 0.2, "drift": {"window": 50, "threshold": 0.2}}
PRICES = {"target": "price", "task": "regression", "estimator": "sklearn.linear_model.Ridge", "params": {},
          "metric": "rmse", "holdout": 0.25}


@pytest.fixture(scope="module")
def clf():
    return training.train(data.animals(), ANIMALS)


def test_classifier_result(clf):
    assert clf.schema["classes"] == ["cat", "dog", "fish"]
    assert clf.metrics["metric"] == "accuracy" and clf.metrics["accuracy"] > 0.8
    assert clf.metrics["accuracy"] == pytest.approx(clf.metrics["sklearn_accuracy"], abs=1e-9)
    assert clf.parity["passed"] and clf.parity["label_mismatches"] == 0 and clf.parity["max_abs_diff"] <= 1e-4
    assert clf.split["train_rows"] + clf.split["holdout_rows"] == 240 and clf.split["stratified"]
    assert clf.dataset["rows"] == 240 and clf.dataset["columns"] == 4 and len(clf.dataset["sha256"]) == 64
    assert clf.baseline["window"] == 50 and clf.baseline["threshold"] == 0.2
    assert clf.baseline["rows"] == clf.split["train_rows"]
    json.dumps(clf.holdout, allow_nan=False)  # JSON-clean: missing cells are null


def test_split_is_deterministic_and_seeded_by_the_bytes(clf):
    again = training.train(data.animals(), ANIMALS)
    assert again.split == clf.split and again.holdout["indices"] == clf.holdout["indices"]
    assert clf.split["seed"] == int(clf.dataset["sha256"][:8], 16)
    other = training.train(data.animals(seed=7), ANIMALS)
    assert other.split["seed"] != clf.split["seed"]


def test_holdout_document_rows_and_missing_values():
    body = data.animals()
    res = training.train(body, ANIMALS)
    h = res.holdout
    assert h["rows"] == len(h["target"]) == len(h["columns"]["x1"]) == res.split["holdout_rows"]
    assert set(h["columns"]) == {"x1", "x2", "colour"} and h["target_name"] == "species"
    assert all(v is None or isinstance(v, str) for v in h["columns"]["colour"])


def test_regressor_parity_and_lower_is_better_metric():
    res = training.train(data.prices(), PRICES)
    assert res.metrics["higher_is_better"] is False and res.metrics["rmse"] < 1.0
    assert res.parity["passed"] and "classes" not in res.schema
    assert res.split["stratified"] is False and res.split["holdout_rows"] == 50


def test_dataset_errors_name_the_problem():
    with pytest.raises(DatasetError, match="too few rows"):
        training.train(data.animals(n=10), ANIMALS)
    with pytest.raises(DatasetError, match="dataset is too large"):
        training.train(data.animals(), ANIMALS, max_bytes=100)
    with pytest.raises(DatasetError, match="target column 'species' not found"):
        training.train(b"a,b\n" + b"1,2\n" * 30, ANIMALS)


def test_parity_failure_is_recorded_not_raised(clf, monkeypatch):
    res = training.train(data.animals(), ANIMALS, tolerance=0.0)
    # probabilities differ from scikit-learn by float noise; a zero tolerance fails the check
    assert res.parity["max_abs_diff"] > 0 and res.parity["passed"] is False


def test_design_matrix_rounds_numbers_through_float32_and_codes_strings(clf):
    from functions.core import convert
    from functions.core.dataset import load_csv
    from functions.core.schema import FeatureSchema

    d = load_csv(b"x,s,y\n" + b"".join(b"%r,%s,%d\n" % (0.1 + i, [b"b", b"a", b""][i % 3], i % 2) for i in range(30)),
                 target="y", task="classification")
    X = convert.design_matrix(FeatureSchema.from_dict(d.schema), d.columns, np.arange(3))
    assert X.dtype == np.float32 and X[0, 0] == np.float32(0.1)
    # codes into the sorted vocabulary ["__missing__", "a", "b"]: missing is FILL_STRING's code
    assert X[:, 1].tolist() == [2.0, 1.0, 0.0]


def test_holdout_json_is_the_compact_sorted_json_of_the_holdout():
    from functions.core.dataset import holdout_split, load_csv

    d = load_csv(data.animals(), target="species", task="classification")
    _, test = holdout_split(d.rows, 0.2, 5, stratify=d.target)
    body = training.holdout_json(d, test, 5, 0.2)
    doc = json.loads(body)
    assert body == json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    assert doc["indices"] == test.tolist() and doc["seed"] == 5 and doc["rows"] == len(test)


def test_library_versions_are_recorded(clf):
    assert {"python", "numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime"} <= set(clf.libraries)


FOREST = dict(ANIMALS, estimator="sklearn.ensemble.RandomForestClassifier", params={"n_estimators": 10})


def test_randomized_estimators_are_seeded_so_training_is_reproducible():
    first, second = training.train(data.animals(), FOREST), training.train(data.animals(), FOREST)
    assert first.split["random_state"] == first.split["seed"]
    assert first.onnx == second.onnx  # same bytes in, same model out
    pinned = training.train(data.animals(), dict(FOREST, params={"n_estimators": 10, "random_state": 3}))
    assert pinned.split["random_state"] == 3 and pinned.onnx != first.onnx
    assert training.train(data.animals(), ANIMALS).split["random_state"] is not None  # LogisticRegression has one
    assert training.train(data.prices(), PRICES).split["random_state"] is not None  # so does Ridge


def test_a_different_label_on_a_probability_tie_is_not_a_mismatch():
    proba = np.array([[0.5, 0.5], [0.9, 0.1], [0.50004, 0.49996], [0.6, 0.4]])
    sk, onnx_ = ["a", "a", "a", "a"], ["b", "a", "b", "b"]
    # rows 0 and 2 tie within 1e-4 (argmax decided by rounding); row 3 is a real mismatch
    assert training.label_mismatches(onnx_, sk, proba, 1e-4) == (1, 2)
    assert training.label_mismatches(sk, sk, proba, 1e-4) == (0, 0)


@pytest.mark.parametrize("spec, body", [(ANIMALS, data.animals), (PRICES, data.prices)])
def test_scikit_learn_predicts_the_holdout_once(spec, body, monkeypatch):
    from sklearn.pipeline import Pipeline

    calls = []
    for method in ("predict", "predict_proba"):
        original = getattr(Pipeline, method)
        monkeypatch.setattr(Pipeline, method,
                            lambda self, X, _m=method, _o=original, **kw: calls.append(_m) or _o(self, X, **kw))
    res = training.train(body(), spec)
    expected = ["predict", "predict_proba"] if spec["task"] == "classification" else ["predict"]
    assert calls == expected  # parity's scikit-learn outputs are the ones scored
    metric = spec["metric"]
    assert res.metrics["sklearn_" + metric] == pytest.approx(res.metrics[metric], rel=1e-3, abs=1e-3)


def test_check_parity_returns_both_outputs(clf):
    from functions.core import convert
    from functions.core.dataset import holdout_split, load_csv
    from functions.core.schema import FeatureSchema

    dataset = load_csv(data.animals(), target="species", task="classification")
    train_idx, test_idx = holdout_split(dataset.rows, 0.2, 1, stratify=dataset.target)
    fs = FeatureSchema.from_dict(dataset.schema)
    X_train, X_test = (convert.design_matrix(fs, dataset.columns, idx) for idx in (train_idx, test_idx))
    strings = {"colour": dataset.columns["colour"][test_idx]}
    pipeline = convert.build_pipeline(fs, ANIMALS["estimator"], ANIMALS["params"], encoded=True)
    pipeline.fit(X_train, dataset.target[train_idx])
    record, onnx_out, sk_out = training.check_parity(pipeline, convert.to_onnx(convert.servable(pipeline, fs), fs),
                                                     dataset.schema, X_test, feature_schema=fs, strings=strings)
    assert record["passed"] and record["rows"] == len(test_idx)
    assert sk_out["predictions"] == pipeline.predict(X_test).tolist() == onnx_out["predictions"]
    assert all(type(v) is str for v in sk_out["predictions"])
    np.testing.assert_array_equal(sk_out["probabilities"], pipeline.predict_proba(X_test))
