"""Pipelines and ONNX conversion: real scikit-learn -> real skl2onnx -> real onnxruntime."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from functions.core import convert
from functions.core.convert import ConvertError
from functions.core.onnx_model import ModelFormatError, OnnxModel, PredictionError
from functions.core.schema import FeatureSchema, SchemaError
from tests import models

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clf():
    return models.classifier()


@pytest.fixture(scope="module")
def reg():
    return models.regressor()


def test_no_pandas_needed():
    """Training and conversion work where pandas cannot be imported (the Lambda layers have none)."""
    code = ("import sys\n"
            "class NoPandas:\n"  # as if pandas were not installed
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'pandas':\n"
            "            raise ModuleNotFoundError(\"No module named 'pandas'\")\n"
            "sys.meta_path.insert(0, NoPandas())\n"
            "from tests import models\n"
            "for trained in (models.classifier(), models.regressor()):\n"
            "    assert trained.onnx\n"
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_onnx_has_one_input_per_feature_named_and_typed(clf, reg):
    for trained in (clf, reg):
        graph = onnx.load_from_string(trained.onnx).graph
        got = [(i.name, i.type.tensor_type.elem_type,
                [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]) for i in graph.input]
        expected = [(f.name, onnx.TensorProto.FLOAT if f.type == "number" else onnx.TensorProto.STRING)
                    for f in trained.schema.features]
        assert [(n, t) for n, t, _ in got] == expected
        assert all(shape[1] == 1 for _, _, shape in got)
    assert [o.name for o in onnx.load_from_string(clf.onnx).graph.output] == ["label", "probabilities"]
    assert [o.name for o in onnx.load_from_string(reg.onnx).graph.output] == ["variable"]


def test_classifier_matches_sklearn(clf):
    records = clf.records(len(clf.rows))
    out = OnnxModel.from_bytes(clf.onnx, clf.schema).predict(clf.schema.to_feeds(records))
    X = convert.matrix(clf.schema, records)
    assert out["classes"] == models.CLASSES
    assert out["predictions"] == clf.pipeline.predict(X).tolist()
    assert all(isinstance(p, str) for p in out["predictions"])
    probs = np.array(out["probabilities"])
    np.testing.assert_allclose(probs, clf.pipeline.predict_proba(X), atol=1e-4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_regressor_matches_sklearn(reg):
    records = reg.records(50)
    out = OnnxModel.from_bytes(reg.onnx, reg.schema).predict(reg.schema.to_feeds(records))
    assert set(out) == {"predictions"}
    expected = reg.pipeline.predict(convert.matrix(reg.schema, records))
    np.testing.assert_allclose(out["predictions"], expected, rtol=1e-4, atol=1e-4)


def test_missing_values_and_unknown_categories(clf):
    model = OnnxModel.from_bytes(clf.onnx, clf.schema)
    records = [{"x1": None, "x2": 1.0, "colour": "purple"}, {"x1": 0.5, "x2": None, "colour": None}]
    out = model.predict(clf.schema.to_feeds(records))
    X = convert.matrix(clf.schema, records)
    np.testing.assert_allclose(out["probabilities"], clf.pipeline.predict_proba(X), atol=1e-4)


def test_integer_labels_and_other_estimators():
    columns, rows = models.classification_table(n=120, seed=3)
    rows = [r[:3] + [models.CLASSES.index(r[3])] for r in rows]  # labels 0, 1, 2
    trained = models.train(columns, rows, "species", "classification",
                           "sklearn.tree.DecisionTreeClassifier", {"max_depth": 3, "random_state": 0})
    assert trained.schema.classes == (0, 1, 2)
    out = OnnxModel.from_bytes(trained.onnx, trained.schema).predict(trained.schema.to_feeds(trained.records(20)))
    assert out["predictions"] == trained.pipeline.predict(convert.matrix(trained.schema, trained.records(20))).tolist()
    assert all(type(p) is int for p in out["predictions"])


def test_csv_strings_train_like_typed_values():
    columns, rows = models.regression_table(n=60)
    as_csv = [[str(c) for c in r] for r in rows]
    typed = models.train(columns, rows, "price", "regression", "sklearn.linear_model.LinearRegression")
    text = models.train(columns, as_csv, "price", "regression", "sklearn.linear_model.LinearRegression")
    assert typed.schema == text.schema
    np.testing.assert_allclose(typed.pipeline[-1].coef_, text.pipeline[-1].coef_)


def test_matrix_and_target():
    s = FeatureSchema.from_dict({"target": "t", "task": "classification", "classes": ["a", "b"],
                                 "features": [{"name": "n", "type": "number"},
                                              {"name": "s", "type": "string", "categories": ["x"]}]})
    X = convert.matrix(s, [["1.5", "x", "a"], ["", "", "b"]], ["n", "s", "t"])
    assert X.dtype == object and X[0].tolist() == [1.5, "x"]
    assert np.isnan(X[1, 0]) and X[1, 1] == ""
    assert convert.target(s, [{"t": "a"}, {"t": "b"}]).tolist() == ["a", "b"]
    with pytest.raises(SchemaError, match="row 0: feature 'n' must be a finite number, got 'abc'"):
        convert.matrix(s, [{"n": "abc", "s": "x"}])
    with pytest.raises(SchemaError, match=r"columns \['s'\] not found"):
        convert.matrix(s, [[1]], ["n"])
    with pytest.raises(SchemaError, match="row 1: target 't' is missing"):
        convert.target(s, [{"t": "a"}, {"t": None}])


@pytest.mark.parametrize("path, words", [
    ("os.system", "not allowed: expected a dotted path to a scikit-learn class"),
    ("sklearn.linear_model", "not allowed"),
    ("sklearn._config.get_config", "private or malformed"),
    ("sklearn.nope.Model", "no module 'sklearn.nope'"),
    ("sklearn.linear_model.Nope", "has no 'Nope'"),
    ("sklearn.utils.Bunch", "not a scikit-learn estimator class"),
    ("sklearn.base.BaseEstimator", "not a classifier"),
    ("sklearn.linear_model.Ridge", "not a classifier, but the task is classification"),
])
def test_estimator_must_be_a_sklearn_estimator_of_the_task(path, words):
    s = FeatureSchema.from_dict({"target": "t", "task": "classification", "classes": [0, 1],
                                 "features": [{"name": "n", "type": "number"}]})
    with pytest.raises(ConvertError, match=words):
        convert.build_pipeline(s, path, {})


def test_unknown_params_are_named():
    s = FeatureSchema.from_dict({"target": "t", "task": "regression", "features": [{"name": "n", "type": "number"}]})
    with pytest.raises(ConvertError, match=r"unknown params \['alpah'\]; valid params are .*'alpha'"):
        convert.build_pipeline(s, "sklearn.linear_model.Ridge", {"alpah": 1})


def test_classes_mismatch_is_refused(clf):
    other = FeatureSchema.from_dict({**clf.schema.to_dict(), "classes": ["cat", "dog"]})
    with pytest.raises(ConvertError, match=r"classes \['cat', 'dog'\] differ from the fitted model's"):
        convert.to_onnx(clf.pipeline, other)


def test_model_rejects_graph_not_matching_schema(clf, reg):
    with pytest.raises(ModelFormatError, match="differ from the schema's features"):
        OnnxModel.from_bytes(clf.onnx, reg.schema)
    with pytest.raises(ModelFormatError, match="not a loadable ONNX model"):
        OnnxModel.from_bytes(b"not onnx", clf.schema)


def test_non_finite_outputs_are_refused(reg):
    model = OnnxModel.from_bytes(reg.onnx, reg.schema)
    feeds = reg.schema.to_feeds([{"region": "north", "x1": 1.0, "x2": 0.0},
                                 {"region": "north", "x1": -3e38, "x2": 0.0}])
    with pytest.raises(PredictionError, match=r"instances \[1\] gave non-finite outputs"):
        model.predict(feeds)


@pytest.mark.parametrize("labels", [
    np.array(["a", "b"]), np.array([1, 2], dtype=np.int64), np.array([1.5, 2.0], dtype=np.float32),
    np.array(["a", "b"], dtype=object), np.array(["a", b"x", np.int64(3)], dtype=object),
])
def test_labels_convert_as_a_whole_like_one_by_one(labels):
    from functions.core.onnx_model import _labels, _plain

    got, expected = _labels(labels), [_plain(v) for v in labels]
    assert got == expected and [type(v) for v in got] == [type(v) for v in expected]
