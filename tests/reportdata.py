"""Realistic report inputs: a baseline computed by functions/core/baseline.py on the Palmer penguins
table (tests/realdata.py), a drift report from functions/core/drift.py on a shifted copy of it, the
registry's version records, and quality checks in the quality check's format (fixtures until the
registry has ``quality_history``)."""
from __future__ import annotations

import csv
import io

import numpy as np

from functions.core.baseline import build_baseline
from functions.core.drift import check_drift
from functions.core.report import current_distributions
from tests.realdata import penguins

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
STRINGS = ["island", "sex"]
SCHEMA = {"features": [{"name": n, "type": "number"} for n in NUMERIC]
          + [{"name": n, "type": "string"} for n in STRINGS]}
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


def columns(extra_feature: str | None = None) -> dict:
    rows = list(csv.DictReader(io.StringIO(penguins().decode())))
    cols = {n: np.array([float(r[n]) if r[n] != "NA" else np.nan for r in rows]) for n in NUMERIC}
    cols.update({n: np.array([None if r[n] == "NA" else r[n] for r in rows], dtype=object) for n in STRINGS})
    if extra_feature:
        cols[extra_feature] = cols["island"].copy()
    return cols


def shifted(cols: dict) -> dict:
    """The window: body mass up 600 g, flippers up 8 mm, most penguins from Biscoe; bills unchanged."""
    out = {k: v.copy() for k, v in cols.items()}
    out["body_mass_g"] = out["body_mass_g"] + 600.0
    out["flipper_length_mm"] = out["flipper_length_mm"] + 8.0
    rng = np.random.default_rng(1)
    out["island"] = np.array(["Biscoe" if rng.random() < 0.8 else v for v in out["island"]], dtype=object)
    return out


def drift_and_baseline(extra_feature: str | None = None) -> tuple[dict, dict]:
    cols = columns(extra_feature)
    schema = SCHEMA if not extra_feature else {
        "features": SCHEMA["features"] + [{"name": extra_feature, "type": "string"}]}
    baseline = build_baseline(cols, schema, window=100)
    window = shifted(cols)
    report = check_drift(baseline, window, min_rows=100, share=0.5)
    report.update(model="penguins", version=3, checked_at="2026-05-04T10:00:00.000Z",
                  report_key="drift/penguins/2026-05-04T10-00-00.000Z.json",
                  distributions=current_distributions(baseline, window))
    return report, baseline


def versions() -> list[dict]:
    def validated(v, score, prod_v, prod_score, status, reason=None):
        return {"version": v, "status": status, "created_at": f"2026-05-0{v}T09:00:00.000Z", "reason": reason,
                "metrics": {"accuracy": score, "validation": {
                    "candidate_score": score, "production_version": prod_v, "production_score": prod_score,
                    "checks": {"metric": "accuracy", "min_score": 0.8}}}}
    return [validated(1, 0.9565, None, None, "archived"),
            validated(2, 0.7101, 1, 0.9565, "rejected", "accuracy 0.7101 is below min_score 0.8"),
            validated(3, 0.9855, 1, 0.9565, "production"),
            {"version": 4, "status": "failed", "created_at": "2026-05-04T09:00:00.000Z",
             "reason": "dataset has no column 'species'", "metrics": {}}]


def quality_checks(n: int = 6) -> list[dict]:
    """Quality summaries newest first, the newest as the full quality JSON (with ``versions``)."""
    out = []
    for i in range(n):
        score = [0.97, 0.96, 0.95, 0.91, 0.86, 0.78][i % 6]
        out.append({"model": "penguins", "checked_at": f"2026-05-0{i + 1}T12:00:00.000Z",
                    "window": {"start": f"2026-05-0{i + 1}T11:00:00.000Z", "end": f"2026-05-0{i + 1}T12:00:00.000Z"},
                    "metric": "accuracy", "min_score": 0.8, "min_labels": 50,
                    "labels": {"files": 1, "rows": 120 + 10 * i, "matched": 110 + 10 * i, "unmatched": 10,
                               "malformed": 0, "duplicates": 0, "late": 0},
                    "captured": 150 + 10 * i, "coverage": 0.8, "version": 3, "score": score,
                    "degraded": score < 0.8, "skipped": False, "reason": None,
                    "report_key": f"quality/penguins/2026-05-0{i + 1}T12-00-00.000Z.json"})
    out.reverse()  # newest first
    out[0]["versions"] = {"3": {"labelled": 160, "score": 0.78, "confusion_matrix": {
        "labels": CLASSES, "matrix": [[61, 9, 2], [12, 18, 1], [4, 7, 46]]}}}
    return out
