"""infra/config.py: defaults, and every bad key fails with a message naming model and key."""
from __future__ import annotations

import copy

import pytest

from infra.config import (
    CLASSIFIERS,
    REGRESSORS,
    ApiConfig,
    ConfigError,
    DriftConfig,
    load_config,
    validate_schedule,
)

BASE = {"models": {"iris": {"target": "species"}}}


def with_model(**spec) -> dict:
    return {"models": {"iris": {"target": "species", **spec}}}


def test_defaults_fill_every_key_but_target():
    config = load_config(BASE)
    assert config.stack_name == "Shipyard"
    assert config.alarm_email is None
    assert config.architecture == "arm64"
    assert config.api == ApiConfig(auth="iam", rate_limit=100.0, burst_limit=200, cloudwatch_role=True)
    iris = config.models["iris"]
    assert (iris.task, iris.estimator, iris.metric) == (
        "classification", "sklearn.linear_model.LogisticRegression", "accuracy")
    assert (iris.params, iris.min_score, iris.max_regression, iris.holdout) == ({}, 0.0, 0.0, 0.2)
    assert iris.drift == DriftConfig(schedule="rate(1 hour)", threshold=0.1, share=0.5, retrain=False, window=500)


def test_regression_defaults():
    spec = load_config(with_model(task="regression")).models["iris"]
    assert (spec.estimator, spec.metric) == ("sklearn.linear_model.Ridge", "r2")


def test_empty_config_is_valid_and_auth_is_never_none_by_default():
    config = load_config(None)
    assert config.models == {} and config.api.auth == "iam"
    assert load_config({"api": {}}).api.auth == "iam"
    assert load_config({"api": {"auth": "none"}}).api.auth == "none"  # only when set explicitly


def test_cdk_json_example_loads(default_config):
    config = load_config(default_config)
    iris = config.models["iris"]
    assert iris.params == {"max_iter": 500} and iris.min_score == 0.8 and iris.drift.retrain is True
    assert config.api.auth == "iam" and config.model_names == ["iris"]


def test_input_is_not_mutated():
    raw = with_model(drift={"window": 10})
    before = copy.deepcopy(raw)
    load_config(raw)
    assert raw == before


@pytest.mark.parametrize(
    "raw, model, key, says",
    [
        # unknown keys (typos), at every level
        ({"modles": {}}, None, "modles", "did you mean 'models'"),
        ({"api": {"auht": "iam"}}, None, "api.auht", "expected one of: auth"),
        (with_model(metirc="accuracy"), "iris", "metirc", "did you mean 'metric'"),
        (with_model(drift={"treshold": 0.2}), "iris", "drift.treshold", "did you mean 'threshold'"),
        # target
        ({"models": {"iris": {}}}, "iris", "target", "missing"),
        (with_model(target=""), "iris", "target", "non-empty"),
        # task / estimator
        (with_model(task="clustering"), "iris", "task", "classification, regression"),
        (with_model(estimator="xgboost.XGBClassifier"), "iris", "estimator", "sklearn.<module>.<Class>"),
        (with_model(estimator="sklearn.linear_model.LogisticRegresion"), "iris", "estimator",
         "did you mean 'sklearn.linear_model.LogisticRegression'"),
        (with_model(estimator="sklearn.linear_model.Ridge"), "iris", "estimator", "is a regression estimator"),
        (with_model(estimator="sklearn.ensemble.VotingClassifier"), "iris", "estimator", "can convert"),
        (with_model(task="regression", estimator="sklearn.svm.SVC"), "iris", "estimator",
         "is a classification estimator"),
        (with_model(params=[1]), "iris", "params", "expected an object"),
        # metric
        (with_model(metric="rmse"), "iris", "metric", "is a regression metric"),
        (with_model(task="regression", metric="f1"), "iris", "metric", "r2, rmse, mae"),
        (with_model(metric="precision"), "iris", "metric", "accuracy, f1, roc_auc"),
        # numbers
        (with_model(holdout=0), "iris", "holdout", "> 0"),
        (with_model(holdout=1.0), "iris", "holdout", "< 1"),
        (with_model(holdout="0.2"), "iris", "holdout", "finite number"),
        (with_model(min_score=True), "iris", "min_score", "finite number"),
        (with_model(min_score=float("nan")), "iris", "min_score", "finite number"),
        (with_model(max_regression=-0.1), "iris", "max_regression", ">= 0"),
        # drift
        (with_model(drift={"schedule": "rate(1 hours)"}), "iris", "drift.schedule", "rate(1 hour)"),
        (with_model(drift={"schedule": "rate(5 minute)"}), "iris", "drift.schedule", "rate(5 minutes)"),
        (with_model(drift={"schedule": "rate(0 minutes)"}), "iris", "drift.schedule", "positive"),
        (with_model(drift={"schedule": "rate(2 weeks)"}), "iris", "drift.schedule", "minute(s), hour(s) or day(s)"),
        (with_model(drift={"schedule": "cron(0 * * * *)"}), "iris", "drift.schedule", "expected 6"),
        (with_model(drift={"schedule": "cron(0 * * * * *)"}), "iris", "drift.schedule", "must be '?'"),
        (with_model(drift={"schedule": "every hour"}), "iris", "drift.schedule", "not a schedule expression"),
        (with_model(drift={"threshold": 0}), "iris", "drift.threshold", "> 0"),
        (with_model(drift={"share": 1.5}), "iris", "drift.share", "<= 1"),
        (with_model(drift={"retrain": "yes"}), "iris", "drift.retrain", "true or false"),
        (with_model(drift={"window": 0}), "iris", "drift.window", "integer >= 1"),
        (with_model(drift="hourly"), "iris", "drift", "expected an object"),
        # model names
        ({"models": {"Iris": {"target": "y"}}}, "Iris", "models", "not safe for S3 keys and ARNs"),
        ({"models": {"iris#1": {"target": "y"}}}, "iris#1", "models", "not safe"),
        ({"models": {"x" * 33: {"target": "y"}}}, "x" * 33, "models", "1-32 characters"),
        ({"models": {"iris-": {"target": "y"}}}, "iris-", "models", "ending with a letter or digit"),
        # top level
        ({"api": {"auth": "cognito"}}, None, "api.auth", "iam, api_key, none"),
        ({"api": {"auth": "IAM"}}, None, "api.auth", "iam, api_key, none"),
        ({"api": {"rate_limit": 0}}, None, "api.rate_limit", "> 0"),
        ({"api": {"burst_limit": 1.5}}, None, "api.burst_limit", "integer"),
        ({"architecture": "arm"}, None, "architecture", "arm64, x86_64"),
        ({"stack_name": "my stack"}, None, "stack_name", "CloudFormation stack name"),
        ({"alarm_email": "not-an-address"}, None, "alarm_email", "e-mail address"),
        ({"models": []}, None, "models", "expected an object"),
    ],
)
def test_bad_config_names_model_and_key(raw, model, key, says):
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    error = info.value
    assert (error.model, error.key) == (model, key)
    message = str(error)
    assert f"key '{key}'" in message
    if model is not None:
        assert f"model '{model}'" in message
    assert says in message


@pytest.mark.parametrize(
    "expression",
    ["rate(1 minute)", "rate(5 minutes)", "rate(1 hour)", "rate(12 hours)", "rate(1 day)", "rate(7 days)",
     "cron(0 * * * ? *)", "cron(15 6 ? * MON-FRI *)", "cron(0/10 * * * ? *)", "cron(0 12 L * ? 2030)"],
)
def test_valid_schedules(expression):
    assert validate_schedule(expression) is None


def test_good_model_names_and_estimators_load():
    raw = {"models": {"house-prices": {"target": "price", "task": "regression",
                                        "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
                                        "metric": "rmse"},
                      "churn_v2": {"target": "churned", "estimator": "sklearn.ensemble.RandomForestClassifier",
                                   "metric": "roc_auc", "params": {"n_estimators": 50}}}}
    config = load_config(raw)
    assert config.model_names == ["house-prices", "churn_v2"]


def test_estimator_catalogues_are_disjoint_dotted_paths():
    assert not CLASSIFIERS & REGRESSORS
    assert all(name.startswith("sklearn.") and name.count(".") == 2 for name in CLASSIFIERS | REGRESSORS)
