"""Model quality metrics, numpy only: the validate step scores models without scikit-learn.

Each metric agrees with its scikit-learn counterpart (see tests/unit/test_metrics.py):

==========  ==================================================================================
accuracy    share of exact label matches (``accuracy_score``)
f1          binary (2 classes): F1 of the positive class, the *last* of the sorted classes
            (``f1_score(pos_label=sorted(classes)[-1])``); 0.0 when it is neither in ``y_true``
            nor predicted. More classes: macro-F1, the unweighted mean of the per-class F1 over
            the labels present in ``y_true`` or ``y_pred`` (``f1_score(average="macro")``)
roc_auc     binary: area under the ROC curve of the positive-class probability, ties counted
            half (average ranks), as ``roc_auc_score``. More classes: one-vs-rest, unweighted
            mean over the classes present in ``y_true`` (``roc_auc_score(multi_class="ovr",
            average="macro")``; where scikit-learn gives NaN for a class absent from
            ``y_true``, that class is left out here)
r2          1 - SS_res / SS_tot; when y_true is constant, 1.0 for a perfect fit else 0.0
            (``r2_score``, ``force_finite=True``); needs 2 or more samples
rmse        sqrt(mean((y_true - y_pred)^2))
mae         mean(|y_true - y_pred|)
==========  ==================================================================================

``classes`` (the model's classes, as in the feature schema) decides binary or multiclass and
the column order of ``probabilities``; pass it whenever you have it: a label outside it is an
error, which catches label-type mix-ups (``"1"`` vs ``1``) that would otherwise score 0.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .values import plain

METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1", "roc_auc"),
    "regression": ("r2", "rmse", "mae"),
}
_LOWER_IS_BETTER = frozenset({"rmse", "mae"})
_ALL = tuple(m for ms in METRICS.values() for m in ms)


def _check_metric(metric: str) -> str:
    if metric not in _ALL:
        raise ValueError(
            f"unknown metric {metric!r}; expected one of {list(METRICS['classification'])} "
            f"(classification) or {list(METRICS['regression'])} (regression)"
        )
    return metric


def higher_is_better(metric: str) -> bool:
    """True for accuracy, f1, roc_auc and r2; False for the errors rmse and mae."""
    return _check_metric(metric) not in _LOWER_IS_BETTER


def needs_probabilities(metric: str) -> bool:
    """True when ``score`` needs ``probabilities`` for this metric (roc_auc)."""
    return _check_metric(metric) == "roc_auc"


def task_of(metric: str) -> str:
    """``"classification"`` or ``"regression"``."""
    _check_metric(metric)
    return next(task for task, ms in METRICS.items() if metric in ms)


def score(
    metric: str,
    y_true: Any,
    y_pred: Any,
    *,
    probabilities: Any = None,
    classes: Sequence[Any] | None = None,
) -> float:
    """The metric's value for predictions ``y_pred`` (and ``probabilities``) against ``y_true``.

    ``probabilities`` is ``[n, n_classes]`` with columns in the order of ``classes`` as given
    (sorted labels of ``y_true`` when ``classes`` is not given), or, for a binary task, ``[n]``
    positive-class probabilities.
    Raises ``ValueError`` for an unknown metric, empty or mismatched inputs, and undefined cases.
    """
    _check_metric(metric)
    yt = _vector(y_true, "y_true")
    if metric == "roc_auc":
        if probabilities is None:
            raise ValueError("roc_auc needs probabilities (the model's class probabilities), got None")
        return _roc_auc(yt, probabilities, classes)
    yp = _vector(y_pred, "y_pred")
    if len(yt) != len(yp):
        raise ValueError(f"y_true has {len(yt)} values but y_pred has {len(yp)}; expected one prediction per row")
    if metric in METRICS["regression"]:
        t = _numbers(yt, "y_true")
        p = _numbers(yp, "y_pred")
        if metric == "rmse":
            return float(math.sqrt(np.mean((t - p) ** 2)))
        if metric == "mae":
            return float(np.mean(np.abs(t - p)))
        return _r2(t, p)
    t_codes, p_codes, labels = _encode(yt, yp, classes)
    if metric == "accuracy":
        return float(np.mean(t_codes == p_codes))
    return _f1(t_codes, p_codes, labels, binary=len(labels) <= 2)


# ---- classification ---------------------------------------------------------------------------


def _encode(yt: np.ndarray, yp: np.ndarray, classes: Sequence[Any] | None):
    """Integer codes for both label vectors, over the sorted classes (given or observed)."""
    t_list, p_list = yt.tolist(), yp.tolist()
    if classes is not None:
        labels = _sorted_labels(_plain_list(classes), "classes")
        known = set(labels)
        unknown = sorted({repr(v) for v in (*t_list, *p_list) if v not in known})
        if unknown:
            raise ValueError(
                f"labels {unknown[:5]} are not among the classes {labels!r}; expected y_true and y_pred "
                "to use the model's classes (check the label types, e.g. '1' vs 1)"
            )
    else:
        labels = _sorted_labels(list(set(t_list) | set(p_list)), "labels")
    index = {c: i for i, c in enumerate(labels)}
    t_codes = np.fromiter((index[v] for v in t_list), dtype=np.int64, count=len(t_list))
    p_codes = np.fromiter((index[v] for v in p_list), dtype=np.int64, count=len(p_list))
    return t_codes, p_codes, labels


def _f1(t: np.ndarray, p: np.ndarray, labels: list, *, binary: bool) -> float:
    k = len(labels)
    tp = np.bincount(t[t == p], minlength=k).astype(np.float64)
    true_count = np.bincount(t, minlength=k).astype(np.float64)
    pred_count = np.bincount(p, minlength=k).astype(np.float64)
    denom = true_count + pred_count  # = 2tp + fp + fn
    if binary:
        pos = k - 1
        return float(2 * tp[pos] / denom[pos]) if denom[pos] > 0 else 0.0
    present = denom > 0
    return float(np.mean(2 * tp[present] / denom[present]))


def _roc_auc(yt: np.ndarray, probabilities: Any, classes: Sequence[Any] | None) -> float:
    try:
        proba = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("probabilities must be numbers: [n] or [n, n_classes]") from None
    if proba.ndim == 2 and proba.shape[1] == 1:
        proba = proba[:, 0]
    if proba.ndim not in (1, 2):
        raise ValueError(f"probabilities must be [n] or [n, n_classes], got shape {proba.shape}")
    if proba.shape[0] != len(yt):
        raise ValueError(
            f"y_true has {len(yt)} values but probabilities has {proba.shape[0]} rows; expected one row per value"
        )
    if not np.all(np.isfinite(proba)):
        raise ValueError("probabilities contain NaN or infinite values; expected finite numbers")
    t_list = yt.tolist()
    if classes is not None:
        # Probability columns follow `classes` as given (the model's order; sorted in a schema).
        _sorted_labels(_plain_list(classes), "classes")  # unique and orderable
        labels = [plain(v) for v in _plain_list(classes)]
        known = set(labels)
        unknown = sorted({repr(v) for v in t_list if v not in known})
        if unknown:
            raise ValueError(f"labels {unknown[:5]} in y_true are not among the classes {labels!r}")
    else:
        labels = _sorted_labels(list(set(t_list)), "labels")
    present = sorted(set(t_list), key=labels.index)
    if len(present) < 2:
        raise ValueError(
            f"roc_auc is not defined when y_true holds a single class ({present[0]!r}); "
            "expected at least 2 classes in y_true"
        )
    index = {c: i for i, c in enumerate(labels)}
    codes = np.fromiter((index[v] for v in t_list), dtype=np.int64, count=len(t_list))
    k = len(labels)
    pos = index[max(labels)]  # the positive class of a binary task: the last of the sorted classes

    if proba.ndim == 1:
        if k != 2:
            raise ValueError(
                f"1-D probabilities are positive-class probabilities for a binary task, but there are {k} "
                f"classes {labels!r}; expected [n, {k}] probabilities"
            )
        return _binary_auc(codes == pos, proba)
    if proba.shape[1] != k:
        raise ValueError(
            f"probabilities have {proba.shape[1]} columns but there are {k} classes {labels!r}; "
            "expected one column per class, in the order of classes (sorted labels when not given)"
        )
    if k == 2:
        return _binary_auc(codes == pos, proba[:, pos])
    aucs = [_binary_auc(codes == c, proba[:, c]) for c in range(k) if np.any(codes == c)]
    return float(np.mean(aucs))


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney U / (n_pos * n_neg), with average ranks for ties (= trapezoidal ROC AUC)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    ranks = _average_ranks(scores)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Start of each run of equal values; every member of a run gets the run's mean rank.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    mean_rank = (starts + ends + 1) / 2.0  # ranks are 1-based: (start+1 + end) / 2
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


# ---- regression -------------------------------------------------------------------------------


def _r2(t: np.ndarray, p: np.ndarray) -> float:
    if len(t) < 2:
        raise ValueError(f"r2 is not defined for {len(t)} sample; expected at least 2")
    ss_res = float(np.sum((t - p) ** 2))
    ss_tot = float(np.sum((t - np.mean(t)) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def _numbers(v: np.ndarray, name: str) -> np.ndarray:
    try:
        x = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers for a regression metric") from None
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"{name} has a non-finite value at index {int(bad[0])} ({x[bad[0]]}); expected finite numbers")
    return x


# ---- helpers ----------------------------------------------------------------------------------


def _vector(v: Any, name: str) -> np.ndarray:
    if v is None:
        raise ValueError(f"{name} is None; expected a sequence of values")
    arr = np.asarray(v) if not isinstance(v, np.ndarray) else v
    if arr.ndim == 2 and arr.shape[1] == 1:  # e.g. an ONNX regressor's [n, 1] output
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (or [n, 1]), got shape {arr.shape}")
    if len(arr) == 0:
        raise ValueError(f"{name} is empty; expected at least one value")
    return arr


def _plain_list(values: Sequence[Any]) -> list:
    return np.asarray(list(values), dtype=object).tolist() if not isinstance(values, np.ndarray) else values.tolist()


def _sorted_labels(values: list, what: str) -> list:
    values = [plain(v) for v in values]
    unique = list(dict.fromkeys(values))
    if len(unique) != len(values) and what == "classes":
        raise ValueError(f"classes must be unique, got {values!r}")
    try:
        return sorted(unique)
    except TypeError:
        raise ValueError(f"{what} mix types that cannot be ordered: {unique[:5]!r}; "
                         "expected all strings or all numbers") from None
