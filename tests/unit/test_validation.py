"""functions.core.validation: gates and scoring with onnxruntime + numpy (no scikit-learn)."""
import subprocess
import sys

import pytest

from functions.core import training
from functions.core.onnx_model import OnnxModel
from functions.core.schema import FeatureSchema
from functions.core.validation import decide, holdout_records, schema_differences, score_on_holdout, worse_by
from tests.pipeline import data
from tests.unit.test_training import ANIMALS

PARITY = {"passed": True, "label_mismatches": 0, "max_abs_diff": 1e-8, "tolerance": 1e-4}
SPEC = {"metric": "accuracy", "min_score": 0.8, "max_regression": 0.02}
RMSE = {"metric": "rmse", "task": "regression", "min_score": 0.0, "max_regression": 0.0}


def test_first_version_needs_only_min_score():
    d = decide(SPEC, candidate_score=0.9, parity=PARITY, schema_diffs=[])
    assert d.promote and "no production version yet" in d.reason
    d = decide(SPEC, candidate_score=0.7, parity=PARITY, schema_diffs=[])
    assert not d.promote and d.reason == "accuracy 0.7 is below min_score 0.8"


def test_max_regression_against_production_both_directions():
    ok = decide(SPEC, candidate_score=0.89, parity=PARITY, schema_diffs=[], production_version=3,
                production_score=0.9)
    assert ok.promote and ok.checks["worse_by"] == pytest.approx(0.01)
    bad = decide(SPEC, candidate_score=0.85, parity=PARITY, schema_diffs=[], production_version=3,
                 production_score=0.9)
    assert not bad.promote
    assert "worse than production v3's 0.9 on the same holdout by 0.05, more than max_regression 0.02" in bad.reason
    # rmse: lower is better; equal scores pass max_regression 0
    assert decide(RMSE, candidate_score=1.0, parity=PARITY, schema_diffs=[], production_version=1,
                  production_score=1.0).promote
    worse = decide(RMSE, candidate_score=1.2, parity=PARITY, schema_diffs=[], production_version=1,
                   production_score=1.0)
    assert not worse.promote and "rmse 1.2 is worse" in worse.reason
    assert worse_by("rmse", 1.2, 1.0) == pytest.approx(0.2) and worse_by("accuracy", 0.8, 0.9) == pytest.approx(0.1)


def test_min_score_of_an_error_metric_is_a_maximum_and_zero_means_none():
    assert decide(RMSE, candidate_score=50.0, parity=PARITY, schema_diffs=[]).promote
    d = decide({**RMSE, "min_score": 2.0}, candidate_score=3.0, parity=PARITY, schema_diffs=[])
    assert not d.promote and "above the maximum error min_score 2" in d.reason


def test_parity_failure_and_unscorable_candidate_reject():
    d = decide(SPEC, candidate_score=0.99, parity={**PARITY, "passed": False, "max_abs_diff": 0.3},
               schema_diffs=[])
    assert not d.promote and d.reason.startswith("ONNX parity check failed") and "0.3" in d.reason
    d = decide(SPEC, candidate_score=None, candidate_error="boom", parity=PARITY, schema_diffs=[])
    assert not d.promote and "cannot be computed on the holdout: boom" in d.reason


def test_schema_change_rejects_unless_allowed():
    diffs = ["features added ['w']"]
    d = decide(SPEC, candidate_score=0.9, parity=PARITY, schema_diffs=diffs, production_version=2,
               production_score=None, production_error="the holdout lacks its feature 'x'")
    assert not d.promote and "not compatible with production v2: features added ['w']" in d.reason
    d = decide(SPEC, candidate_score=0.9, parity=PARITY, schema_diffs=diffs, allow_schema_change=True,
               production_version=2, production_score=None, production_error="x")
    assert d.promote and "schema change allowed" in d.reason


def test_schema_differences():
    a = {"target": "y", "task": "classification",
         "features": [{"name": "x", "type": "number"}, {"name": "c", "type": "string", "categories": ["a"]}]}
    same_but_new_category = {**a, "features": [a["features"][0], {**a["features"][1], "categories": ["a", "b"]}]}
    assert schema_differences(same_but_new_category, a) == []
    retyped = {**a, "features": [{"name": "x", "type": "string"}, a["features"][1]]}
    assert schema_differences(retyped, a) == ["feature types changed (x number -> string)"]
    swapped = {**a, "features": a["features"][::-1]}
    assert schema_differences(swapped, a)[0].startswith("feature order changed")
    assert "task 'classification' -> 'regression'" in schema_differences({**a, "task": "regression"}, a)


def test_scores_on_the_holdout_like_training_did():
    res = training.train(data.animals(), ANIMALS)
    model = OnnxModel.from_bytes(res.onnx, FeatureSchema.from_dict(res.schema))
    assert score_on_holdout(model, res.holdout, "accuracy") == pytest.approx(res.metrics["accuracy"], abs=1e-12)
    assert 0.5 < score_on_holdout(model, res.holdout, "roc_auc") <= 1.0
    assert len(holdout_records(res.holdout, ["x1"])) == res.holdout["rows"]
    with pytest.raises(KeyError):
        holdout_records(res.holdout, ["nope"])


def test_validate_step_imports_no_scikit_learn():
    code = ("import sys; import functions.pipeline.validate, functions.core.validation; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('sklearn', 'skl2onnx', 'scipy')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PATH": "", "POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"})
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_parity_failure_says_what_was_allowed():
    from functions.core.validation import decide

    spec = {"metric": "r2", "min_score": 0.0, "max_regression": 0.0}
    parity = {"passed": False, "max_abs_diff": 151.0, "tolerance": 1e-4, "target_scale": 801.9, "allowed": 0.0802}
    d = decide(spec, candidate_score=0.8, candidate_error=None, parity=parity, schema_diffs=[],
               production_version=None, production_score=None, production_error=None)
    assert not d.promote and "max difference 151.0, allowed 0.0001 x (target std 801.9 + |prediction|)" in d.reason


def _decide(**kw):
    from functions.core.validation import decide

    spec = {"metric": "accuracy", "min_score": 0.8, "max_regression": 0.0}
    base = dict(candidate_score=0.97, candidate_error=None, parity={"passed": True}, schema_diffs=[],
                production_version=None, production_score=None, production_error=None)
    return decide(spec, **{**base, **kw})


def test_the_other_sets_gate_after_the_new_holdout():
    """Production's holdout and the evaluation sets: no regression beyond max_regression on any,
    min_score on the trusted ones, with or without a production version; unscored sets gate nothing."""
    flipped = [{"set": "production v1's holdout", "candidate": 0.4, "production": 0.9}]
    d = _decide(production_version=1, production_score=0.95, comparisons=flipped)
    assert not d.promote and "0.4 is worse than production v1's 0.9 on production v1's holdout" in d.reason
    trusted = [{"set": "evaluation/iris/a.csv", "candidate": 0.7, "production": None}]
    d = _decide(comparisons=trusted)
    assert not d.promote
    assert "0.7 on the trusted evaluation set evaluation/iris/a.csv does not meet min_score" in d.reason
    fine = [{"set": "evaluation/iris/a.csv", "candidate": 0.9, "production": 0.88},
            {"set": "evaluation/iris/b.csv", "candidate": None, "production": None, "error": "lacks 'x'"}]
    d = _decide(production_version=1, production_score=0.95, comparisons=fine)
    assert d.promote and "; 0.9 vs 0.88 on evaluation/iris/a.csv" in d.reason
    assert d.checks["comparisons"][1]["error"] == "lacks 'x'"
