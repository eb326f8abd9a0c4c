"""Training baseline for drift checks (numpy + stdlib only).

``build_baseline`` summarises the training columns into a JSON-serialisable dict that is stored as
``models/<model>/v<N>/baseline.json`` and later read by :func:`functions.core.drift.check_drift`.
Format and threshold rules: docs/drift.md.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from functions.core.drift import (
    JENSEN_SHANNON,
    NUMBER,
    QUANTILE_LEVELS,
    STRING,
    TAIL_LOWER_LEVELS,
    TAIL_UPPER_LEVELS,
    WASSERSTEIN,
    DriftInputError,
    categorical_statistic,
    category_counts,
    numeric_statistic,
    numeric_values,
)
from functions.core.layout import DEFAULT_DRIFT_THRESHOLD, DEFAULT_DRIFT_WINDOW

BASELINE_VERSION = 1
#: Most chunks of training data used to calibrate a feature's threshold.
DEFAULT_MAX_CHUNKS = 200
#: Standard deviations above the chunk mean that the adaptive threshold sits.
SIGMAS = 3.0
#: Numeric features with at most this many distinct values also store their exact distribution.
#: As many as the sketch has 0.5 % bands: up to that, a value holds a band's mass or more on
#: average, and the sketch's linear ramp across each step misses KS by up to 0.005 (measured
#: 0.0045-0.0049 from 2 to 200 values) and W1/std by up to 0.008 (Poisson(1)). Beyond it, bands
#: straddle several values and the error shrinks (KS 0.0028 at 300 values, 0.0007 at 1000).
#: 200 pairs stay a few KB of JSON.
MAX_DISCRETE_VALUES = 200


def _schema_features(schema: Any) -> list[tuple[str, str]]:
    features = schema.get("features") if isinstance(schema, Mapping) else None
    if not isinstance(features, list) or not features:
        raise DriftInputError('schema must be a dict with a non-empty "features" list')
    out = []
    for f in features:
        name, ftype = f.get("name"), f.get("type")
        if not isinstance(name, str) or ftype not in (NUMBER, STRING):
            raise DriftInputError(
                f'schema feature {f!r}: expected {{"name": str, "type": "number" | "string"}}')
        out.append((name, ftype))
    return out


def _quantiles(sorted_values: np.ndarray, levels: np.ndarray = QUANTILE_LEVELS) -> list[float]:
    """numpy's default ("linear") quantiles at ``levels`` of already sorted values."""
    n = sorted_values.size
    h = (n - 1) * levels
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    q = sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])
    q = np.maximum.accumulate(q)  # guard against rounding making the sketch non-monotone
    return [float(v) for v in q]


def _sketch(sorted_values: np.ndarray) -> dict[str, Any]:
    """The 201 quantiles and the tail knots, computed together so they stay ordered."""
    k = TAIL_LOWER_LEVELS.size
    levels = np.concatenate([QUANTILE_LEVELS[:1], TAIL_LOWER_LEVELS, QUANTILE_LEVELS[1:-1],
                             TAIL_UPPER_LEVELS, QUANTILE_LEVELS[-1:]])
    q = _quantiles(sorted_values, levels)
    return {"quantiles": q[:1] + q[1 + k:-1 - k] + q[-1:],
            "tail_quantiles": {"lower": q[1:1 + k], "upper": q[-1 - k:-1]}}


def _distinct(sorted_values: np.ndarray) -> dict[str, Any]:
    """Exact distribution (``values``, ``counts``) of sorted values with few distinct ones, else {}.

    One pass over the already sorted column: a run of equal values is one distinct value.
    """
    starts = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    if starts.size + 1 > MAX_DISCRETE_VALUES:
        return {}
    bounds = np.concatenate([[0], starts, [sorted_values.size]])
    return {"values": [float(v) for v in sorted_values[bounds[:-1]]],
            "counts": [int(c) for c in np.diff(bounds)]}


def _numeric_summary(values: np.ndarray, n_missing: int, rows: int) -> dict[str, Any]:
    out: dict[str, Any] = {"type": NUMBER, "count": int(values.size),
                           "missing_rate": n_missing / rows if rows else 0.0}
    if values.size:
        out.update(mean=float(values.mean()), std=float(values.std()),
                   min=float(values[0]), max=float(values[-1]), **_sketch(values),
                   **_distinct(values))
    else:
        out.update(mean=0.0, std=0.0, min=0.0, max=0.0, quantiles=[])
    return out


def _calibrate(feature: dict[str, Any], column: Any, ftype: str, chunks: list[np.ndarray],
               threshold: float, name: str) -> None:
    """Adaptive threshold: max(threshold, mean + 3 sd of the statistic over training chunks)."""
    stats = []
    if feature["count"]:
        col = np.asarray(column)
        for idx in chunks:
            if ftype == NUMBER:
                x, _ = numeric_values(col[idx], name)
                if x.size:
                    stats.append(numeric_statistic(feature, x))
            else:
                counts, _ = category_counts(col[idx], name)
                if counts:
                    stats.append(categorical_statistic(feature, counts))
    feature["statistic"] = WASSERSTEIN if ftype == NUMBER else JENSEN_SHANNON
    feature["configured_threshold"] = float(threshold)
    feature["chunks"] = len(stats)
    if len(stats) >= 2:
        arr = np.asarray(stats)
        mean, sd = float(arr.mean()), float(arr.std(ddof=1))
        feature.update(chunk_mean=mean, chunk_std=sd,
                       threshold=max(float(threshold), mean + SIGMAS * sd))
    else:  # too little data to measure the noise: the configured threshold stands
        feature.update(chunk_mean=None, chunk_std=None, threshold=float(threshold))


def build_baseline(columns: Mapping[str, Any], schema: Mapping[str, Any], *, window: int = DEFAULT_DRIFT_WINDOW,
                   threshold: float = DEFAULT_DRIFT_THRESHOLD, seed: int = 0,
                   max_chunks: int = DEFAULT_MAX_CHUNKS) -> dict[str, Any]:
    """Summarise training ``columns`` (name -> array) for the features of ``schema``.

    Numeric features: count, missing rate, mean, std (population), min, max and 201 quantiles
    (levels 0, 0.005, ..., 1) of the non-missing values, plus the exact distribution (distinct
    values and their counts) when there are at most ``MAX_DISCRETE_VALUES`` distinct values.
    String features: category counts and missing rate. Every feature also gets an adaptive
    threshold for its deciding statistic, calibrated on up to ``max_chunks`` random chunks of
    ``window`` training rows (``seed`` fixes the shuffle).
    """
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise DriftInputError(f"window must be a positive integer, got {window!r}")
    if not (isinstance(threshold, (int, float)) and np.isfinite(threshold) and threshold > 0):
        raise DriftInputError(f"threshold must be a positive finite number, got {threshold!r}")
    feats = _schema_features(schema)
    missing = [name for name, _ in feats if name not in columns]
    if missing:
        raise DriftInputError(f"columns lack schema feature(s) {missing}; got {sorted(columns)}")
    lengths = {name: len(columns[name]) for name, _ in feats}
    if len(set(lengths.values())) > 1:
        raise DriftInputError(f"feature columns differ in length: {lengths}")
    rows = next(iter(lengths.values()))

    n_chunks = min(rows // window, max_chunks)
    order = np.random.default_rng(seed).permutation(rows)
    chunks = [order[i * window:(i + 1) * window] for i in range(n_chunks)]

    features: dict[str, Any] = {}
    for name, ftype in feats:
        column = columns[name]
        if ftype == NUMBER:
            values, n_missing = numeric_values(column, name)
            feature = _numeric_summary(values, n_missing, rows)
        else:
            counts, n_missing = category_counts(column, name)
            feature = {"type": STRING, "count": int(sum(counts.values())),
                       "missing_rate": n_missing / rows if rows else 0.0, "categories": counts}
        _calibrate(feature, column, ftype, chunks, threshold, name)
        features[name] = feature
    return {"version": BASELINE_VERSION, "rows": int(rows), "window": int(window),
            "threshold": float(threshold), "seed": int(seed), "max_chunks": int(max_chunks),
            "features": features}
