"""Drift statistics: agreement with scipy (test-only), sketch accuracy, check behaviour."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from functions.core import drift
from functions.core.baseline import build_baseline
from functions.core.drift import (
    DriftInputError,
    check_drift,
    chi2_sf,
    chi2_two_sample,
    gammaincc,
    js_distance,
    ks_discrete,
    ks_exact,
    ks_sketch,
    numeric_statistic,
    psi_discrete,
    psi_sketch,
    wasserstein_discrete,
    wasserstein_exact,
    wasserstein_sketch,
)

SCHEMA = {"features": [{"name": "x", "type": "number"}, {"name": "y", "type": "number"},
                       {"name": "colour", "type": "string"}]}


def _sample(kind, n, rng, shift=0.0):
    if kind == "normal":
        x = rng.normal(10.0, 2.0, n)
    elif kind == "lognormal":
        x = rng.lognormal(0.0, 1.0, n)
    elif kind == "uniform":
        x = rng.uniform(-1.0, 3.0, n)
    elif kind == "bimodal":
        x = np.where(rng.random(n) < 0.3, rng.normal(-2.0, 0.5, n), rng.normal(2.0, 1.0, n))
    elif kind == "ties":  # heavy ties: few distinct values
        x = rng.integers(0, 6, n).astype(float)
    elif kind == "rounded":
        x = np.round(rng.normal(0.0, 1.0, n), 1)
    else:
        raise AssertionError(kind)
    return x + shift


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


# ---------------------------------------------------------------- exact statistics vs scipy

@pytest.mark.parametrize("kind", ["normal", "lognormal", "uniform", "bimodal", "ties", "rounded"])
@pytest.mark.parametrize("sizes", [(50, 70), (1000, 333), (4000, 4000)])
def test_exact_statistics_agree_with_scipy(kind, sizes):
    rng = np.random.default_rng(hash((kind, sizes)) % 2**32)
    ref = _sample(kind, sizes[0], rng)
    cur = _sample(kind, sizes[1], rng, shift=0.3)
    assert _rel(wasserstein_exact(ref, cur), stats.wasserstein_distance(ref, cur)) < 1e-6
    assert _rel(ks_exact(ref, cur), stats.ks_2samp(ref, cur).statistic) < 1e-6


def test_exact_statistics_drop_missing():
    ref = np.array([1.0, np.nan, 2.0, 3.0, np.inf])
    cur = np.array([2.0, 5.0, np.nan])
    assert wasserstein_exact(ref, cur) == pytest.approx(stats.wasserstein_distance([1, 2, 3], [2, 5]))
    assert ks_exact(ref, cur) == pytest.approx(stats.ks_2samp([1, 2, 3], [2, 5]).statistic)


@pytest.mark.parametrize("seed", range(5))
def test_js_distance_agrees_with_scipy(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 40))
    p = rng.integers(0, 50, k).astype(float)
    q = rng.integers(0, 50, k).astype(float)
    p[0] += 1
    q[-1] += 1
    assert _rel(js_distance(p, q), float(jensenshannon(p, q))) < 1e-9  # scipy: natural log
    assert js_distance(p, p) == 0.0
    assert js_distance([1, 0], [0, 1]) == pytest.approx(math.sqrt(math.log(2)))


@pytest.mark.parametrize("seed", range(6))
def test_chi2_agrees_with_scipy_contingency(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 30))
    ref = rng.integers(1, 400, k)
    cur = rng.integers(1, 60, k)
    stat, dof, p_value = chi2_two_sample(ref, cur)
    expected = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert _rel(stat, expected.statistic) < 1e-9
    assert dof == expected.dof
    assert _rel(p_value, expected.pvalue) < 1e-9 or abs(p_value - expected.pvalue) < 1e-300


def test_chi2_single_category_and_pooling():
    assert chi2_two_sample([10], [5]) == (0.0, 0, 1.0)
    # pooling keeps totals and makes every expected count >= 5
    ref = np.array([1000, 3, 2, 1, 1, 500])
    cur = np.array([100, 0, 1, 0, 1, 50])
    stat, dof, _ = chi2_two_sample(ref, cur, min_expected=5)
    assert dof < 5 and stat >= 0


CHI2_GRID = [(x, k) for k in (1, 2, 3, 5, 10, 30, 99, 100, 500, 1000, 10_000)
             for x in (1e-6, 0.01, 0.5, 1.0, 2.0, 5.0, 0.5 * k, k - 1.0, k, k + 1.0, 1.5 * k + 3,
                       2 * k + 10, 3 * k + 50, 10 * k + 100)]


def test_chi2_survival_agrees_with_scipy_on_grid():
    worst = 0.0
    for x, k in CHI2_GRID:
        if x <= 0:
            continue
        expected = stats.chi2.sf(x, k)
        got = chi2_sf(x, k)
        if expected < 1e-290:
            assert got < 1e-280
            continue
        worst = max(worst, _rel(got, expected))
    assert worst < 1e-9, worst


@given(a=st.floats(0.05, 2000.0), x=st.floats(0.0, 5000.0))
@settings(max_examples=200, deadline=None)
def test_gammaincc_matches_scipy_property(a, x):
    from scipy.special import gammaincc as sp_gammaincc
    expected = float(sp_gammaincc(a, x))
    got = gammaincc(a, x)
    assert 0.0 <= got <= 1.0
    if expected > 1e-250:
        assert _rel(got, expected) < 1e-9


def test_chi2_sf_edges():
    assert chi2_sf(0.0, 3) == 1.0
    assert chi2_sf(5.0, 0) == 1.0
    assert chi2_sf(math.inf, 3) == 0.0
    with pytest.raises(ValueError):
        gammaincc(0.0, 1.0)


# ---------------------------------------------------------------- sketch vs exact

def _sketch(ref):
    b = build_baseline({"x": ref}, {"features": [{"name": "x", "type": "number"}]},
                       window=10**9)  # no calibration chunks needed here
    return b["features"]["x"]


SKETCH_KINDS = ["normal", "lognormal", "uniform", "bimodal"]


@pytest.mark.parametrize("kind", SKETCH_KINDS)
def test_sketch_statistics_close_to_exact_on_10k_rows(kind):
    worst_w = worst_ks = 0.0
    for seed in range(3):
        rng = np.random.default_rng(1000 + seed)
        ref = _sample(kind, 10_000, rng)
        fb = _sketch(ref)
        for shift in (0.0, 0.1, 0.5, 2.0):  # in reference standard deviations
            cur = _sample(kind, 10_000, rng, shift=shift * ref.std())
            cs = np.sort(cur)
            w_exact = wasserstein_exact(ref, cur) / ref.std()
            w_sketch = wasserstein_sketch(fb["quantiles"], cs,
                                          tail_quantiles=fb["tail_quantiles"]) / fb["std"]
            k_sketch = ks_sketch(fb["quantiles"], cs, tail_quantiles=fb["tail_quantiles"])
            worst_w = max(worst_w, abs(w_sketch - w_exact))
            worst_ks = max(worst_ks, abs(k_sketch - ks_exact(ref, cur)))
    print(f"{kind}: max |W/std sketch - exact| = {worst_w:.5f}, max |KS sketch - exact| = {worst_ks:.5f}")
    assert worst_w < 0.005
    assert worst_ks < 0.005


def test_sketch_is_exact_for_a_uniform_grid():
    # reference = 201 equally spaced points' linear sketch is U(0,1); a huge uniform sample
    q = np.linspace(0.0, 1.0, 201)
    cur = np.sort(np.random.default_rng(0).uniform(0, 1, 200_000))
    assert wasserstein_sketch(q, cur) < 0.003
    assert ks_sketch(q, cur) < 0.005
    assert abs(ks_sketch(q, cur) - stats.kstest(cur, "uniform").statistic) < 1e-9
    assert psi_sketch(q, cur) < 1e-3


def test_sketch_wasserstein_of_point_mass_reference():
    q = np.full(201, 3.0)
    cur = np.array([1.0, 3.0, 6.0])
    assert wasserstein_sketch(q, cur) == pytest.approx((2 + 0 + 3) / 3)
    assert ks_sketch(q, cur) == pytest.approx(1 / 3)  # F_cur - F_ref: 1/3 on [1,3), -1/3 on [3,6)


# ---------------------------------------------------------------- discrete reference vs exact

def _discrete_sample(kind, n, rng, change=0.0):
    """Discrete training-like data; ``change`` moves the distribution's parameter."""
    if kind == "poisson":
        return rng.poisson(3.0 * (1.0 + change), n).astype(float)
    if kind == "flag":
        return (rng.random(n) < 0.3 + 0.2 * change).astype(float)
    if kind == "int1to5":
        w = np.array([0.1, 0.2, 0.4, 0.2, 0.1]) + change * np.array([0.0, 0.0, -0.2, 0.0, 0.2])
        return rng.choice(np.arange(1.0, 6.0), n, p=w / w.sum())
    raise AssertionError(kind)


def _psi_direct(ref, cur, eps=drift.PSI_EPSILON):
    """PSI on the reference's deciles (smallest value with CDF >= j/10), bins right-closed."""
    r = np.sort(ref)
    edges = np.unique([r[-(-j * r.size // 10) - 1] for j in range(1, 10)])  # ceil(j n / 10)-th
    def props(s):
        return np.diff(np.concatenate([[0.0], [np.mean(s <= e) for e in edges], [1.0]]))
    rp, cp = np.maximum(props(ref), eps), np.maximum(props(cur), eps)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


@pytest.mark.parametrize("kind", ["poisson", "flag", "int1to5"])
def test_discrete_reference_statistics_equal_exact_on_10k_rows(kind):
    sketch_w = sketch_ks = exact_w = exact_ks = 0.0  # worst |statistic - scipy|, printed
    for seed in range(3):
        rng = np.random.default_rng(2000 + seed)
        ref = _discrete_sample(kind, 10_000, rng)
        base = build_baseline({"x": ref}, {"features": [{"name": "x", "type": "number"}]},
                              window=10**9)
        fb = base["features"]["x"]
        values, counts = np.unique(ref, return_counts=True)
        assert fb["values"] == values.tolist() and fb["counts"] == counts.tolist()
        for change in (0.0, 0.1, 0.5):
            for shift in (0.0, 0.5):  # 0.5: current values between the reference's
                cur = _discrete_sample(kind, 10_000, rng, change) + shift
                cs = np.sort(cur)
                w_scipy = stats.wasserstein_distance(ref, cur) / ref.std()
                ks_scipy = stats.ks_2samp(ref, cur).statistic
                assert abs(wasserstein_exact(ref, cur) / ref.std() - w_scipy) < 1e-12
                assert abs(ks_exact(ref, cur) - ks_scipy) < 1e-12
                ks = ks_discrete(fb["values"], fb["counts"], cs)
                exact_w = max(exact_w, abs(numeric_statistic(fb, cs) - w_scipy))
                exact_ks = max(exact_ks, abs(ks - ks_scipy))
                q, tail = fb["quantiles"], fb["tail_quantiles"]
                w_sketch = wasserstein_sketch(q, cs, tail_quantiles=tail) / fb["std"]
                sketch_w = max(sketch_w, abs(w_sketch - w_scipy))
                sketch_ks = max(sketch_ks, abs(ks_sketch(q, cs, tail_quantiles=tail) - ks_scipy))
                psi_expected = _psi_direct(ref, cur)
                assert abs(psi_discrete(fb["values"], fb["counts"], cs) - psi_expected) < 1e-9
                entry = check_drift(base, {"x": cur})["features"]["x"]  # the check takes this path
                assert abs(entry["value"] - w_scipy) < 1e-9
                assert abs(entry["ks"] - ks_scipy) < 1e-9
                assert abs(entry["psi"] - psi_expected) < 1e-9
    print(f"{kind}: max |W/std - scipy| sketch {sketch_w:.5f}, exact reference {exact_w:.1e}; "
          f"max |KS - scipy| sketch {sketch_ks:.5f}, exact reference {exact_ks:.1e}")
    assert exact_w < 1e-9 and exact_ks < 1e-9


def test_sketch_was_off_on_discrete_data_and_the_exact_reference_is_not():
    """Poisson(1) counts, 10k rows: the sketch misses W1/std by more than the 0.005 allowed."""
    rng = np.random.default_rng(1)
    ref = rng.poisson(1.0, 10_000).astype(float)
    cur = rng.poisson(1.0, 10_000).astype(float)
    fb = _sketch(ref)
    cs = np.sort(cur)
    exact = wasserstein_exact(ref, cur) / ref.std()
    tail = fb["tail_quantiles"]
    sketch = wasserstein_sketch(fb["quantiles"], cs, tail_quantiles=tail) / fb["std"]
    print(f"Poisson(1): |W/std sketch - exact| = {abs(sketch - exact):.5f}, "
          f"discrete = {abs(numeric_statistic(fb, cs) - exact):.1e}")
    assert abs(sketch - exact) > 0.005
    assert abs(numeric_statistic(fb, cs) - exact) < 1e-9


def test_old_baseline_without_exact_distribution_uses_the_sketch():
    rng = np.random.default_rng(4)
    base = build_baseline({"x": _discrete_sample("poisson", 10_000, rng)},
                          {"features": [{"name": "x", "type": "number"}]})
    old = json.loads(json.dumps(base))
    del old["features"]["x"]["values"], old["features"]["x"]["counts"]
    cur = _discrete_sample("poisson", 2000, rng, 0.1)
    fb, cs = old["features"]["x"], np.sort(cur)
    entry = check_drift(old, {"x": cur})["features"]["x"]
    tail = fb["tail_quantiles"]
    w1 = wasserstein_sketch(fb["quantiles"], cs, tail_quantiles=tail)
    assert entry["value"] == w1 / fb["std"]
    assert entry["ks"] == ks_sketch(fb["quantiles"], cs, tail_quantiles=tail)
    assert entry["psi"] == psi_sketch(fb["quantiles"], cs, tail_quantiles=tail)
    assert entry["value"] != check_drift(base, {"x": cur})["features"]["x"]["value"]


@pytest.mark.parametrize("fields, match", [
    ({"values": [0.0, 1.0]}, "together"),  # counts missing
    ({"counts": [3, 4]}, "together"),  # values missing
    ({"values": [0.0, 1.0], "counts": [3]}, "one length"),
    ({"values": [], "counts": []}, "non-empty"),
    ({"values": [0.0, float("nan")], "counts": [3, 4]}, "finite"),
    ({"values": [0.0, float("inf")], "counts": [3, 4]}, "finite"),
    ({"values": [1.0, 0.0], "counts": [3, 4]}, "increasing"),
    ({"values": [1.0, 1.0], "counts": [3, 4]}, "increasing"),
    ({"values": [0.0, 1.0], "counts": [3, 0]}, "positive integers"),
    ({"values": [0.0, 1.0], "counts": [3, -4]}, "positive integers"),
    ({"values": [0.0, 1.0], "counts": [3, 2.5]}, "positive integers"),
    ({"values": [0.0, "a"], "counts": [3, 4]}, "lists of numbers"),
    ({"values": [[0.0], [1.0]], "counts": [[3], [4]]}, "one length"),
])
def test_malformed_exact_distribution_is_a_clear_error(fields, match):
    base = build_baseline({"x": np.tile([0.0, 1.0], 1000)},
                          {"features": [{"name": "x", "type": "number"}]})
    fb = base["features"]["x"]
    del fb["values"], fb["counts"]
    fb.update(fields)
    with pytest.raises(DriftInputError, match=match):
        check_drift(base, {"x": np.tile([0.0, 1.0], 500)})


@given(ref=st.lists(st.integers(-5, 5), min_size=1, max_size=80),
       cur=st.lists(st.floats(-8, 8, allow_nan=False), min_size=1, max_size=80))
@settings(max_examples=150, deadline=None)
def test_discrete_statistics_equal_exact_property(ref, cur):
    values, counts = np.unique(np.asarray(ref, dtype=float), return_counts=True)
    cs = np.sort(np.asarray(cur))
    w_expected = wasserstein_exact(ref, cur)
    tolerance = 1e-9 * max(1.0, w_expected)
    assert abs(wasserstein_discrete(values, counts, cs) - w_expected) <= tolerance
    assert abs(ks_discrete(values, counts, cs) - ks_exact(ref, cur)) < 1e-12
    assert abs(psi_discrete(values, counts, cs) - _psi_direct(np.asarray(ref, float), cs)) < 1e-9


# ---------------------------------------------------------------- check behaviour

def _frame(n, rng, x_shift=0.0, colours=("red", "green", "blue"), probs=(0.5, 0.3, 0.2)):
    return {"x": rng.normal(0.0, 1.0, n) + x_shift,
            "y": rng.exponential(2.0, n),
            "colour": np.array(rng.choice(colours, n, p=probs), dtype=object)}


@pytest.fixture(scope="module")
def baseline():
    return build_baseline(_frame(20_000, np.random.default_rng(42)), SCHEMA)


def _assert_json_finite(report):
    json.dumps(report, allow_nan=False)


def test_identical_distribution_no_drift(baseline):
    for seed in range(5):
        report = check_drift(baseline, _frame(2000, np.random.default_rng(seed)))
        _assert_json_finite(report)
        assert not report["drift_detected"]
        assert report["drifted_share"] == 0.0
        assert not any(f["drifted"] for f in report["features"].values())
        assert report["features"]["x"]["statistic"] == "wasserstein"
        assert report["features"]["colour"]["statistic"] == "jensen_shannon"


def test_half_sigma_shift_drifts_that_feature_only(baseline):
    report = check_drift(baseline, _frame(2000, np.random.default_rng(7), x_shift=0.5))
    feats = report["features"]
    assert feats["x"]["drifted"] and feats["x"]["value"] == pytest.approx(0.5, abs=0.08)
    assert not feats["y"]["drifted"] and not feats["colour"]["drifted"]
    assert report["drifted_share"] == pytest.approx(1 / 3)
    assert not report["drift_detected"]  # 1/3 < share 0.5
    assert check_drift(baseline, _frame(2000, np.random.default_rng(7), x_shift=0.5),
                       share=0.3)["drift_detected"]
    assert feats["x"]["ks"] > 0.1 and feats["x"]["psi"] > 0.1


def test_report_format(baseline):
    report = check_drift(baseline, _frame(600, np.random.default_rng(3)))
    assert {"rows", "window", "drift_detected", "drifted_share", "skipped", "reason",
            "features"} <= set(report)
    assert report["rows"] == 600 and report["window"] == 500 and report["skipped"] is False
    assert {"statistic", "value", "threshold", "drifted", "ks", "psi",
            "missing_rate_change"} <= set(report["features"]["x"])
    assert {"statistic", "value", "threshold", "drifted", "chi2", "chi2_p_value",
            "unseen_share", "missing_rate_change"} <= set(report["features"]["colour"])
    for entry in report["features"].values():
        for key, value in entry.items():
            if isinstance(value, float):
                assert math.isfinite(value), key


def test_skip_under_min_rows(baseline):
    report = check_drift(baseline, _frame(499, np.random.default_rng(3), x_shift=5.0))
    assert report["skipped"] and not report["drift_detected"]
    assert "499" in report["reason"] and "500" in report["reason"]
    assert report["features"] == {}
    assert not check_drift(baseline, _frame(20, np.random.default_rng(3)), min_rows=10)["skipped"]


def test_missing_feature_is_a_clear_error(baseline):
    cols = _frame(1000, np.random.default_rng(3))
    del cols["colour"]
    with pytest.raises(DriftInputError, match="colour"):
        check_drift(baseline, cols)
    cols = _frame(1000, np.random.default_rng(3))
    cols["x"] = cols["x"][:10]
    with pytest.raises(DriftInputError, match="length"):
        check_drift(baseline, cols)
    cols = _frame(1000, np.random.default_rng(3))
    cols["x"] = np.array(["a"] * 1000, dtype=object)
    with pytest.raises(DriftInputError, match="'x'"):
        check_drift(baseline, cols)


def test_extra_columns_ignored(baseline):
    cols = _frame(1000, np.random.default_rng(3))
    cols["prediction"] = np.zeros(1000)
    assert set(check_drift(baseline, cols)["features"]) == {"x", "y", "colour"}


def test_unseen_categories(baseline):
    rng = np.random.default_rng(5)
    cols = _frame(1000, rng, colours=("red", "green", "blue", "purple", "teal"),
                  probs=(0.4, 0.2, 0.1, 0.2, 0.1))
    entry = check_drift(baseline, cols)["features"]["colour"]
    assert entry["unseen_share"] == pytest.approx(np.isin(cols["colour"], ["purple", "teal"]).mean())
    assert entry["unseen_categories"] == ["purple", "teal"]
    assert entry["drifted"] and entry["chi2_p_value"] < 1e-6


def test_nan_heavy_columns(baseline):
    rng = np.random.default_rng(11)
    cols = _frame(2000, rng)
    cols["x"][rng.random(2000) < 0.9] = np.nan
    colour = cols["colour"]
    colour[rng.random(2000) < 0.8] = None
    colour[:5] = float("nan")
    report = check_drift(baseline, cols)
    _assert_json_finite(report)
    assert report["features"]["x"]["missing_rate_change"] == pytest.approx(np.isnan(cols["x"]).mean())
    assert report["features"]["colour"]["missing_rate"] > 0.79
    assert not report["features"]["x"]["drifted"]  # the values present still match


def test_all_missing_feature_is_flagged(baseline):
    cols = _frame(1000, np.random.default_rng(1))
    cols["y"] = np.full(1000, np.nan)
    cols["colour"] = np.array([None] * 1000, dtype=object)
    report = check_drift(baseline, cols)
    _assert_json_finite(report)
    for name in ("y", "colour"):
        entry = report["features"][name]
        assert entry["drifted"] and "vanished" in entry["reason"]
        assert entry["missing_rate_change"] == pytest.approx(1.0)


def test_constant_column_has_no_division_by_zero():
    schema = {"features": [{"name": "c", "type": "number"}]}
    base = build_baseline({"c": np.full(5000, 7.0)}, schema)
    fb = base["features"]["c"]
    assert fb["std"] == 0.0 and fb["threshold"] == 0.1
    with np.errstate(all="raise"):
        same = check_drift(base, {"c": np.full(1000, 7.0)})
        moved = check_drift(base, {"c": np.full(1000, 7.7)})
    _assert_json_finite(same)
    _assert_json_finite(moved)
    assert same["features"]["c"]["value"] == 0.0 and not same["drift_detected"]
    # rule: W1 / max(|mean|, 1) for a constant reference -> 0.7 / 7
    assert moved["features"]["c"]["value"] == pytest.approx(0.1)
    assert moved["features"]["c"]["ks"] == 1.0
    assert drift.numeric_scale(0.0, 0.2) == 1.0


def test_discrete_numeric_feature():
    rng = np.random.default_rng(2)
    schema = {"features": [{"name": "k", "type": "number"}]}
    base = build_baseline({"k": rng.integers(0, 4, 10_000).astype(float)}, schema)
    report = check_drift(base, {"k": rng.integers(0, 4, 2000).astype(float)})
    assert not report["drift_detected"]
    report = check_drift(base, {"k": rng.integers(2, 6, 2000).astype(float)})
    assert report["drift_detected"] and report["features"]["k"]["ks"] > 0.4


def test_many_small_categories_do_not_false_alarm():
    """200 categories, small expected counts: chi-square (pooled) and JS (adaptive) stay quiet."""
    schema = {"features": [{"name": "c", "type": "string"}]}
    names = np.array([f"c{i:03d}" for i in range(200)], dtype=object)
    probs = np.random.default_rng(0).dirichlet(np.full(200, 0.7))
    base = build_baseline({"c": names[np.random.default_rng(1).choice(200, 20_000, p=probs)]},
                          schema)
    fb = base["features"]["c"]
    assert fb["threshold"] > 0.1  # 500-row windows over 200 categories are noisy
    p_values, js_alarms, seeds = [], 0, 40
    for seed in range(seeds):
        cur = names[np.random.default_rng(100 + seed).choice(200, 500, p=probs)]
        entry = check_drift(base, {"c": cur})["features"]["c"]
        p_values.append(entry["chi2_p_value"])
        js_alarms += entry["drifted"]
    false_alarms = sum(p < 0.05 for p in p_values)
    print(f"chi2 false alarms at 5%: {false_alarms}/{seeds}; JS alarms: {js_alarms}/{seeds}")
    assert false_alarms <= 6  # Binomial(40, 0.05): P(> 6) ~ 1%
    assert js_alarms <= 1
    # ...and a real change of distribution is still caught
    other = np.random.default_rng(9).dirichlet(np.full(200, 0.7))
    cur = names[np.random.default_rng(3).choice(200, 500, p=other)]
    entry = check_drift(base, {"c": cur})["features"]["c"]
    assert entry["drifted"] and entry["chi2_p_value"] < 1e-6


def test_unsupported_baseline_version(baseline):
    with pytest.raises(DriftInputError, match="version"):
        check_drift({**baseline, "version": 2}, _frame(1000, np.random.default_rng(0)))


# ---------------------------------------------------------------- properties

finite_floats = st.floats(-1e6, 1e6, allow_nan=False)


@given(ref=st.lists(finite_floats, min_size=1, max_size=60),
       cur=st.lists(finite_floats, min_size=1, max_size=60))
@settings(max_examples=150, deadline=None)
def test_exact_statistics_properties(ref, cur):
    w = wasserstein_exact(ref, cur)
    k = ks_exact(ref, cur)
    assert math.isfinite(w) and w >= 0
    assert 0.0 <= k <= 1.0


@given(ref=st.lists(finite_floats, min_size=2, max_size=80),
       cur=st.lists(finite_floats, min_size=1, max_size=80))
@settings(max_examples=150, deadline=None)
def test_sketch_statistics_properties(ref, cur):
    q = np.quantile(np.asarray(ref), drift.QUANTILE_LEVELS)
    cs = np.sort(np.asarray(cur))
    w = wasserstein_sketch(q, cs)
    k = ks_sketch(q, cs)
    p = psi_sketch(q, cs)
    assert math.isfinite(w) and w >= 0
    assert 0.0 <= k <= 1.0
    assert math.isfinite(p) and p >= 0


@given(p=st.lists(st.integers(0, 1000), min_size=1, max_size=30), data=st.data())
@settings(max_examples=150, deadline=None)
def test_categorical_properties(p, data):
    q = data.draw(st.lists(st.integers(0, 1000), min_size=len(p), max_size=len(p)))
    if sum(p) == 0 or sum(q) == 0:
        return
    d = js_distance(p, q)
    assert 0.0 <= d <= math.sqrt(math.log(2)) + 1e-12
    stat, dof, pv = chi2_two_sample(p, q, min_expected=5)
    assert math.isfinite(stat) and stat >= 0 and 0.0 <= pv <= 1.0
