"""Pipeline overhead: the train step's core (``functions.core.training.train``: CSV validation,
typed dataset, holdout split, fit, ONNX conversion, parity check with onnxruntime, drift
baseline) vs a bare scikit-learn fit + skl2onnx conversion of the same pipeline on the same
training rows, already in memory."""
from __future__ import annotations

import csv
import importlib.util
import io
import statistics
import time

import numpy as np

from bench.common import ratio

ROWS = 20_000
SPEC = {"target": "label", "task": "classification", "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 500}, "metric": "accuracy", "holdout": 0.2}


def dataset(rows: int = ROWS, seed: int = 0) -> tuple[list[str], list[list]]:
    """8 numeric + 2 string features, 3 classes, a few missing cells."""
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(rows, 8))
    region = rng.choice(["north", "south", "east", "west"], size=rows)
    plan = rng.choice(["free", "pro", "team"], size=rows, p=[0.6, 0.3, 0.1])
    score = numeric[:, 0] + 0.5 * numeric[:, 1] - 0.3 * numeric[:, 2] + (plan == "pro") - (region == "west")
    score += rng.normal(0, 0.5, size=rows)
    label = np.where(score > 1.0, "high", np.where(score > -0.5, "mid", "low"))
    columns = [f"f{i}" for i in range(8)] + ["region", "plan", "label"]
    table = [[float(v) for v in numeric[i]] + [str(region[i]), str(plan[i]), str(label[i])] for i in range(rows)]
    for i in range(0, rows, 997):
        table[i][3] = None
    return columns, table


def _csv(columns, table) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(["" if v is None else v for v in row] for row in table)
    return buffer.getvalue().encode()


# The ratio is for the configured default estimator (cdk.json: LogisticRegression), where the fit
# is quick and the pipeline's fixed work shows most; a forest shows a fit-dominated case.
ESTIMATORS = [("sklearn.linear_model.LogisticRegression", {"max_iter": 500}),
              ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 50, "random_state": 0})]


def run(*, repeats: int = 3, log=print) -> dict:
    out = None
    for estimator, params in ESTIMATORS:
        result = run_one(dict(SPEC, estimator=estimator, params=params), repeats=repeats, log=log)
        if out is None:
            out = result
            out["other_estimators"] = []
        else:
            out["other_estimators"].append(result)
    return out


def run_one(spec: dict, *, repeats: int = 3, log=print) -> dict:
    if importlib.util.find_spec("functions.core.training") is None:
        return {"available": False, "note": "not available yet: functions/core/training.py has not landed",
                "pipeline_vs_bare": None}
    from functions.core import convert, training
    from functions.core.schema import FeatureSchema

    columns, table = dataset()
    data = _csv(columns, table)
    n_train = int(round(len(table) * (1 - spec["holdout"])))
    schema = FeatureSchema.from_rows(columns, table, spec["target"], spec["task"])
    X = convert.matrix(schema, table[:n_train], columns)
    y = convert.target(schema, table[:n_train], columns)

    def bare() -> None:
        pipeline = convert.build_pipeline(schema, spec["estimator"], spec["params"]).fit(X, y)
        convert.to_onnx(pipeline, schema)

    def full() -> None:
        result = training.train(data, spec)
        assert result.parity.get("passed"), result.parity

    bare(), full()  # warm-up: imports and first-call costs out of the figures
    times: dict[str, list[float]] = {"pipeline": [], "bare": []}
    for _ in range(repeats):
        for name, fn in (("pipeline", full), ("bare", bare)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    out = {
        "available": True,
        "estimator": spec["estimator"],
        "data": f"{len(table)} rows x {len(columns) - 1} features (8 numeric, 2 string), 3 classes, "
                f"{spec['estimator'].rsplit('.', 1)[1]}; CSV {len(data) / 1e6:.1f} MB",
        "pipeline_s_median": round(statistics.median(times["pipeline"]), 3),
        "bare_fit_convert_s_median": round(statistics.median(times["bare"]), 3),
        "pipeline_s": [round(t, 3) for t in times["pipeline"]],
        "bare_fit_convert_s": [round(t, 3) for t in times["bare"]],
        "train_rows": n_train,
    }
    out["pipeline_vs_bare"] = ratio(out["pipeline_s_median"], out["bare_fit_convert_s_median"])
    log(f"  {spec['estimator'].rsplit('.', 1)[1]}: pipeline {out['pipeline_s_median']:.2f} s "
        f"vs bare fit+convert {out['bare_fit_convert_s_median']:.2f} s")
    return out
