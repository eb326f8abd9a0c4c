"""functions.core.metrics agrees with scikit-learn (used here only as the reference)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from functions.core.metrics import METRICS, higher_is_better, needs_probabilities, score, task_of

SEEDS = range(12)
TOL = 1e-9


def _labels(rng, n, classes):
    y = rng.choice(classes, size=n)
    y[: len(classes)] = classes  # every class present
    return y


# ---- agreement with scikit-learn on random data -----------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_and_f1_binary_int_labels(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    yt, yp = _labels(rng, n, [0, 1]), rng.integers(0, 2, size=n)
    assert score("accuracy", yt, yp) == pytest.approx(skm.accuracy_score(yt, yp), abs=TOL)
    assert score("f1", yt, yp) == pytest.approx(skm.f1_score(yt, yp), abs=TOL)
    assert score("f1", yt, yp, classes=[0, 1]) == pytest.approx(skm.f1_score(yt, yp), abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_f1_binary_string_labels_positive_is_last_sorted(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    classes = np.array(["no", "yes"], dtype=object)
    yt, yp = _labels(rng, n, classes), rng.choice(classes, size=n)
    expected = skm.f1_score(yt, yp, pos_label="yes")
    assert score("f1", yt, yp, classes=["yes", "no"]) == pytest.approx(expected, abs=TOL)
    assert score("accuracy", yt, yp) == pytest.approx(skm.accuracy_score(yt, yp), abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_f1_macro_multiclass(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 7))
    classes = [f"c{i}" for i in range(k)]
    n = int(rng.integers(k, 300))
    yt = _labels(rng, n, classes)
    # Predictions mostly right, and sometimes never predicting the last class.
    yp = np.where(rng.random(n) < 0.6, yt, rng.choice(classes[: k - int(seed % 2)], size=n))
    expected = skm.f1_score(yt, yp, average="macro")
    assert score("f1", yt, yp) == pytest.approx(expected, abs=TOL)
    assert score("f1", yt, yp, classes=classes) == pytest.approx(expected, abs=TOL)
    assert score("accuracy", yt, yp, classes=classes) == pytest.approx(skm.accuracy_score(yt, yp), abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_binary_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 400))
    yt = _labels(rng, n, [0, 1])
    # Coarse scores: many ties, as with a tree model's probabilities.
    p = np.round(rng.random(n) * 0.5 + 0.4 * yt, 1 if seed % 2 else 3)
    expected = skm.roc_auc_score(yt, p)
    assert score("roc_auc", yt, None, probabilities=p) == pytest.approx(expected, abs=TOL)
    both = np.column_stack([1 - p, p])
    assert score("roc_auc", yt, None, probabilities=both, classes=[0, 1]) == pytest.approx(expected, abs=TOL)
    assert score("roc_auc", yt, None, probabilities=p[:, None]) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_binary_string_labels(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 200))
    yt = _labels(rng, n, np.array(["neg", "pos"], dtype=object))
    proba = rng.dirichlet([1, 1], size=n)
    expected = skm.roc_auc_score(yt == "pos", proba[:, 1])
    assert score("roc_auc", yt, None, probabilities=proba, classes=["neg", "pos"]) == pytest.approx(expected, abs=TOL)
    # Columns follow classes as given: reversed classes, reversed columns, same answer.
    flipped = proba[:, ::-1]
    assert score("roc_auc", yt, None, probabilities=flipped, classes=["pos", "neg"]) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_multiclass_ovr_macro(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 6))
    n = int(rng.integers(2 * k, 300))
    yt = _labels(rng, n, np.arange(k))
    proba = rng.dirichlet(np.ones(k), size=n)
    if seed % 2:  # ties
        proba = np.round(proba, 1)
        proba = proba / proba.sum(axis=1, keepdims=True)
    expected = skm.roc_auc_score(yt, proba, multi_class="ovr", average="macro")
    assert score("roc_auc", yt, None, probabilities=proba) == pytest.approx(expected, abs=TOL)
    assert score("roc_auc", yt, None, probabilities=proba, classes=list(range(k))) == pytest.approx(expected, abs=TOL)


def test_roc_auc_multiclass_skips_a_class_absent_from_y_true():
    rng = np.random.default_rng(0)
    yt = np.array([0, 1, 2] * 10)
    proba = rng.dirichlet([1, 1, 1, 1], size=30)
    expected = np.mean([skm.roc_auc_score(yt == c, proba[:, c]) for c in range(3)])
    got = score("roc_auc", yt, None, probabilities=proba, classes=[0, 1, 2, 3])
    assert got == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_metrics(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 500))
    yt = rng.normal(10, 5, size=n)
    yp = yt + rng.normal(0, 2, size=n)
    assert score("r2", yt, yp) == pytest.approx(skm.r2_score(yt, yp), abs=TOL)
    assert score("rmse", yt, yp) == pytest.approx(math.sqrt(skm.mean_squared_error(yt, yp)), abs=TOL)
    assert score("mae", yt, yp) == pytest.approx(skm.mean_absolute_error(yt, yp), abs=TOL)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 4)), min_size=1, max_size=60)
)
def test_hypothesis_classification_agreement(triples):
    yt = np.array([a for a, _, _ in triples])
    yp = np.array([b for _, b, _ in triples])
    present = set(yt.tolist()) | set(yp.tolist())
    assert score("accuracy", yt, yp) == pytest.approx(skm.accuracy_score(yt, yp), abs=TOL)
    if len(present) > 2:
        expected = skm.f1_score(yt, yp, average="macro", zero_division=0)
    else:
        expected = skm.f1_score(yt, yp, pos_label=max(present), average="binary", zero_division=0)
    assert score("f1", yt, yp) == pytest.approx(expected, abs=TOL)
    binary = (yt == 2) | (yt == 0)
    if len(set(yt[binary].tolist())) == 2:
        scores = np.array([s for _, _, s in triples], dtype=float)[binary] / 4
        y2 = yt[binary]
        assert score("roc_auc", y2, None, probabilities=scores) == pytest.approx(
            skm.roc_auc_score(y2, scores), abs=TOL
        )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-1e6, 1e6, allow_nan=False), st.floats(-1e6, 1e6, allow_nan=False)),
        min_size=2,
        max_size=50,
    )
)
def test_hypothesis_regression_agreement(pairs):
    yt = np.array([a for a, _ in pairs])
    yp = np.array([b for _, b in pairs])
    assert score("rmse", yt, yp) == pytest.approx(math.sqrt(skm.mean_squared_error(yt, yp)), rel=1e-9, abs=TOL)
    assert score("mae", yt, yp) == pytest.approx(skm.mean_absolute_error(yt, yp), rel=1e-9, abs=TOL)
    assert score("r2", yt, yp) == pytest.approx(skm.r2_score(yt, yp), rel=1e-9, abs=1e-7)


# ---- edge cases -------------------------------------------------------------------------------


def test_perfect_and_constant_cases():
    assert score("accuracy", ["a", "b"], ["a", "b"]) == 1.0
    assert score("f1", [1, 1, 1], [1, 1, 1]) == 1.0
    assert score("f1", [0, 0], [0, 0], classes=[0, 1]) == 0.0  # no positives anywhere (as sklearn)
    assert score("r2", [3, 3, 3], [3, 3, 3]) == 1.0  # constant target, perfect fit
    assert score("r2", [3, 3, 3], [3, 3, 4]) == 0.0  # constant target, imperfect fit
    assert score("rmse", [1.0], [4.0]) == 3.0
    assert score("roc_auc", [0, 1], None, probabilities=[0.5, 0.5]) == 0.5
    assert score("roc_auc", [0, 1, 1], None, probabilities=[0.1, 0.9, 0.8]) == 1.0


def test_onnx_shaped_outputs():
    # An ONNX regressor answers [n, 1]; an ONNX classifier's labels are int64 or strings.
    assert score("mae", [1.0, 2.0], np.array([[1.5], [2.5]], dtype=np.float32)) == 0.5
    assert score("accuracy", np.array([0, 1], dtype=np.int64), np.array([0, 0], dtype=np.int64), classes=[0, 1]) == 0.5
    assert score("accuracy", np.array(["a", "b"], dtype=object), np.array(["a", "b"]), classes=["a", "b"]) == 1.0


def test_metric_registry():
    assert METRICS == {"classification": ("accuracy", "f1", "roc_auc"), "regression": ("r2", "rmse", "mae")}
    assert [higher_is_better(m) for m in ("accuracy", "f1", "roc_auc", "r2", "rmse", "mae")] == [
        True, True, True, True, False, False,
    ]
    assert needs_probabilities("roc_auc") and not needs_probabilities("f1")
    assert task_of("mae") == "regression" and task_of("f1") == "classification"


def test_errors():
    with pytest.raises(ValueError, match="unknown metric 'auc'.*accuracy"):
        score("auc", [1], [1])
    with pytest.raises(ValueError, match="unknown metric"):
        higher_is_better("precision")
    with pytest.raises(ValueError, match="y_true has 3 values but y_pred has 2"):
        score("accuracy", [1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="y_true is empty"):
        score("mae", [], [])
    with pytest.raises(ValueError, match="y_pred is empty"):
        score("accuracy", [1], [])
    with pytest.raises(ValueError, match="roc_auc needs probabilities"):
        score("roc_auc", [0, 1], [0, 1])
    with pytest.raises(ValueError, match="single class"):
        score("roc_auc", [1, 1, 1], None, probabilities=[0.2, 0.3, 0.9])
    with pytest.raises(ValueError, match="single class"):
        score("roc_auc", [2, 2], None, probabilities=[[0.1, 0.2, 0.7]] * 2, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="probabilities has 2 rows"):
        score("roc_auc", [0, 1, 1], None, probabilities=[0.2, 0.3])
    with pytest.raises(ValueError, match="4 columns but there are 3 classes"):
        score("roc_auc", [0, 1, 2], None, probabilities=np.full((3, 4), 0.25))
    with pytest.raises(ValueError, match="1-D probabilities"):
        score("roc_auc", [0, 1, 2], None, probabilities=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN or infinite"):
        score("roc_auc", [0, 1], None, probabilities=[0.1, float("nan")])
    with pytest.raises(ValueError, match="not among the classes"):
        score("accuracy", ["1", "0"], [1, 0], classes=[0, 1])  # label-type mix-up
    with pytest.raises(ValueError, match="not among the classes"):
        score("roc_auc", ["a", "c"], None, probabilities=[0.1, 0.2], classes=["a", "b"])
    with pytest.raises(ValueError, match="classes must be unique"):
        score("f1", [0, 1], [0, 1], classes=[0, 1, 1])
    with pytest.raises(ValueError, match="r2 is not defined for 1 sample"):
        score("r2", [1.0], [1.0])
    with pytest.raises(ValueError, match="y_pred has a non-finite value at index 1"):
        score("rmse", [1.0, 2.0], [1.0, float("inf")])
    with pytest.raises(ValueError, match="must be numbers"):
        score("mae", ["a", "b"], [1.0, 2.0])
    with pytest.raises(ValueError, match="1-D"):
        score("accuracy", [[1, 2], [3, 4]], [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="cannot be ordered"):
        mixed = np.array([1, "a"], dtype=object)
        score("accuracy", mixed, mixed)
