"""Memory of a training run: peak RSS ÷ CSV bytes on a generated ~100 MB CSV.

    python -m bench.memory [--rows 940000] [--only load,train] [--keep DIR]

Each measurement runs in a fresh ``python -c`` child (imports counted, as in a Lambda sandbox),
which reads the CSV's bytes (as the train step reads the S3 object), then runs either
``functions.core.dataset.load_csv`` alone (``load``) or ``functions.core.training.train``
(``train``), and reports its peak RSS: ``VmHWM`` of ``/proc/self/status``, the high-water mark of
the child's own memory. (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is reported beside it and
used where there is no ``/proc``; on Linux it is not reset by exec, so it also holds the RSS the
forked parent had — 200 MiB of a parent that just wrote the CSV.) For each mode, a child that
only imports what that mode imports (``imports-load``: numpy and the dataset module;
``imports-train``: the training stack, scikit-learn, skl2onnx, onnxruntime) is the baseline
measured in the same run: ``*_above_imports_ratio`` is (peak − that) ÷ CSV bytes, the part that
grows with the data.
``train_peak_rss_ratio`` = peak RSS of the ``train`` child ÷ CSV bytes (goal ≤ 5, issue 9);
``load_peak_rss_ratio`` the same for ``load_csv`` alone; ``*_s_per_100mb`` the seconds of the
call (reading the file and imports excluded) scaled to 100 MB (10^8 bytes).

The CSV (940,000 rows × 14 columns: 11 numbers, 2 categories, a 3-class label; about 1 % of the
numeric cells and 0.5 % of the category cells missing, written ``NA`` and empty) is generated
deterministically into a temporary directory and deleted afterwards (``--keep DIR`` keeps it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROWS = 920_000
NUMERIC = 11
SPEC = {"target": "label", "task": "classification", "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 100}, "metric": "accuracy", "holdout": 0.2}
ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, resource, sys, time
mode, path, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

class NoPandas:  # as in the training layer, which has no pandas (scikit-learn imports it when present: ~95 MiB)
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'")
sys.meta_path.insert(0, NoPandas())

def peak_rss():
    # VmHWM: the high-water mark of this process's own memory. ru_maxrss is the fallback (not
    # Linux): on Linux it carries over the RSS the forked parent had before exec.
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

from functions.core import dataset
if mode in ("train", "imports-train"):
    from functions.core import training
    import sklearn.linear_model, skl2onnx, onnxruntime  # what train imports when it runs
data = None
if mode == "load":
    with open(path, "rb") as fh:
        data = fh.read()

def read():  # as the Train step does: training holds the only reference, drops it once parsed
    with open(path, "rb") as fh:
        return fh.read()
before = peak_rss()
t = time.perf_counter()
if mode == "load":
    d = dataset.load_csv(data, target=spec["target"], task=spec["task"])
    assert d.rows > 0
elif mode == "train":
    result = training.train(read, spec)
seconds = time.perf_counter() - t
print(json.dumps({"peak_rss": peak_rss(), "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "rss_before_call": before, "seconds": seconds}))
"""


def generate(path: Path, rows: int = ROWS, seed: int = 0, marker: str = "NA") -> int:
    """Write the benchmark CSV to ``path``; returns its size in bytes. Deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    regions = np.array(["north", "south", "east", "west", "centre"])
    plans = np.array(["free", "pro", "team"])
    block = 50_000
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join([f"f{i}" for i in range(NUMERIC)] + ["region", "plan", "label"]) + "\n")
        for start in range(0, rows, block):
            n = min(block, rows - start)
            x = rng.normal(size=(n, NUMERIC)) * np.array([1, 10, 100, 0.1, 5, 1, 2, 3, 1000, 0.01, 50])
            region = regions[rng.integers(0, len(regions), size=n)]
            plan = plans[rng.choice(3, size=n, p=[0.6, 0.3, 0.1])]
            score = x[:, 0] + 0.05 * x[:, 1] - 0.003 * x[:, 2] + (plan == "pro") - (region == "west")
            label = np.where(score > 1.0, "high", np.where(score > -0.5, "mid", "low"))
            cells = np.char.mod("%.6g", x).astype(object)
            cells[rng.random(size=(n, NUMERIC)) < 0.01] = marker
            region = region.astype(object)
            region[rng.random(size=n) < 0.005] = ""
            table = np.column_stack([cells, region, plan.astype(object), label.astype(object)])
            fh.write("\n".join(",".join(row) for row in table.tolist()))
            fh.write("\n")
    return path.stat().st_size


def child(mode: str, path: Path, spec: dict = SPEC) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(path), json.dumps(spec)], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} child failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(*, rows: int = ROWS, only: tuple[str, ...] = ("load", "train"), keep: Path | None = None,
        marker: str = "NA", log=print) -> dict:
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-memory-") as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "bench.csv"
        t = time.perf_counter()
        size = generate(path, rows, marker=marker)
        log(f"  generated {rows:,} rows, {size / 1e6:.1f} MB in {time.perf_counter() - t:.0f} s")
        out: dict = {"rows": rows, "columns": NUMERIC + 3, "csv_bytes": size,
                     "data": f"{rows:,} rows x {NUMERIC + 3} columns ({NUMERIC} numeric, 2 string, 3-class label; "
                             f"~1 % NA numbers, ~0.5 % empty strings); CSV {size / 1e6:.1f} MB",
                     "estimator": SPEC["estimator"]}
        for mode in only:
            base = child(f"imports-{mode}", path)
            out[f"{mode}_imports_peak_rss"] = base["peak_rss"]
            r = child(mode, path)
            out[f"{mode}_peak_rss"] = r["peak_rss"]
            out[f"{mode}_peak_rss_ratio"] = round(r["peak_rss"] / size, 3)
            out[f"{mode}_above_imports_ratio"] = round((r["peak_rss"] - base["peak_rss"]) / size, 3)
            out[f"{mode}_seconds"] = round(r["seconds"], 2)
            out[f"{mode}_s_per_100mb"] = round(r["seconds"] * 1e8 / size, 2)
            log(f"  {mode}: imports alone {base['peak_rss'] / 2**20:.0f} MiB; peak RSS {r['peak_rss'] / 2**20:.0f} MiB "
                f"= {out[f'{mode}_peak_rss_ratio']:.2f}x the CSV "
                f"({out[f'{mode}_above_imports_ratio']:.2f}x above imports), {r['seconds']:.1f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--only", default="load,train", help="comma-separated subset of load,train")
    parser.add_argument("--keep", type=Path, default=None, help="write the CSV here and keep it")
    parser.add_argument("--marker", default="NA", help="how missing numbers are written (default NA)")
    args = parser.parse_args(argv)
    only = tuple(m.strip() for m in args.only.split(",") if m.strip())
    unknown = set(only) - {"load", "train"}
    if unknown:
        parser.error(f"unknown mode(s) {sorted(unknown)}; expected load, train")
    result = run(rows=args.rows, only=only, keep=args.keep, marker=args.marker,
                 log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
