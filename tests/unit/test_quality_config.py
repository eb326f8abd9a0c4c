"""The ``quality`` block of a model (infra/config.py): defaults, durations, the retrain modes, and a bad
value failing the load with the model and the key named."""
import pytest

from infra.config import ConfigError, QualityConfig, load_config


def model(**quality):
    return {"models": {"animals": {"target": "species", "min_score": 0.7, "quality": quality}}}


def test_no_block_no_quality():
    spec = load_config({"models": {"animals": {"target": "species"}}}).models["animals"]
    assert spec.quality is None and spec.quality_min_score is None


def test_defaults():
    spec = load_config(model()).models["animals"]
    assert spec.quality == QualityConfig(schedule="rate(1 day)", min_labels=200, window=7 * 86400, min_score=None,
                                         retrain=None)
    assert spec.quality_min_score == 0.7  # the model's own min_score


def test_values():
    q = load_config(model(schedule="rate(1 hour)", min_labels=5, window="36h", min_score=0.9,
                          retrain="dataset+labels")).models["animals"]
    assert (q.quality.schedule, q.quality.min_labels, q.quality.window, q.quality.retrain) == (
        "rate(1 hour)", 5, 36 * 3600, "dataset+labels")
    assert q.quality_min_score == 0.9
    assert load_config(model(window=600, retrain=False)).models["animals"].quality.window == 600
    assert load_config(model(retrain="dataset")).models["animals"].quality.retrain == "dataset"


@pytest.mark.parametrize("quality, key", [
    ({"schedule": "every day"}, "quality.schedule"),
    ({"min_labels": 0}, "quality.min_labels"),
    ({"min_labels": 2.5}, "quality.min_labels"),
    ({"window": "7 days"}, "quality.window"),
    ({"window": 0}, "quality.window"),
    ({"min_score": "high"}, "quality.min_score"),
    ({"retrain": True}, "quality.retrain"),
    ({"retrain": "labels"}, "quality.retrain"),
    ({"windw": "7d"}, "quality.windw"),
])
def test_bad_values_name_model_and_key(quality, key):
    with pytest.raises(ConfigError) as err:
        load_config(model(**quality))
    assert err.value.model == "animals" and err.value.key == key
    assert f"model 'animals', key '{key}'" in str(err.value)


def test_not_an_object():
    with pytest.raises(ConfigError, match="key 'quality'"):
        load_config({"models": {"animals": {"target": "species", "quality": "daily"}}})


def test_synth_warns_when_the_quality_alarm_can_never_fire():
    """Found by hand: a penguins model with a quality block and no min_score (default 0) reported
    "quality ok: accuracy 0.2"; its alarm (accuracy < 0) could never fire. Synth now says so."""
    from infra.quality import floor_warning

    warning = floor_warning("penguins", "accuracy", 0.0)
    assert "penguins" in warning and "cannot fire" in warning and "quality.min_score" in warning
    assert floor_warning("penguins", "accuracy", 0.9) is None
    assert floor_warning("prices", "r2", 0.0) is None  # r2 can be negative: 0 is a real floor
    assert floor_warning("prices", "rmse", 0.0) is None  # the error metrics' case is the ceiling warning
