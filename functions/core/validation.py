"""Validation of a candidate against the gates, with onnxruntime + numpy only (no scikit-learn).

The validate step scores the candidate and the current production version on the candidate's
holdout (``holdout.json``, written by training) with the model's metric, and :func:`decide`
applies the gates in this order (the first that fails is the rejection reason):

1. parity: the ONNX graph agreed with scikit-learn on the holdout (recorded by training);
2. the candidate's score could be computed;
3. schema compatibility with production (same target, task, feature names, order and types);
   ``allow_schema_change`` lifts this gate for one run;
4. ``min_score``: not worse than it (for ``rmse``/``mae`` it is a maximum error; 0 means none);
5. ``max_regression``: not worse than production's score on the same holdout by more than it;
6. the same on every other set both are scored on: production's own stored holdout (rows the
   candidate's dataset may have relabelled) and each trusted evaluation set
   (``evaluation/<model>/*.csv``), which the candidate must also score ``min_score`` on.

docs/pipeline.md lists every reason with what to do about it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .metrics import higher_is_better, score
from .schema import FeatureSchema


@dataclass
class Decision:
    promote: bool
    reason: str
    checks: dict[str, Any] = field(default_factory=dict)


def holdout_records(holdout: Mapping[str, Any], names: list[str]) -> list[dict[str, Any]]:
    """The holdout rows as request-style records restricted to ``names`` (KeyError if one lacks)."""
    columns = holdout["columns"]
    cols = [columns[n] for n in names]
    return [dict(zip(names, values)) for values in zip(*cols)] if cols else []


def score_on_holdout(model, holdout: Mapping[str, Any], metric: str) -> float:
    """``metric`` of an :class:`~functions.core.onnx_model.OnnxModel` on the holdout rows."""
    schema: FeatureSchema = model.schema
    records = holdout_records(holdout, schema.names)
    out = model.predict(schema.to_feeds(records))
    y_true = list(holdout["target"])
    if schema.is_classifier and schema.classes and all(isinstance(c, str) for c in schema.classes):
        y_true = [str(v) for v in y_true]
    value = score(metric, y_true, out["predictions"], probabilities=out.get("probabilities"),
                  classes=_score_classes(schema))
    if not math.isfinite(value):
        raise ValueError(f"{metric} is not finite ({value})")
    return float(value)


def _score_classes(schema: FeatureSchema) -> list | None:
    # Probability columns follow the model's classes; labels it does not know make the metric
    # undefined for that model (score raises a ValueError naming them).
    return list(schema.classes) if schema.is_classifier and schema.classes else None


def schema_differences(candidate: Mapping[str, Any], production: Mapping[str, Any]) -> list[str]:
    """What a caller of the production model would notice: [] when compatible.

    Compatible means same target and task, and the same features (names, order, types); new
    categories in string features and new classes are compatible.
    """
    diffs = []
    for key in ("target", "task"):
        if candidate.get(key) != production.get(key):
            diffs.append(f"{key} {production.get(key)!r} -> {candidate.get(key)!r}")
    cand = [(f["name"], f["type"]) for f in candidate.get("features", [])]
    prod = [(f["name"], f["type"]) for f in production.get("features", [])]
    if cand != prod:
        cn, pn = [n for n, _ in cand], [n for n, _ in prod]
        added = [n for n in cn if n not in pn]
        removed = [n for n in pn if n not in cn]
        if added:
            diffs.append(f"features added {added}")
        if removed:
            diffs.append(f"features removed {removed}")
        pt = dict(prod)
        retyped = [f"{n} {pt[n]} -> {t}" for n, t in cand if n in pt and pt[n] != t]
        if retyped:
            diffs.append(f"feature types changed ({', '.join(retyped)})")
        if not added and not removed and not retyped:
            diffs.append(f"feature order changed {pn} -> {cn}")
    return diffs


def holdout_from_dataset(dataset, names: list[str]) -> dict[str, Any]:
    """A :class:`~functions.core.dataset.Dataset` (an evaluation set) as a holdout document: the
    ``names`` columns as JSON-style lists (None for missing) and the target; KeyError if one lacks."""
    columns = {}
    for name in names:
        col = dataset.columns[name]
        if col.dtype == object:
            columns[name] = [None if v is None else str(v) for v in col.tolist()]
        else:
            columns[name] = [None if math.isnan(v) else float(v) for v in col.tolist()]
    return {"columns": columns, "target": dataset.target.tolist(), "rows": int(dataset.rows)}


def worse_by(metric: str, candidate: float, reference: float) -> float:
    """How much worse ``candidate`` is than ``reference`` (negative when better)."""
    return reference - candidate if higher_is_better(metric) else candidate - reference


def _other_sets(metric: str, comparisons: list[Mapping[str, Any]], *, candidate_score: float, min_score: float,
                max_regression: float, production_version: int | None, checks: dict) -> Decision | None:
    """Gate 6: a rejection on another set (production's holdout, an evaluation set), or None."""
    hib = higher_is_better(metric)
    for c in comparisons:
        cand, prod = c.get("candidate"), c.get("production")
        if cand is None:
            continue
        if str(c.get("set", "")).startswith("evaluation/"):
            if (hib and cand < min_score) or (not hib and min_score > 0 and cand > min_score):
                return Decision(False, f"{metric} {cand:.4g} on the trusted evaluation set {c['set']} does not meet "
                                       f"min_score {min_score:g}", checks)
        if prod is not None:
            delta = worse_by(metric, cand, prod)
            if delta > max_regression + 1e-12:
                return Decision(False, f"{metric} {cand:.4g} is worse than production v{production_version}'s "
                                       f"{prod:.4g} on {c['set']} by {delta:.4g}, more than max_regression "
                                       f"{max_regression:g} (on its own holdout: {candidate_score:.4g}; does the new "
                                       "dataset's labelling disagree with what production learned?)", checks)
    return None


def decide(spec: Mapping[str, Any], *, candidate_score: float | None, candidate_error: str | None = None,
           parity: Mapping[str, Any] | None, schema_diffs: list[str], allow_schema_change: bool = False,
           production_version: int | None = None, production_score: float | None = None,
           production_error: str | None = None, comparisons: list[Mapping[str, Any]] = ()) -> Decision:
    """Apply the gates (module docstring) and say why.

    ``comparisons``: the other sets, each ``{"set", "candidate", "production", "error"}`` (scores may
    be None: a set that could not be scored is recorded, and gates nothing).
    """
    metric = spec.get("metric") or ("accuracy" if spec.get("task", "classification") == "classification" else "r2")
    min_score = float(spec.get("min_score", 0.0) or 0.0)
    max_regression = float(spec.get("max_regression", 0.0) or 0.0)
    hib = higher_is_better(metric)
    checks: dict[str, Any] = {"metric": metric, "higher_is_better": hib, "min_score": min_score,
                              "max_regression": max_regression, "candidate_score": candidate_score,
                              "production_version": production_version, "production_score": production_score}

    if not parity or not parity.get("passed"):
        detail = ""
        if parity:
            allowed = f"{parity.get('tolerance')}"
            if "target_scale" in parity:  # regression: the gate scales with the target
                allowed += f" x (target std {parity['target_scale']:.4g} + |prediction|)"
            detail = (f" (label mismatches {parity.get('label_mismatches', 0)}, max difference "
                      f"{parity.get('max_abs_diff')}, allowed {allowed}; docs/pipeline.md, \"Parity\")")
        return Decision(False, "ONNX parity check failed: the converted model does not reproduce scikit-learn on "
                               f"the holdout{detail}; the estimator may not convert faithfully, try another one",
                        checks)
    if candidate_score is None:
        return Decision(False, f"the candidate's {metric} cannot be computed on the holdout"
                               f"{': ' + candidate_error if candidate_error else ''}", checks)
    if schema_diffs:
        checks["schema_changes"] = schema_diffs
        if not allow_schema_change:
            return Decision(False, f"schema is not compatible with production v{production_version}: "
                                   f"{'; '.join(schema_diffs)}. Callers of the API would break; upload a dataset "
                                   "with the production columns, or start the run with --allow-schema-change", checks)
    if hib and candidate_score < min_score:
        return Decision(False, f"{metric} {candidate_score:.4g} is below min_score {min_score:g}", checks)
    if not hib and min_score > 0 and candidate_score > min_score:
        return Decision(False, f"{metric} {candidate_score:.4g} is above the maximum error min_score {min_score:g}",
                        checks)
    if comparisons:
        checks["comparisons"] = [dict(c) for c in comparisons]
    also = "".join(f"; {c['candidate']:.4g}" + (f" vs {c['production']:.4g}" if c.get("production") is not None else "")
                   + f" on {c['set']}" for c in comparisons if c.get("candidate") is not None)
    if production_version is not None:
        if production_score is None:
            checks["production_error"] = production_error
            if not schema_diffs:
                return Decision(False, f"production v{production_version} cannot be scored on this holdout "
                                       f"({production_error}); the regression gate cannot be applied", checks)
            rejected = _other_sets(metric, comparisons, candidate_score=candidate_score, min_score=min_score,
                                   max_regression=max_regression, production_version=production_version,
                                   checks=checks)
            if rejected:
                return rejected
            return Decision(True, f"{metric} {candidate_score:.4g} meets min_score {min_score:g}; schema change "
                                  f"allowed, production v{production_version} not comparable ({production_error})",
                            checks)
        delta = worse_by(metric, candidate_score, production_score)
        checks["worse_by"] = delta
        # A little slack for float noise: equal scores must pass max_regression 0.
        if delta > max_regression + 1e-12:
            return Decision(False, f"{metric} {candidate_score:.4g} is worse than production v{production_version}'s "
                                   f"{production_score:.4g} on the same holdout by {delta:.4g}, more than "
                                   f"max_regression {max_regression:g}", checks)
        rejected = _other_sets(metric, comparisons, candidate_score=candidate_score, min_score=min_score,
                               max_regression=max_regression, production_version=production_version, checks=checks)
        if rejected:
            return rejected
        return Decision(True, f"{metric} {candidate_score:.4g} vs production v{production_version}'s "
                              f"{production_score:.4g} (max_regression {max_regression:g}){also}; meets min_score "
                              f"{min_score:g}", checks)
    rejected = _other_sets(metric, comparisons, candidate_score=candidate_score, min_score=min_score,
                           max_regression=max_regression, production_version=None, checks=checks)
    if rejected:
        return rejected
    return Decision(True, f"{metric} {candidate_score:.4g} meets min_score {min_score:g}{also}; no production "
                          "version yet", checks)

