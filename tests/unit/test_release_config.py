"""`models.<name>.release` in cdk.json: defaults, what the execution input carries, and the errors."""
import pytest

from functions.pipeline.execution import spec_document
from infra.config import ConfigError, ReleaseConfig, load_config


def release_of(release, **model):
    return load_config({"models": {"m": {"target": "y", **model, "release": release}}}).models["m"].release


def test_defaults_promote_at_once_without_approval():
    r = load_config({"models": {"m": {"target": "y"}}}).models["m"].release
    assert r == ReleaseConfig() and not r.is_progressive
    assert (r.approval, r.mode, r.percent, r.bake, r.approval_timeout) == ("auto", "all_at_once", 10.0, 1800, 86400)


def test_durations_and_what_the_execution_input_carries():
    r = release_of({"approval": "manual", "approval_timeout": "2h", "mode": "canary", "percent": 25, "bake": "45m"})
    assert r.is_progressive and (r.approval_timeout, r.bake, r.percent) == (7200, 2700, 25.0)
    spec = load_config({"models": {"m": {"target": "y", "release": {"mode": "canary"}}}}).models["m"]
    assert spec_document(spec)["release"] == spec.release.document()
    assert spec_document(spec)["release"]["mode"] == "canary"


@pytest.mark.parametrize("release, model, key, message", [
    ({"mode": "canry"}, {}, "release.mode", "did you mean 'canary'"),
    ({"approval": "yes"}, {}, "release.approval", "expected one of: auto, manual"),
    ({"percent": 10}, {}, "release.percent", "applies to release.mode 'canary' only"),
    ({"mode": "canary", "percent": 100}, {}, "release.percent", "expected a number > 0 and < 100"),
    ({"mode": "canary", "bake": "30s"}, {}, "release.bake", "from 1 minute"),
    ({"mode": "canary", "bake": "8d"}, {}, "release.bake", "to 7 days"),
    ({"bake": "1h"}, {}, "release.bake", "promotes at once"),
    ({"approval": "manual", "approval_timeout": "31d"}, {}, "release.approval_timeout", "at most 30 days"),
    ({"approval_timeout": "1h"}, {}, "release.approval_timeout", "expected release.approval 'manual'"),
    ({"mode": "canary", "agreement": 0.9}, {}, "release.agreement", "applies to release.mode 'shadow' only"),
    ({"mode": "shadow", "agreement": 0}, {}, "release.agreement", "expected a number > 0 and <= 1"),
    ({"mode": "shadow", "tolerance": 0.5}, {}, "release.tolerance", "regression models only"),
    ({"mode": "shadow", "agreement": 0.9}, {"task": "regression"}, "release.tolerance", "missing"),
    ({"mode": "canary", "max_errors": -1}, {}, "release.max_errors", "integer >= 0"),
    ({"wait": 1}, {}, "release.wait", ""),
])
def test_bad_release_config_names_the_key(release, model, key, message):
    with pytest.raises(ConfigError) as err:
        release_of(release, **model)
    text = str(err.value)
    assert "model 'm'" in text and key in text and message in text


def test_a_regression_shadow_rule_with_tolerance():
    r = release_of({"mode": "shadow", "agreement": 0.95, "tolerance": 2.5, "min_samples": 50}, task="regression")
    assert (r.agreement, r.tolerance, r.min_samples) == (0.95, 2.5, 50)
