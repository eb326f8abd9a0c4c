"""Training baseline: summaries, the quantile sketch, adaptive thresholds."""
import json

import numpy as np
import pytest

from functions.core.baseline import MAX_DISCRETE_VALUES, build_baseline
from functions.core.drift import QUANTILE_LEVELS, DriftInputError, check_drift, numeric_statistic

SCHEMA = {"target": "label", "task": "classification",
          "features": [{"name": "num", "type": "number"},
                       {"name": "colour", "type": "string", "categories": ["blue", "red"]}],
          "classes": ["a", "b"]}


def _columns(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    num = rng.normal(5.0, 2.0, n)
    num[:30] = np.nan
    colour = np.array(rng.choice(["red", "blue", "green"], n, p=[0.6, 0.3, 0.1]), dtype=object)
    colour[:300] = None
    return {"num": num, "colour": colour, "label": rng.choice(["a", "b"], n)}


def test_summaries_and_format():
    cols = _columns()
    base = build_baseline(cols, SCHEMA)
    json.dumps(base, allow_nan=False)
    assert base["version"] == 1 and base["rows"] == 3000 and base["window"] == 500
    assert set(base["features"]) == {"num", "colour"}  # the target is not a feature

    num = base["features"]["num"]
    valid = cols["num"][~np.isnan(cols["num"])]
    assert num["type"] == "number" and num["count"] == 2970
    assert num["missing_rate"] == pytest.approx(0.01)
    assert num["mean"] == pytest.approx(valid.mean())
    assert num["std"] == pytest.approx(valid.std())
    assert num["min"] == valid.min() and num["max"] == valid.max()
    assert len(num["quantiles"]) == 201
    np.testing.assert_allclose(num["quantiles"], np.quantile(valid, QUANTILE_LEVELS), rtol=1e-12)
    assert num["quantiles"][0] == valid.min() and num["quantiles"][-1] == valid.max()
    lower, upper = num["tail_quantiles"]["lower"], num["tail_quantiles"]["upper"]
    assert len(lower) == len(upper) == 4
    assert num["quantiles"][0] <= lower[0] <= lower[-1] <= num["quantiles"][1]
    assert num["quantiles"][-2] <= upper[0] <= upper[-1] <= num["quantiles"][-1]

    colour = base["features"]["colour"]
    assert colour["type"] == "string" and colour["missing_rate"] == pytest.approx(0.1)
    expected = {c: int(np.sum(cols["colour"][300:] == c)) for c in ("red", "blue", "green")}
    assert colour["categories"] == expected
    assert colour["count"] == 2700

    for fb in base["features"].values():
        assert fb["chunks"] == 6  # 3000 rows // 500
        assert fb["configured_threshold"] == 0.1
        assert fb["threshold"] >= 0.1
    assert base["features"]["num"]["statistic"] == "wasserstein"
    assert base["features"]["colour"]["statistic"] == "jensen_shannon"


def test_threshold_adapts_to_noisy_small_windows():
    rng = np.random.default_rng(3)
    cols = {"num": rng.lognormal(0.0, 1.5, 20_000),
            "colour": np.array(rng.choice([f"k{i}" for i in range(100)], 20_000), dtype=object)}
    small = build_baseline(cols, SCHEMA, window=50)
    large = build_baseline(cols, SCHEMA, window=5000)
    for name in ("num", "colour"):
        fs, fl = small["features"][name], large["features"][name]
        assert fs["threshold"] > 0.1, name  # noise of 50-row windows exceeds the configured value
        assert fs["threshold"] == pytest.approx(fs["chunk_mean"] + 3 * fs["chunk_std"])
        assert fs["chunks"] == 200  # capped by max_chunks
        assert fl["chunks"] == 4
        assert fl["chunk_mean"] < fs["chunk_mean"]
    assert large["features"]["num"]["threshold"] == 0.1


def test_configured_threshold_is_a_floor_and_seed_is_deterministic():
    cols = _columns(5000)
    a = build_baseline(cols, SCHEMA, threshold=0.4, seed=1)
    b = build_baseline(cols, SCHEMA, threshold=0.4, seed=1)
    c = build_baseline(cols, SCHEMA, threshold=0.4, seed=2)
    assert a == b
    assert a["features"]["num"]["threshold"] == 0.4
    assert a["features"]["num"]["chunk_mean"] != c["features"]["num"]["chunk_mean"]


def test_too_few_rows_for_calibration_keeps_configured_threshold():
    base = build_baseline(_columns(700), SCHEMA)
    for fb in base["features"].values():
        assert fb["chunks"] == 1 and fb["threshold"] == 0.1 and fb["chunk_std"] is None


def test_all_missing_training_feature():
    cols = _columns(1000)
    cols["num"] = np.full(1000, np.nan)
    cols["colour"] = np.array([None] * 1000, dtype=object)
    base = build_baseline(cols, SCHEMA)
    json.dumps(base, allow_nan=False)
    assert base["features"]["num"]["count"] == 0 and base["features"]["num"]["missing_rate"] == 1.0
    assert base["features"]["colour"]["categories"] == {}
    from functions.core.drift import check_drift
    report = check_drift(base, _columns(1000, seed=1))
    assert not report["drift_detected"]
    assert "baseline" in report["features"]["num"]["reason"]


def test_errors():
    with pytest.raises(DriftInputError, match="colour"):
        build_baseline({"num": np.zeros(10)}, SCHEMA)
    with pytest.raises(DriftInputError, match="features"):
        build_baseline(_columns(), {"features": []})
    with pytest.raises(DriftInputError, match="type"):
        build_baseline(_columns(), {"features": [{"name": "num", "type": "date"}]})
    with pytest.raises(DriftInputError, match="window"):
        build_baseline(_columns(), SCHEMA, window=0)
    with pytest.raises(DriftInputError, match="threshold"):
        build_baseline(_columns(), SCHEMA, threshold=float("nan"))
    with pytest.raises(DriftInputError, match="length"):
        build_baseline({"num": np.zeros(10), "colour": np.array(["a"] * 9, dtype=object)}, SCHEMA)


NUMBERS = {"features": [{"name": "n", "type": "number"}]}


def test_few_distinct_values_store_the_exact_distribution():
    rng = np.random.default_rng(8)
    counts_col = rng.poisson(2.0, 5000).astype(float)
    counts_col[:50] = np.nan
    fb = build_baseline({"n": counts_col}, NUMBERS)["features"]["n"]
    json.dumps(fb, allow_nan=False)
    values, counts = np.unique(counts_col[50:], return_counts=True)
    assert fb["values"] == values.tolist() and fb["counts"] == counts.tolist()
    assert sum(fb["counts"]) == fb["count"] == 4950
    assert len(fb["quantiles"]) == 201 and len(fb["tail_quantiles"]["lower"]) == 4  # still there
    # the cap: MAX_DISCRETE_VALUES distinct values are stored, one more is not
    at_cap = np.arange(20 * MAX_DISCRETE_VALUES, dtype=float) % MAX_DISCRETE_VALUES
    stored = build_baseline({"n": at_cap}, NUMBERS)["features"]["n"]["values"]
    assert len(stored) == MAX_DISCRETE_VALUES
    over = np.arange(20 * (MAX_DISCRETE_VALUES + 1), dtype=float) % (MAX_DISCRETE_VALUES + 1)
    assert "values" not in build_baseline({"n": over}, NUMBERS)["features"]["n"]
    assert "values" not in build_baseline(_columns(), SCHEMA)["features"]["num"]  # continuous


def test_calibration_scores_chunks_as_the_check_does():
    """Thresholds of a discrete feature come from the exact statistic, chunk by chunk."""
    rows, window, seed = 10_000, 500, 3
    col = (np.random.default_rng(5).random(rows) < 0.3).astype(float)
    base = build_baseline({"n": col}, NUMBERS, window=window, seed=seed)
    fb = base["features"]["n"]
    # the chunks build_baseline uses: window-row pieces of a seeded shuffle
    order = np.random.default_rng(seed).permutation(rows)
    chunks = [col[order[i * window:(i + 1) * window]] for i in range(rows // window)]
    scores = [check_drift(base, {"n": chunk}, min_rows=1)["features"]["n"]["value"]
              for chunk in chunks]
    assert fb["chunks"] == len(scores) == 20
    assert fb["chunk_mean"] == pytest.approx(np.mean(scores), rel=1e-12)
    assert fb["chunk_std"] == pytest.approx(np.std(scores, ddof=1), rel=1e-12)
    assert fb["threshold"] == max(0.1, fb["chunk_mean"] + 3 * fb["chunk_std"])
    # ...and they differ from what the sketch would have given
    sketch_fb = {k: v for k, v in fb.items() if k not in ("values", "counts")}
    sketch_mean = np.mean([numeric_statistic(sketch_fb, np.sort(chunk)) for chunk in chunks])
    print(f"flag p=0.3: chunk mean exact {fb['chunk_mean']:.5f}, sketch {sketch_mean:.5f}")
    assert abs(sketch_mean - fb["chunk_mean"]) > 1e-4
