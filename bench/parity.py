"""Parity of every catalogued estimator on real data: the table in docs/pipeline.md.

    python -m bench.parity [--json bench/parity.json] [ESTIMATOR_SUBSTRING ...]
    python -m bench.parity --markdown [--json bench/parity.json]   # the docs table from a run

For each estimator of ``infra.config`` (CLASSIFIERS, REGRESSORS) and each real dataset of its task
(tests/realdata.py: Palmer penguins as shipped, scikit-learn's wine, breast-cancer and diabetes),
runs ``functions.core.training.train`` exactly as the pipeline's Train step does and records the
parity result (labels that differ, largest probability / prediction difference, pass or fail),
the holdout metric from ONNX and from scikit-learn, and the time taken.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from functions.core import training  # noqa: E402
from infra.config import CLASSIFIERS, PROBABILITY_PARAMS, REGRESSORS  # noqa: E402
from tests import realdata  # noqa: E402

DATASETS = {
    "classification": [("penguins", "species"), ("wine", "target"), ("breast_cancer", "target")],
    "regression": [("penguins", "body_mass_g"), ("diabetes", "target")],
}


def data(name: str) -> bytes:
    return realdata.penguins() if name == "penguins" else realdata.sklearn_csv(name)


def run(estimator: str, task: str, dataset: str, target: str) -> dict:
    spec = {"target": target, "task": task, "estimator": estimator, "params": {}}
    if estimator in PROBABILITY_PARAMS:  # the setting that gives probabilities (checked at synth)
        key, gives, _, _ = PROBABILITY_PARAMS[estimator]
        spec["params"] = {key: gives[0]}
    t0 = time.perf_counter()
    try:
        result = training.train(data(dataset), spec)
    except Exception as exc:  # noqa: BLE001 - recorded in the table
        return {"estimator": estimator, "params": spec["params"], "dataset": dataset, "task": task,
                "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                "seconds": round(time.perf_counter() - t0, 2)}
    m, p = result.metrics, result.parity
    return {"estimator": estimator, "params": spec["params"], "dataset": dataset, "task": task, "passed": p["passed"],
            "label_mismatches": p.get("label_mismatches"), "label_ties": p.get("label_ties"),
            "max_abs_diff": p.get("max_abs_diff"), "allowed": p.get("allowed"),
            "metric": m["metric"], "onnx": m[m["metric"]], "sklearn": m["sklearn_" + m["metric"]],
            "seconds": round(time.perf_counter() - t0, 2)}


def _cell(row: dict) -> str:
    if row.get("error"):
        kind, _, message = row["error"].partition(": ")
        if kind == "TrainingError":
            return "fit failed¹"
        if "does not predict class probabilities" in message:
            return "no probabilities²"
        return "refused: two classes³" if "two classes" in message else f"error: {kind}"
    if row.get("label_mismatches") is not None:
        diff = f"{row['max_abs_diff']:.1g}" if row["max_abs_diff"] else "0"
        text = f"{row['metric']} {row['onnx']:.3f}, Δp {diff}"
    else:
        rel = row["max_abs_diff"] / row["allowed"] if row.get("allowed") else 0.0
        text = f"{row['metric']} {row['onnx']:.3f}, {rel:.0%} of tol."
    return text if row["passed"] else f"**gate fails**: {text}"


def markdown(rows: list[dict]) -> str:
    """One line per estimator, one column per dataset: the ONNX holdout metric and the largest
    difference from scikit-learn (probability Δp, or the share of the regression tolerance used)."""
    out = []
    for task, sets in DATASETS.items():
        names = [d for d, _ in sets]
        out.append(f"| {task} estimator | " + " | ".join(names) + " |")
        out.append("|---|" + "---|" * len(names))
        by = {}
        for r in rows:
            if r["task"] == task:
                by.setdefault(r["estimator"], {})[r["dataset"]] = r
        for estimator in sorted(by):
            params = next(iter(by[estimator].values())).get("params") or {}
            label = estimator.removeprefix("sklearn.") + (f" `{json.dumps(params)}`" if params else "")
            out.append(f"| {label} | " + " | ".join(_cell(by[estimator][d]) if d in by[estimator] else ""
                                                    for d in names) + " |")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="*", help="substrings of estimator names to run (default: all)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "parity.json"))
    ap.add_argument("--markdown", action="store_true", help="print the docs table of a stored run and exit")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.json).read_text())))
        return 0
    rows = []
    for task, catalogue in (("classification", CLASSIFIERS), ("regression", REGRESSORS)):
        for estimator in sorted(catalogue):
            if args.only and not any(s in estimator for s in args.only):
                continue
            for dataset, target in DATASETS[task]:
                row = run(estimator, task, dataset, target)
                rows.append(row)
                status = row.get("error") or ("pass" if row["passed"] else "FAIL")
                print(f"{estimator:60} {dataset:14} {status[:120]:8} diff={row.get('max_abs_diff')} "
                      f"{row.get('metric')}={row.get('onnx')} sklearn={row.get('sklearn')} {row['seconds']}s",
                      flush=True)
    Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
