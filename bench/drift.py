"""Drift: one Shipyard drift check vs Evidently's DataDriftPreset, same data, same run.

1,000,000 current rows x 23 columns (20 numeric, 3 string) against 1,000,000 reference rows.
Shipyard's check is ``functions.core.drift.check_drift`` against the baseline that
``functions.core.baseline.build_baseline`` made of the reference at training time (built once,
timed separately: it is part of training, not of a check). Evidently 0.7 compares the raw
reference with the current data each time (Wasserstein distance (normed) for numeric columns,
Jensen-Shannon distance for categorical ones, threshold 0.1: its defaults for this size).

Current data drifts on purpose in a few columns, from obvious to subtle, so the decisions of the
two can be compared feature by feature.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from bench.common import ratio

ROWS = 1_000_000
NUMERIC = 20
CATEGORIES = {"s0": ["a", "b", "c", "d"], "s1": ["red", "green", "blue"], "s2": [f"k{i}" for i in range(12)]}
# How the current data differs from the reference (column -> (kind, amount)).
DRIFT = {"n0": ("shift", 1.0), "n1": ("shift", 0.25), "n2": ("scale", 1.5), "n3": ("shift", 0.05),
         "n4": ("scale", 1.1), "s1": ("mix", 0.5), "s2": ("mix", 0.05)}


def make_columns(rows: int, *, current: bool, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    for i in range(NUMERIC):
        name = f"n{i}"
        loc, scale = float(i % 5), 1.0 + (i % 3)
        x = rng.normal(loc, scale, size=rows) if i % 4 else rng.lognormal(0.0, 0.6, size=rows) * scale
        if current and name in DRIFT:
            kind, amount = DRIFT[name]
            x = x + amount * scale if kind == "shift" else loc + (x - loc) * amount
        if i % 7 == 3:
            x[rng.random(rows) < 0.01] = np.nan  # a few missing values
        columns[name] = x
    for name, cats in CATEGORIES.items():
        p = np.linspace(2.0, 1.0, len(cats))
        p /= p.sum()
        if current and name in DRIFT:
            uniform = np.full(len(cats), 1.0 / len(cats))
            p = (1 - DRIFT[name][1]) * p + DRIFT[name][1] * uniform[::-1] * np.linspace(0.2, 1.8, len(cats))
            p /= p.sum()
        columns[name] = rng.choice(np.array(cats, dtype=object), size=rows, p=p)
    return columns


def _evidently_decisions(snapshot) -> tuple[dict[str, bool], dict[str, float], str]:
    decisions, scores, methods = {}, {}, set()
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            column, value, threshold = config["column"], float(metric["value"]), float(config["threshold"])
            decisions[column] = value >= threshold
            scores[column] = round(value, 5)
            methods.add(f"{config.get('method')} >= {threshold}")
    return decisions, scores, "; ".join(sorted(methods))


def run(*, rows: int = ROWS, repeats: int = 3, evidently_repeats: int = 1, log=print) -> dict:
    from functions.core.baseline import build_baseline
    from functions.core.drift import check_drift

    started = time.perf_counter()
    reference = make_columns(rows, current=False, seed=1)
    current = make_columns(rows, current=True, seed=2)
    schema = {"features": [{"name": f"n{i}", "type": "number"} for i in range(NUMERIC)]
              + [{"name": name, "type": "string"} for name in CATEGORIES]}
    log(f"  data: {rows:,} rows x {len(schema['features'])} columns, made in {time.perf_counter() - started:.1f} s")

    start = time.perf_counter()
    baseline = build_baseline(reference, schema)
    baseline_s = time.perf_counter() - start

    ours_s, report = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        report = check_drift(baseline, current)
        ours_s.append(time.perf_counter() - start)
    ours = {name: bool(entry["drifted"]) for name, entry in report["features"].items()}
    log(f"  shipyard check_drift: {statistics.median(ours_s):.2f} s (baseline built in {baseline_s:.1f} s)")

    out: dict = {
        "rows": rows, "columns": len(schema["features"]), "numeric": NUMERIC, "string": len(CATEGORIES),
        "reference_rows": rows, "injected_drift": {k: list(v) for k, v in DRIFT.items()},
        "shipyard_check_s_median": round(statistics.median(ours_s), 3),
        "shipyard_check_s": [round(t, 3) for t in ours_s],
        "shipyard_baseline_build_s": round(baseline_s, 3),
        "shipyard_drifted": sorted(k for k, v in ours.items() if v),
        "shipyard_dataset_drift": bool(report["drift_detected"]),
    }
    try:
        import evidently
        import pandas as pd
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    except Exception as exc:  # noqa: BLE001 - reported, not fatal: the rest of the suite stands
        out.update(evidently=None, evidently_vs_drift_1m=None, decisions_differ=None,
                   note=f"Evidently unavailable: {type(exc).__name__}: {exc} (pip install -e '.[bench]')")
        log(f"  evidently: {out['note']}")
        return out

    ref_df, cur_df = pd.DataFrame(reference), pd.DataFrame(current)
    definition = DataDefinition(numerical_columns=[f"n{i}" for i in range(NUMERIC)],
                                categorical_columns=list(CATEGORIES))
    evidently_s, snapshot = [], None
    for _ in range(evidently_repeats):  # ~100 s a run here: once keeps `make bench` under 10 minutes
        start = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur_df, data_definition=definition),
                                                   Dataset.from_pandas(ref_df, data_definition=definition))
        evidently_s.append(time.perf_counter() - start)
    theirs, scores, method = _evidently_decisions(snapshot)
    differ = sorted(name for name in ours if name in theirs and ours[name] != theirs[name])
    log(f"  evidently DataDriftPreset: {statistics.median(evidently_s):.2f} s; decisions differ on "
        f"{len(differ)} of {len(ours)} features {differ}")
    out.update(
        evidently=evidently.__version__,
        evidently_method=method,
        evidently_s_median=round(statistics.median(evidently_s), 3),
        evidently_s=[round(t, 3) for t in evidently_s],
        evidently_drifted=sorted(k for k, v in theirs.items() if v),
        evidently_scores=scores,
        shipyard_scores={k: {"statistic": v.get("statistic"), "value": v.get("value"),
                             "threshold": v.get("threshold")} for k, v in report["features"].items()},
        decisions_differ=len(differ),
        decisions_differ_features=differ,
        evidently_vs_drift_1m=ratio(statistics.median(evidently_s), statistics.median(ours_s), 2),
    )
    return out
