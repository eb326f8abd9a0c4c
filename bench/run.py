"""``python -m bench``: run every benchmark, print a table, write ``bench/results.json``.

    python -m bench [--only inference,cold,pipeline,drift,memory,localapi] [--quick] [--out PATH]

``--quick`` shrinks every benchmark (smaller loops, 100k drift rows, a 10 MB memory CSV) for a smoke run; its figures
are not the ones to quote. A full run takes ~5 minutes on 2 shared cores.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import traceback
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy: one thread, as in Lambda and the tests

from bench.common import machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results.json"
SECTIONS = ("inference", "cold", "pipeline", "drift", "memory", "localapi", "trainjob", "batch", "release")
GOALS = {
    "handler_vs_ort_b1000": "<= 1.5",
    "handler_vs_floor_b1000": "<= 1.25",
    "handler_vs_floor_b1": None,
    "sklearn_handler_vs_handler_b1": ">= 20",
    "cold_start_ort_vs_sklearn": "<= 0.3",
    "pipeline_vs_bare": None,
    "evidently_vs_drift_1m": None,
    "train_peak_rss_ratio": "<= 5",
    "load_peak_rss_ratio": None,
    "train_s_per_100mb": None,
    "local_api_p99_20_vs_1": None,
    "local_api_connection_errors": None,
    "trainjob_vs_lambda_train": None,  # reported, not gated: a job is a fresh process, a Lambda warm
    "batch_vs_floor_1m": ">= 0.5",
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Shipyard benchmarks")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="small smoke run (figures not for quoting)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the figures (default: bench/results.json for a full run of "
                             "every section; bench/results.local.json for --quick or --only runs)")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; expected {SECTIONS}")
    if args.out is None:  # a smoke or partial run never replaces the full run's figures
        full = not args.quick and set(only) == set(SECTIONS)
        args.out = RESULTS if full else RESULTS.with_name("results.local.json")

    started = time.perf_counter()
    results: dict = {"ratios": {}, "notes": {}, "machine": machine(),
                     "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                     "quick": args.quick}
    errors = {}

    def section(name: str, fn):
        if name not in only:
            return None
        _log(f"[{name}]")
        t = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - one failing section must not hide the others
            errors[name] = f"{type(exc).__name__}: {exc}"
            _log(traceback.format_exc())
            return None
        results.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t, 1)
        results[name] = value
        return value

    from bench import batch, drift, inference, localapi, memory, pipeline, release, trainjob

    warm = section("inference", lambda: inference.warm(rounds=4 if args.quick else 10,
                                                       budget_seconds=10 if args.quick else 75, log=_log))
    cold = section("cold", lambda: inference.cold(runs=2 if args.quick else 5, log=_log))
    pipe = section("pipeline", lambda: pipeline.run(repeats=1 if args.quick else 3, log=_log))
    drifted = section("drift", lambda: drift.run(rows=100_000 if args.quick else drift.ROWS,
                                                 repeats=1 if args.quick else 3, log=_log))
    mem = section("memory", lambda: memory.run(rows=92_000 if args.quick else memory.ROWS, log=_log))
    api = section("localapi", lambda: localapi.run(requests_1=20 if args.quick else 60,
                                                   per_client=3 if args.quick else 10, log=_log))

    ratios = results["ratios"]
    notes = results["notes"]
    if warm:
        ratios["handler_vs_ort_b1000"] = warm["batches"]["1000"]["handler_vs_ort_median"]
        ratios["handler_vs_floor_b1000"] = warm["batches"]["1000"]["handler_vs_floor_median"]
        ratios["handler_vs_floor_b1"] = warm["batches"]["1"]["handler_vs_floor_median"]
        ratios["sklearn_handler_vs_handler_b1"] = warm["batches"]["1"]["sklearn_handler_vs_handler_median"]
        if warm.get("forest_b1000"):
            ratios["handler_vs_ort_b1000_forest"] = warm["forest_b1000"]["handler_vs_ort_median"]
    if cold:
        ratios["cold_start_ort_vs_sklearn"] = cold["ort_vs_sklearn"]
    if pipe is not None:
        ratios["pipeline_vs_bare"] = pipe.get("pipeline_vs_bare")
        if pipe.get("note"):
            notes["pipeline_vs_bare"] = pipe["note"]
    if drifted is not None:
        ratios["evidently_vs_drift_1m"] = drifted.get("evidently_vs_drift_1m")
        ratios["drift_decisions_differ_1m"] = drifted.get("decisions_differ")
        if drifted.get("note"):
            notes["evidently_vs_drift_1m"] = drifted["note"]
        if args.quick:
            notes["evidently_vs_drift_1m"] = f"--quick: {drifted['rows']:,} rows, not 1M"
    if mem is not None:
        for key in ("train_peak_rss_ratio", "load_peak_rss_ratio", "train_s_per_100mb"):
            ratios[key] = mem.get(key)
        if args.quick:
            notes["train_peak_rss_ratio"] = f"--quick: a {mem['csv_bytes'] / 1e6:.0f} MB CSV, not 100 MB"
    if api is not None:
        ratios["local_api_p99_20_vs_1"] = api.get("p99_ratio")
        ratios["local_api_p50_20_vs_1"] = api.get("p50_ratio")
        ratios["local_api_connection_errors"] = api.get("connection_errors")
    scored = section("batch", lambda: batch.run(rows=100_000 if args.quick else batch.ROWS, log=_log))
    if scored is not None:
        ratios["batch_vs_floor_1m"] = scored.get("batch_vs_floor")
        ratios["batch_rows_per_s_1m"] = scored.get("rows_per_s")
        if args.quick:
            notes["batch_vs_floor_1m"] = f"--quick: {scored['rows']:,} rows, not 1M"
    job = section("trainjob", lambda: trainjob.run(rounds=1 if args.quick else 3, log=_log))
    if job is not None:
        ratios["trainjob_vs_lambda_train"] = job.get("job_vs_lambda_train")
        ratios["trainjob_vs_lambda_execution"] = job.get("job_vs_lambda_execution")
        notes["trainjob_vs_lambda_train"] = (f"same model, {job['rows']:,} rows: job {job['job_train_s']:.1f} s vs "
                                             f"Lambda {job['lambda_train_s']:.1f} s (local cloud; on AWS add "
                                             "instance start and image pull, docs/scale.md)")
    released = section("release", lambda: release.run(rounds=4 if args.quick else 10,
                                                      per_round=10 if args.quick else 40, log=_log))
    if released is not None:
        for batch in ("1", "100"):
            for mode in ("canary", "shadow"):
                ratios[f"{mode}_vs_no_release_b{batch}_median"] = released["batches"][batch][f"{mode}_vs_none_median"]
                ratios[f"{mode}_vs_no_release_b{batch}_p99"] = released["batches"][batch][f"{mode}_vs_none_p99"]
    for key in GOALS:
        ratios.setdefault(key, None)
        if ratios[key] is None and key not in notes:
            notes[key] = errors.get(_SECTION_OF[key], "section not run (--only)")
    results["goals"] = {k: v for k, v in GOALS.items() if v}
    results["errors"] = errors
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    print(table(results))
    _log(f"wrote {args.out} in {results['total_seconds']:.0f} s")
    return 1 if errors else 0


_SECTION_OF = {"handler_vs_ort_b1000": "inference", "handler_vs_floor_b1000": "inference",
               "handler_vs_floor_b1": "inference", "sklearn_handler_vs_handler_b1": "inference",
               "cold_start_ort_vs_sklearn": "cold", "pipeline_vs_bare": "pipeline",
               "evidently_vs_drift_1m": "drift", "train_peak_rss_ratio": "memory",
               "load_peak_rss_ratio": "memory", "train_s_per_100mb": "memory",
               "local_api_p99_20_vs_1": "localapi", "local_api_connection_errors": "localapi",
               "trainjob_vs_lambda_train": "trainjob", "batch_vs_floor_1m": "batch"}


def _goal(key: str) -> str:
    """A ``GOALS`` entry as the table shows it: ``"<= 1.5"`` -> ``≤ 1.5×``."""
    goal = GOALS.get(key)
    return goal.replace("<=", "≤").replace(">=", "≥") + "×" if goal else ""


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}{unit}" if abs(value) < 100 else f"{value:.0f}{unit}"
    return f"{value}{unit}"


def table(results: dict) -> str:
    """The run as a Markdown table (what docs/benchmarks.md shows)."""
    m = results["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['machine']}, "
             f"Python {m['python']}, load average at start {m.get('load_average_at_start')}", "",
             "| benchmark | Shipyard | baseline | ratio | goal |", "|---|---|---|---|---|"]
    warm = results.get("inference")
    if warm:
        for batch, entry in warm["batches"].items():
            for stat in ("median", "p99"):
                lines.append(
                    f"| warm handler vs bare `InferenceSession.run`, batch {batch}, {stat} | "
                    f"{entry['handler'][stat + '_ms']:.3f} ms | {entry['ort'][stat + '_ms']:.3f} ms | "
                    f"{_fmt(entry['handler_vs_ort_' + stat])}× | "
                    f"{_goal('handler_vs_ort_b1000') if batch == '1000' and stat == 'median' else ''} |")
        for batch, entry in warm["batches"].items():
            if "floor" not in entry:
                continue
            lines.append(
                f"| warm handler vs the JSON floor (`orjson.loads` + `to_feeds` + `session.run` + `orjson.dumps`), "
                f"batch {batch}, median | {entry['handler']['median_ms']:.3f} ms | "
                f"{entry['floor']['median_ms']:.3f} ms | {_fmt(entry['handler_vs_floor_median'])}× | "
                f"{_goal('handler_vs_floor_b1000') if batch == '1000' else ''} |")
        forest = warm.get("forest_b1000")
        if forest:
            lines.append(f"| warm handler vs bare `InferenceSession.run`, batch 1000, median, 100-tree forest | "
                         f"{forest['handler']['median_ms']:.3f} ms | {forest['ort']['median_ms']:.3f} ms | "
                         f"{_fmt(forest['handler_vs_ort_median'])}× | |")
        for batch, entry in warm["batches"].items():
            lines.append(
                f"| scikit-learn handler vs Shipyard handler, batch {batch}, median | "
                f"{entry['handler']['median_ms']:.3f} ms | {entry['sklearn_handler']['median_ms']:.3f} ms | "
                f"{_fmt(entry['sklearn_handler_vs_handler_median'])}× | "
                f"{_goal('sklearn_handler_vs_handler_b1') if batch == '1' else ''} |")
    cold = results.get("cold")
    if cold:
        lines.append("| cold start (fresh process: import, load model, 1 request; spawn to answer), "
                     f"median of {cold['runs']} | "
                     f"{cold['ort']['wall_ms_median']:.0f} ms | {cold['sklearn']['wall_ms_median']:.0f} ms "
                     f"(scikit-learn/joblib) | {_fmt(cold['ort_vs_sklearn'])}× | "
                     f"{_goal('cold_start_ort_vs_sklearn')} |")
        if cold.get("ort_vs_sklearn_to_exit") is not None:
            lines.append("| the same, spawn to process exit (teardown included) | "
                         f"{cold['ort']['exit_ms_median']:.0f} ms | "
                         f"{cold['sklearn']['exit_ms_median']:.0f} ms | {_fmt(cold['ort_vs_sklearn_to_exit'])}× | |")
    pipe = results.get("pipeline")
    if pipe is not None:
        if pipe.get("available"):
            for entry in [pipe] + pipe.get("other_estimators", []):
                lines.append(f"| pipeline (`training.train`) vs bare fit + convert, "
                             f"{entry['estimator'].rsplit('.', 1)[1]}, {entry['train_rows']:,} train rows | "
                             f"{entry['pipeline_s_median']:.2f} s | {entry['bare_fit_convert_s_median']:.2f} s | "
                             f"{_fmt(entry['pipeline_vs_bare'])}× | |")
        else:
            lines.append(f"| pipeline vs bare fit + convert | n/a | n/a | n/a | {pipe.get('note')} |")
    drifted = results.get("drift")
    if drifted is not None:
        if drifted.get("evidently"):
            lines.append(f"| drift check, {drifted['rows']:,} rows × {drifted['columns']} cols: Evidently "
                         f"{drifted['evidently']} DataDriftPreset vs `check_drift` | "
                         f"{drifted['shipyard_check_s_median']:.2f} s | {drifted['evidently_s_median']:.1f} s | "
                         f"{_fmt(drifted['evidently_vs_drift_1m'])}× faster | |")
            lines.append(f"| drift decisions that differ (of {drifted['columns']} features) | "
                         f"{', '.join(drifted['shipyard_drifted']) or 'none'} drifted | "
                         f"{', '.join(drifted['evidently_drifted']) or 'none'} drifted | "
                         f"{drifted['decisions_differ']} differ | |")
        else:
            lines.append(f"| drift check vs Evidently | {drifted['shipyard_check_s_median']:.2f} s | n/a | n/a | "
                         f"{drifted.get('note')} |")
    mem = results.get("memory")
    if mem is not None:
        mib = 2**20
        for mode, what in (("train", "`training.train`"), ("load", "`load_csv` alone")):
            if mem.get(f"{mode}_peak_rss") is None:
                continue
            lines.append(f"| peak RSS of a fresh process running {what} on a {mem['csv_bytes'] / 1e6:.0f} MB CSV "
                         f"({mem['rows']:,} rows × {mem['columns']} columns), ÷ CSV bytes | "
                         f"{mem[f'{mode}_peak_rss'] / mib:.0f} MiB | {mem['csv_bytes'] / mib:.0f} MiB (the CSV) | "
                         f"{_fmt(mem[f'{mode}_peak_rss_ratio'])}× | {_goal(f'{mode}_peak_rss_ratio')} |")
            above = (mem[f"{mode}_peak_rss"] - mem[f"{mode}_imports_peak_rss"]) / mib
            imports = mem[f"{mode}_imports_peak_rss"] / mib
            lines.append(f"| the same, above its imports alone ({imports:.0f} MiB), ÷ CSV "
                         f"bytes; seconds per 100 MB | {above:.0f} MiB; "
                         f"{mem[f'{mode}_s_per_100mb']:.1f} s | | {_fmt(mem[f'{mode}_above_imports_ratio'])}× | |")
    api = results.get("localapi")
    if api is not None:
        n = api["clients"]
        for stat in ("p50", "p99"):
            lines.append(f"| local API, signed POST predict: {n} concurrent clients vs 1, {stat} "
                         f"({api['connection_errors']} connection errors, non-200: {api['non_200'] or 'none'}) | "
                         f"{api[f'clients_{n}'][f'{stat}_ms']:.1f} ms | {api['one_client'][f'{stat}_ms']:.1f} ms | "
                         f"{_fmt(api[f'{stat}_ratio'])}× | |")
    job = results.get("trainjob")
    if job is not None:
        for what in ("train", "execution"):
            lines.append(f"| local cloud, same model and {job['rows']:,}-row CSV: SageMaker training job vs Train "
                         f"Lambda, {'Train state' if what == 'train' else 'whole execution'}, median of "
                         f"{job['rounds']} | {job[f'job_{what}_s']:.2f} s | {job[f'lambda_{what}_s']:.2f} s | "
                         f"{_fmt(job[f'job_vs_lambda_{what}'])}× | |")
    scored = results.get("batch")
    if scored is not None:
        floor = scored["floor"]
        lines.append(f"| batch scoring of a {scored['rows']:,}-row CSV on the local cloud, upload to summary "
                     f"({scored['batches']} batches), vs the floor (one process: parse the CSV, one session run), "
                     f"rows/s | {scored['rows_per_s']:,} ({scored['seconds']:.1f} s) | {floor['rows_per_s']:,} "
                     f"({floor['seconds']:.1f} s) | {_fmt(scored['batch_vs_floor'])} | {_goal('batch_vs_floor_1m')} |")
    released = results.get("release")
    if released is not None:
        for batch, entry in released["batches"].items():
            for mode in ("canary", "shadow"):
                for stat in ("median", "p99"):
                    lines.append(f"| warm predict during a {mode} release vs no release, penguins forest, batch "
                                 f"{batch}, {stat} (+{entry[f'{mode}_added_{stat}_ms']:.3f} ms) | "
                                 f"{entry[mode][stat + '_ms']:.3f} ms | {entry['none'][stat + '_ms']:.3f} ms | "
                                 f"{_fmt(entry[f'{mode}_vs_none_{stat}'])}× | |")
    lines += ["", "ratios: " + json.dumps(results["ratios"])]
    return "\n".join(lines)
