"""Drift statistics: a window of current data against a training baseline (numpy + stdlib only).

The baseline (see :mod:`functions.core.baseline`) keeps, per numeric feature, 201 quantiles of the
training values (levels 0, 0.005, ..., 1). This module reads those quantiles as a *sketch* of the
reference distribution: its quantile function is the piecewise-linear curve through the 201 knots
(so the reference is a mixture of 200 uniforms of mass 0.005 each, point masses where knots tie).
Every numeric statistic is computed exactly against that sketch, after sorting the current column
once. A numeric feature with few distinct training values (counts, flags, codes) also keeps its
exact distribution (``values``/``counts``); its statistics are then computed against that step
CDF instead, since the sketch's linear ramps misplace the steps. String features keep exact
category counts, so their statistics are exact.

Statistics (defaults and rules are explained in docs/drift.md):

* numeric: Wasserstein-1 / reference std (deciding), Kolmogorov-Smirnov, PSI on reference deciles,
  missing-rate change;
* string: Jensen-Shannon distance, natural log (deciding), two-sample chi-square (statistic, dof,
  p-value from a scipy-free chi-square survival function), share of unseen categories, PSI over
  categories, missing-rate change.

``wasserstein_exact`` and ``ks_exact`` compute the same numeric statistics from two raw samples;
they validate the sketch and the discrete reference, and serve small data.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from functions.core.layout import DEFAULT_DRIFT_MIN_ROWS, DEFAULT_DRIFT_SHARE
from functions.core.schema import NUMBER, STRING

#: Quantile levels kept in the baseline: 0, 0.005, ..., 1.
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 201)
#: Extra knots in the two outer bands, where min/max make linear interpolation crude on skewed
#: data: 0.005 * 2**-k for k = 4..1 (and 1 minus those). Stored as ``tail_quantiles``.
TAIL_LOWER_LEVELS = np.array([0.005 * 2.0 ** -k for k in (4, 3, 2, 1)])
TAIL_UPPER_LEVELS = 1.0 - TAIL_LOWER_LEVELS[::-1]
#: Proportions below this are raised to it in PSI, so empty bins give a large finite term.
PSI_EPSILON = 1e-4
#: Chi-square cells are pooled until every expected count is at least this (Cochran's rule).
CHI2_MIN_EXPECTED = 5.0
#: How many unseen category names a report lists (most frequent first).
MAX_UNSEEN_LISTED = 10
#: Above this many bytes a string column is counted as Python objects instead of fixed-width text.
_MAX_FIXED_WIDTH_BYTES = 256 * 1024 * 1024

WASSERSTEIN = "wasserstein"
JENSEN_SHANNON = "jensen_shannon"


class DriftInputError(ValueError):
    """The columns, schema or baseline handed to a drift computation do not fit together."""


# --------------------------------------------------------------------------------------------
# Column handling
# --------------------------------------------------------------------------------------------

def numeric_values(column: Any, name: str = "?") -> tuple[np.ndarray, int]:
    """Return (sorted non-missing values, missing count). NaN, None and +-inf count as missing."""
    try:
        arr = np.asarray(column, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise DriftInputError(
            f"feature {name!r} is numeric: expected numbers (NaN for missing), got {exc}") from None
    finite = np.isfinite(arr)
    values = arr if finite.all() else arr[finite]
    return np.sort(values), int(arr.size - values.size)


def category_counts(column: Any, name: str = "?") -> tuple[dict[str, int], int]:
    """Return ({category: count}, missing count) with one ``np.unique`` per column.

    None and float NaN count as missing; other values are compared as ``str``.
    """
    arr = np.asarray(column)
    arr = arr.ravel()
    if arr.dtype.kind in "US":
        values = arr
    elif arr.dtype.kind == "f":
        values = arr[~np.isnan(arr)]
    elif arr.dtype.kind == "O":
        missing = np.equal(arr, None) | (arr != arr)  # None, and NaN (the only value != itself)
        values = arr[~missing] if missing.any() else arr
    else:
        values = arr
    n_missing = int(arr.size - values.size)
    if values.size == 0:
        return {}, n_missing
    if values.dtype.kind == "O":
        items = values.tolist()
        try:
            widest = max(map(len, items))
        except TypeError:  # not all str: compare their str() forms
            items = [str(v) for v in items]
            values = np.array(items, dtype=object)
            widest = max(map(len, items))
        if widest * 4 * values.size <= _MAX_FIXED_WIDTH_BYTES:
            values = values.astype(str)  # fixed-width text sorts in C, ~4x faster than objects
        # else: very wide text; np.unique sorts the str objects rather than a huge fixed-width copy
    elif values.dtype.kind not in "US":
        values = values.astype(str)
    cats, counts = np.unique(values, return_counts=True)
    return {str(c): int(k) for c, k in zip(cats.tolist(), counts.tolist())}, n_missing


# --------------------------------------------------------------------------------------------
# Exact two-sample statistics
# --------------------------------------------------------------------------------------------

def _clean_sorted(sample: Any) -> np.ndarray:
    arr = np.asarray(sample, dtype=float).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError("a sample has no finite values")
    return np.sort(arr)


def wasserstein_exact(ref: Any, cur: Any) -> float:
    """Wasserstein-1 distance between two raw samples (non-finite values dropped).

    Same definition as ``scipy.stats.wasserstein_distance``: the integral of |F_ref - F_cur|.
    """
    u, v = _clean_sorted(ref), _clean_sorted(cur)
    both = np.concatenate([u, v])
    both.sort()
    deltas = np.diff(both)
    fu = np.searchsorted(u, both[:-1], side="right") / u.size
    fv = np.searchsorted(v, both[:-1], side="right") / v.size
    return float(np.sum(np.abs(fu - fv) * deltas))


def ks_exact(ref: Any, cur: Any) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup|F_ref - F_cur| (non-finite values dropped)."""
    u, v = _clean_sorted(ref), _clean_sorted(cur)
    both = np.concatenate([u, v])
    fu = np.searchsorted(u, both, side="right") / u.size
    fv = np.searchsorted(v, both, side="right") / v.size
    return float(np.max(np.abs(fu - fv)))


# --------------------------------------------------------------------------------------------
# Numeric statistics against the quantile sketch
# --------------------------------------------------------------------------------------------

def _knots(quantiles: Any, tail_quantiles: Mapping[str, Any] | None = None,
           ) -> tuple[np.ndarray, np.ndarray]:
    """Knot levels and values of the sketch: the 201 quantiles plus the optional tail knots."""
    q = np.asarray(quantiles, dtype=float)
    if q.ndim != 1 or q.size < 2 or not np.all(np.isfinite(q)) or np.any(np.diff(q) < 0):
        raise DriftInputError("baseline quantiles must be a finite non-decreasing list of >= 2 values")
    p = QUANTILE_LEVELS if q.size == QUANTILE_LEVELS.size else np.linspace(0.0, 1.0, q.size)
    if tail_quantiles and q.size == QUANTILE_LEVELS.size:
        lower = np.asarray(tail_quantiles["lower"], dtype=float)
        upper = np.asarray(tail_quantiles["upper"], dtype=float)
        if lower.shape != TAIL_LOWER_LEVELS.shape or upper.shape != TAIL_UPPER_LEVELS.shape:
            raise DriftInputError("baseline tail_quantiles must hold 4 lower and 4 upper values")
        p = np.concatenate([p[:1], TAIL_LOWER_LEVELS, p[1:-1], TAIL_UPPER_LEVELS, p[-1:]])
        q = np.concatenate([q[:1], lower, q[1:-1], upper, q[-1:]])
        if not np.all(np.isfinite(q)) or np.any(np.diff(q) < 0):
            raise DriftInputError("baseline tail_quantiles are not finite and ordered with quantiles")
    return p, q


def _sketch_cdf(p: np.ndarray, q: np.ndarray, x: np.ndarray, *, left: bool) -> np.ndarray:
    """CDF of the sketch at x: right-continuous F(x), or the left limit F(x-) when ``left``."""
    k = q.size
    idx = np.searchsorted(q, x, side="left" if left else "right")
    inner = np.clip(idx, 1, k - 1)
    q0, q1 = q[inner - 1], q[inner]
    p0, p1 = p[inner - 1], p[inner]
    span = q1 - q0
    # Inside the knot range q0 < q1 holds for the chosen pair, so span > 0 wherever it is used.
    frac = (x - q0) / np.where(span > 0, span, 1.0)
    out = p0 + np.clip(frac, 0.0, 1.0) * (p1 - p0)
    out = np.where(idx <= 0, 0.0, out)
    return np.where(idx >= k, 1.0, out)


def wasserstein_sketch(quantiles: Any, cur_sorted: np.ndarray, *,
                       tail_quantiles: Mapping[str, Any] | None = None) -> float:
    """Wasserstein-1 between the sketch and a sorted current sample, in the feature's units.

    W1 = integral over p in [0, 1] of |Q_cur(p) - Q_ref(p)|, where Q_cur is the empirical (step)
    quantile function and Q_ref is piecewise linear. On the merged grid of step edges j/n and
    knot levels, Q_cur is constant and Q_ref linear, so each piece integrates in closed form.
    """
    p, q = _knots(quantiles, tail_quantiles)
    x = cur_sorted
    n = x.size
    if n == 0:
        raise ValueError("the current sample has no finite values")
    grid = np.arange(n + 1, dtype=float) / n
    merged = np.insert(grid, np.searchsorted(grid, p), p)
    a, b = merged[:-1], merged[1:]
    step = np.minimum(((a + b) * (0.5 * n)).astype(np.int64), n - 1)
    qm = np.interp(merged, p, q)
    c = x[step]
    d0 = c - qm[:-1]
    d1 = c - qm[1:]
    ad0, ad1 = np.abs(d0), np.abs(d1)
    area = 0.5 * (ad0 + ad1)  # mean of |d| on the piece when d keeps its sign
    cross = (d0 * d1) < 0
    if cross.any():  # d changes sign inside: two triangles
        area[cross] = (d0[cross] ** 2 + d1[cross] ** 2) / (2.0 * (ad0[cross] + ad1[cross]))
    return float(np.dot(b - a, area))


def ks_sketch(quantiles: Any, cur_sorted: np.ndarray, *,
              tail_quantiles: Mapping[str, Any] | None = None) -> float:
    """Kolmogorov-Smirnov sup|F_cur - F_ref| between the sketch and a sorted current sample.

    F_cur is a step function and F_ref non-decreasing, so the supremum is reached at a current
    value: (j+1)/n - F_ref(x_j) or F_ref(x_j-) - j/n (ties cannot raise the maximum).
    """
    p, q = _knots(quantiles, tail_quantiles)
    x = cur_sorted
    n = x.size
    if n == 0:
        raise ValueError("the current sample has no finite values")
    steps = np.arange(n + 1, dtype=float) / n  # F_cur just below / at each current value
    if np.all(q[1:] > q[:-1]):  # continuous sketch: F_ref has no jumps, F(x-) = F(x)
        f_right = f_left = np.interp(x, q, p)
    else:
        f_right = _sketch_cdf(p, q, x, left=False)
        f_left = _sketch_cdf(p, q, x, left=True)
    above = np.max(steps[1:] - f_right)
    below = np.max(f_left - steps[:-1])
    return float(min(max(above, below, 0.0), 1.0))


def psi(ref_props: np.ndarray, cur_props: np.ndarray, eps: float = PSI_EPSILON) -> float:
    """Population stability index sum (c - r) ln(c / r), proportions floored at ``eps``."""
    r = np.maximum(np.asarray(ref_props, dtype=float), eps)
    c = np.maximum(np.asarray(cur_props, dtype=float), eps)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_sketch(quantiles: Any, cur_sorted: np.ndarray, *,
               tail_quantiles: Mapping[str, Any] | None = None, eps: float = PSI_EPSILON) -> float:
    """PSI over the bins cut at the reference deciles (ties merged), bins right-closed."""
    p, q = _knots(quantiles, tail_quantiles)
    x = cur_sorted
    if x.size == 0:
        raise ValueError("the current sample has no finite values")
    edges = np.unique(np.interp(np.linspace(0.1, 0.9, 9), p, q))
    ref_cdf = np.concatenate([[0.0], _sketch_cdf(p, q, edges, left=False), [1.0]])
    cur_cdf = np.concatenate([[0.0], np.searchsorted(x, edges, side="right") / x.size, [1.0]])
    return psi(np.diff(ref_cdf), np.diff(cur_cdf), eps)


# --------------------------------------------------------------------------------------------
# Numeric statistics against an exact discrete reference
# --------------------------------------------------------------------------------------------

def _discrete(values: Any, counts: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated (values, counts) of a discrete reference, as float arrays."""
    if values is None or counts is None:
        raise DriftInputError("baseline values and counts must come together")
    try:
        v = np.asarray(values, dtype=float)
        c = np.asarray(counts, dtype=float)
    except (TypeError, ValueError):
        raise DriftInputError("baseline values and counts must be lists of numbers") from None
    if v.ndim != 1 or v.size == 0 or c.shape != v.shape:
        raise DriftInputError("baseline values and counts must be non-empty lists of one length")
    if not np.all(np.isfinite(v)) or np.any(np.diff(v) <= 0):
        raise DriftInputError("baseline values must be finite and strictly increasing")
    # Integral counts keep the cumulative sums, hence the CDF, exact in floats.
    if not np.all(np.isfinite(c)) or np.any(c < 1) or np.any(c != np.floor(c)):
        raise DriftInputError("baseline counts must be positive integers")
    return v, c


def _merged_cdfs(values: np.ndarray, counts: np.ndarray, x: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference values merged into the sorted current sample, with both CDFs at each point.

    The CDFs at position i count the current values / reference mass at positions <= i: between
    two distinct consecutive points both are constant, and at the last of a run of equal points
    they are the right-continuous CDFs. O(n + k log n), no second sort.
    """
    n, k = x.size, values.size
    if n == 0:
        raise ValueError("the current sample has no finite values")
    at = np.searchsorted(x, values)
    points = np.insert(x, at, values)
    ref_pos = at + np.arange(k)  # where np.insert put each reference value
    is_cur = np.ones(points.size, dtype=np.int64)
    is_cur[ref_pos] = 0
    ref_mass = np.zeros(points.size)
    ref_mass[ref_pos] = counts
    return points, np.cumsum(is_cur) / n, np.cumsum(ref_mass) / counts.sum()


def wasserstein_discrete(values: Any, counts: Any, cur_sorted: np.ndarray) -> float:
    """Wasserstein-1 between a discrete reference and a sorted current sample (feature's units).

    Both CDFs are steps, so W1 = integral of |F_cur - F_ref| is a sum over the merged points.
    """
    points, f_cur, f_ref = _merged_cdfs(*_discrete(values, counts), cur_sorted)
    return float(np.dot(np.diff(points), np.abs(f_cur[:-1] - f_ref[:-1])))


def ks_discrete(values: Any, counts: Any, cur_sorted: np.ndarray) -> float:
    """Kolmogorov-Smirnov sup|F_cur - F_ref| between a discrete reference and a sorted sample."""
    points, f_cur, f_ref = _merged_cdfs(*_discrete(values, counts), cur_sorted)
    last = np.append(points[1:] != points[:-1], True)  # where both CDFs have taken all ties
    return float(np.max(np.abs(f_cur[last] - f_ref[last])))


def psi_discrete(values: Any, counts: Any, cur_sorted: np.ndarray, *,
                 eps: float = PSI_EPSILON) -> float:
    """PSI over bins cut at the reference deciles (ties merged), bins right-closed.

    A decile is the smallest value whose CDF reaches j/10, so every edge is a reference value and
    each value's mass falls in one bin; compared in integers (10 * cumulative count >= j * total),
    so a CDF landing exactly on j/10 is not missed by rounding.
    """
    v, c = _discrete(values, counts)
    x = cur_sorted
    if x.size == 0:
        raise ValueError("the current sample has no finite values")
    cum = np.cumsum(c)
    edges = np.unique(v[np.searchsorted(10.0 * cum, np.arange(1, 10) * cum[-1], side="left")])
    ref_cdf = np.concatenate([[0.0], cum[np.searchsorted(v, edges)] / cum[-1], [1.0]])
    cur_cdf = np.concatenate([[0.0], np.searchsorted(x, edges, side="right") / x.size, [1.0]])
    return psi(np.diff(ref_cdf), np.diff(cur_cdf), eps)


def _is_discrete(fb: Mapping[str, Any]) -> bool:
    """Whether a baseline feature carries an exact distribution (older baselines never do)."""
    return "values" in fb or "counts" in fb


# --------------------------------------------------------------------------------------------
# Categorical statistics
# --------------------------------------------------------------------------------------------

def js_distance(p_counts: Any, q_counts: Any) -> float:
    """Jensen-Shannon distance (natural log): sqrt of the JS divergence, in [0, sqrt(ln 2)].

    Takes counts or probabilities over the same categories; each side is normalised.
    """
    p = np.asarray(p_counts, dtype=float)
    q = np.asarray(q_counts, dtype=float)
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("js_distance needs two non-empty distributions over the same categories")
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)
    div = 0.0
    for side in (p, q):
        nz = side > 0
        div += 0.5 * float(np.sum(side[nz] * np.log(side[nz] / m[nz])))
    return math.sqrt(max(div, 0.0))


def _pool_cells(ref: np.ndarray, cur: np.ndarray, min_expected: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge the rarest categories (by total count) until each expected count >= min_expected."""
    total = ref + cur
    n_ref, n_cur = ref.sum(), cur.sum()
    n = n_ref + n_cur
    small = min(n_ref, n_cur) / n  # the row with the smaller total has the smaller expectations
    order = np.argsort(total, kind="stable")
    groups: list[list[int]] = []
    acc: list[int] = []
    acc_total = 0.0
    for i in order.tolist():
        acc.append(i)
        acc_total += total[i]
        if acc_total * small >= min_expected:
            groups.append(acc)
            acc, acc_total = [], 0.0
    if acc:  # leftover below the rule: join the smallest closed group (or stand alone)
        if groups:
            groups[0].extend(acc)
        else:
            groups.append(acc)
    pooled_ref = np.array([ref[g].sum() for g in groups], dtype=float)
    pooled_cur = np.array([cur[g].sum() for g in groups], dtype=float)
    return pooled_ref, pooled_cur


def chi2_two_sample(ref_counts: Any, cur_counts: Any, *,
                    min_expected: float = 0.0) -> tuple[float, int, float]:
    """Chi-square test of homogeneity on the 2 x K table [ref_counts; cur_counts].

    Returns (statistic, dof, p-value), as ``scipy.stats.chi2_contingency(correction=False)``
    for a table without empty columns (empty columns are dropped). With ``min_expected`` > 0 the
    rarest categories are pooled first so every expected count reaches it.
    """
    ref = np.asarray(ref_counts, dtype=float)
    cur = np.asarray(cur_counts, dtype=float)
    if ref.shape != cur.shape or ref.ndim != 1 or np.any(ref < 0) or np.any(cur < 0):
        raise ValueError("chi2_two_sample needs two non-negative count vectors of one length")
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("chi2_two_sample needs two non-empty samples")
    if min_expected > 0 and ref.size > 1:
        ref, cur = _pool_cells(ref, cur, min_expected)
    k = ref.size
    if k < 2:
        return 0.0, 0, 1.0
    col = ref + cur
    n = col.sum()
    stat = 0.0
    for row in (ref, cur):
        expected = row.sum() * col / n
        stat += float(np.sum((row - expected) ** 2 / expected))
    dof = k - 1
    return stat, dof, chi2_sf(stat, dof)


def gammaincc(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) = Gamma(a, x) / Gamma(a), for a > 0, x >= 0.

    Series for P(a, x) when x < a + 1 (Q = 1 - P), modified-Lentz continued fraction otherwise
    (Numerical Recipes 6.2). Accurate to ~1e-13 relative where the result is above ~1e-300.
    """
    if not a > 0 or not x >= 0 or math.isnan(x):
        raise ValueError(f"gammaincc needs a > 0 and x >= 0, got a={a}, x={x}")
    if x == 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    max_iter = 10_000 + int(50 * math.sqrt(a))
    if x < a + 1.0:
        term = 1.0 / a
        total = term
        ap = a
        for _ in range(max_iter):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-17:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefactor))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, max_iter):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(1.0, math.exp(log_prefactor) * h)


def chi2_sf(x: float, dof: float) -> float:
    """Survival function of the chi-square distribution: P(X > x) = Q(dof/2, x/2)."""
    if dof <= 0:
        return 1.0
    if x <= 0:
        return 1.0
    return gammaincc(0.5 * dof, 0.5 * x)


# --------------------------------------------------------------------------------------------
# Per-feature drift and the check
# --------------------------------------------------------------------------------------------

def numeric_scale(std: float, mean: float) -> float:
    """What W1 is divided by: the reference std, or max(|mean|, 1) for a constant reference.

    A reference counts as constant when std <= 1e-12 * max(1, |mean|) (rounding noise only).
    """
    if std > 1e-12 * max(1.0, abs(mean)):
        return float(std)
    return float(max(abs(mean), 1.0))


def numeric_statistic(fb: Mapping[str, Any], cur_sorted: np.ndarray) -> float:
    """The deciding statistic of a numeric feature: W1(reference, current) / scale.

    The reference is the exact discrete distribution when the baseline has one, else the sketch.
    The baseline's threshold calibration calls this too, so thresholds match the check.
    """
    if _is_discrete(fb):
        w1 = wasserstein_discrete(fb.get("values"), fb.get("counts"), cur_sorted)
    else:
        w1 = wasserstein_sketch(fb["quantiles"], cur_sorted,
                                tail_quantiles=fb.get("tail_quantiles"))
    return w1 / numeric_scale(fb["std"], fb["mean"])


def categorical_statistic(fb: Mapping[str, Any], counts: Mapping[str, int]) -> float:
    """The deciding statistic of a string feature: JS distance between category distributions."""
    ref_counts = fb["categories"]
    names = list(ref_counts) + [c for c in counts if c not in ref_counts]
    ref = [ref_counts.get(c, 0) for c in names]
    cur = [counts.get(c, 0) for c in names]
    return js_distance(ref, cur)


def _missing_fields(fb: Mapping[str, Any], n_missing: int, rows: int) -> dict[str, float]:
    rate = n_missing / rows if rows else 0.0
    return {"missing_rate": float(rate),
            "missing_rate_change": float(rate - float(fb["missing_rate"]))}


def _numeric_report(fb: Mapping[str, Any], column: Any, name: str, rows: int) -> dict[str, Any]:
    x, n_missing = numeric_values(column, name)
    out: dict[str, Any] = {"type": NUMBER, "statistic": WASSERSTEIN, "value": 0.0,
                           "threshold": float(fb["threshold"]), "drifted": False,
                           "ks": 0.0, "psi": 0.0, "count": int(x.size),
                           **_missing_fields(fb, n_missing, rows), "reason": None}
    if not fb.get("count"):
        out["reason"] = "no non-missing values in the baseline: not evaluated"
        return out
    if x.size == 0:
        out.update(drifted=True, reason="no non-missing values in the window (feature vanished)")
        return out
    value = numeric_statistic(fb, x)
    if _is_discrete(fb):
        ks = ks_discrete(fb.get("values"), fb.get("counts"), x)
        psi_value = psi_discrete(fb.get("values"), fb.get("counts"), x)
    else:
        tail = fb.get("tail_quantiles")
        ks = ks_sketch(fb["quantiles"], x, tail_quantiles=tail)
        psi_value = psi_sketch(fb["quantiles"], x, tail_quantiles=tail)
    out.update(value=value, drifted=bool(value > out["threshold"]), ks=ks, psi=psi_value)
    return out


def _categorical_report(fb: Mapping[str, Any], column: Any, name: str, rows: int) -> dict[str, Any]:
    counts, n_missing = category_counts(column, name)
    ref_counts: Mapping[str, int] = fb["categories"]
    n_cur = sum(counts.values())
    out: dict[str, Any] = {"type": STRING, "statistic": JENSEN_SHANNON, "value": 0.0,
                           "threshold": float(fb["threshold"]), "drifted": False,
                           "chi2": 0.0, "chi2_dof": 0, "chi2_p_value": 1.0,
                           "unseen_share": 0.0, "unseen_categories": [], "psi": 0.0,
                           "count": int(n_cur), **_missing_fields(fb, n_missing, rows),
                           "reason": None}
    if not ref_counts:
        out["reason"] = "no non-missing values in the baseline: not evaluated"
        return out
    if n_cur == 0:
        out.update(drifted=True, reason="no non-missing values in the window (feature vanished)")
        return out
    unseen = {c: k for c, k in counts.items() if c not in ref_counts}
    names = list(ref_counts) + list(unseen)
    ref = np.array([ref_counts.get(c, 0) for c in names], dtype=float)
    cur = np.array([counts.get(c, 0) for c in names], dtype=float)
    value = js_distance(ref, cur)
    stat, dof, p_value = chi2_two_sample(ref, cur, min_expected=CHI2_MIN_EXPECTED)
    out.update(value=value, drifted=bool(value > out["threshold"]),
               chi2=float(stat), chi2_dof=int(dof), chi2_p_value=float(p_value),
               unseen_share=float(sum(unseen.values()) / n_cur),
               unseen_categories=sorted(unseen, key=lambda c: (-unseen[c], c))[:MAX_UNSEEN_LISTED],
               psi=psi(ref / ref.sum(), cur / n_cur))
    return out


def _column_length(column: Any) -> int:
    return len(column) if hasattr(column, "__len__") else int(np.asarray(column).size)


def check_drift(baseline: Mapping[str, Any], columns: Mapping[str, Any], *,
                min_rows: int = DEFAULT_DRIFT_MIN_ROWS, share: float = DEFAULT_DRIFT_SHARE) -> dict[str, Any]:
    """Compare a window of current data (``columns``: name -> array) with a baseline.

    Returns the drift report described in docs/drift.md. Columns not in the baseline are
    ignored; baseline features missing from ``columns`` raise :class:`DriftInputError`.
    A window with fewer than ``min_rows`` rows is skipped: no statistics, no drift decision.
    """
    if baseline.get("version") != 1:
        raise DriftInputError(f"unsupported baseline version {baseline.get('version')!r}; expected 1")
    features: Mapping[str, Any] = baseline["features"]
    missing = [name for name in features if name not in columns]
    if missing:
        raise DriftInputError(
            f"columns lack baseline feature(s) {missing}; expected all of {list(features)}, "
            f"got {sorted(columns)}")
    lengths = {name: _column_length(columns[name]) for name in features}
    if len(set(lengths.values())) > 1:
        raise DriftInputError(f"feature columns differ in length: {lengths}")
    rows = next(iter(lengths.values()), 0)
    report: dict[str, Any] = {
        "rows": int(rows), "window": int(baseline["window"]), "min_rows": int(min_rows),
        "share": float(share), "drift_detected": False, "drifted_share": 0.0,
        "drifted_features": [], "skipped": False, "reason": None, "features": {},
    }
    if rows < min_rows:
        report.update(skipped=True,
                      reason=f"window has {rows} rows, fewer than min_rows={min_rows}: not checked")
        return report
    evaluated = drifted = 0
    for name, fb in features.items():
        if fb["type"] == NUMBER:
            entry = _numeric_report(fb, columns[name], name, rows)
        elif fb["type"] == STRING:
            entry = _categorical_report(fb, columns[name], name, rows)
        else:
            raise DriftInputError(f"feature {name!r} has unknown type {fb['type']!r} in the baseline")
        report["features"][name] = entry
        if entry["reason"] is None or entry["drifted"]:
            evaluated += 1
            if entry["drifted"]:
                drifted += 1
                report["drifted_features"].append(name)
    report["drifted_share"] = drifted / evaluated if evaluated else 0.0
    report["drift_detected"] = bool(evaluated and report["drifted_share"] >= share)
    return report
