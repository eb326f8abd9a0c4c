"""Timing helpers and the description of the machine a run happened on."""
from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(seconds: list[float]) -> dict:
    """Median, p99, mean and count of a list of durations, in milliseconds."""
    return {
        "median_ms": round(statistics.median(seconds) * 1e3, 4),
        "p99_ms": round(percentile(seconds, 99) * 1e3, 4),
        "mean_ms": round(statistics.fmean(seconds) * 1e3, 4),
        "n": len(seconds),
    }


def interleaved(calls: dict[str, Callable[[], object]], *, rounds: int, per_round: int,
                warmup: int = 3) -> dict[str, list[float]]:
    """Time each call ``rounds * per_round`` times, alternating between them round by round, so
    load from other work on the machine falls on all of them alike."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    clock = time.perf_counter
    for _ in range(rounds):
        for name, fn in calls.items():
            out = times[name]
            for _ in range(per_round):
                start = clock()
                fn()
                out.append(clock() - start)
    return times


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, digits)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "threads": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
    }
    versions = {}
    for name in ("numpy", "onnxruntime", "sklearn", "skl2onnx", "scipy", "pandas", "evidently", "moto"):
        try:
            module = __import__(name)
            versions["scikit-learn" if name == "sklearn" else name] = getattr(module, "__version__", "?")
        except Exception:  # noqa: BLE001 - a missing optional library is simply not listed
            continue
    info["libraries"] = versions
    return info
