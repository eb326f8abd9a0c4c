"""infra/config.py: defaults, and every bad key fails with a message naming model and key."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import (
    CLASSIFIERS,
    PROBABILITY_PARAMS,
    REGRESSORS,
    ApiConfig,
    ConfigError,
    DriftConfig,
    estimator_params,
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
        # params, against the estimator's signature and scikit-learn's parameter constraints
        (with_model(estimator="sklearn.ensemble.RandomForestClassifier", params={"n_estimator": 100}),
         "iris", "params.n_estimator", "did you mean 'n_estimators'?"),
        (with_model(params={"max_iter": "500"}), "iris", "params.max_iter", "write it without quotes"),
        (with_model(params={"solver": "lbgfs"}), "iris", "params.solver", "did you mean 'lbfgs'?"),
        (with_model(estimator="sklearn.ensemble.BaggingClassifier",
                    params={"estimator": "sklearn.tree.DecisionTreeClassifier"}),
         "iris", "params.estimator", "which a JSON config cannot express"),
        (with_model(estimator="sklearn.ensemble.AdaBoostClassifier", params={"base_estimator": None}),
         "iris", "params.base_estimator", "did you mean 'estimator'?"),
        (with_model(params={"C": -1}), "iris", "params.C", "expected a number > 0"),
        (with_model(params={"max_iter": True}), "iris", "params.max_iter", "expected an integer >= 0"),
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


# --------------------------------------------------------------------------- estimator params

RF = "sklearn.ensemble.RandomForestClassifier"


def _error(estimator, params, task="classification") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(with_model(task=task, estimator=estimator, params=params))
    return info.value


def test_unknown_param_names_model_key_suggestion_and_valid_names():
    error = _error(RF, {"n_estimators": 10, "n_estimator": 100})
    assert (error.model, error.key) == ("iris", "params.n_estimator")
    assert str(error) == (
        "invalid shipyard config: model 'iris', key 'params.n_estimator': RandomForestClassifier has "
        "no parameter 'n_estimator' (did you mean 'n_estimators'?); expected one of: n_estimators, "
        "criterion, max_depth, min_samples_split, min_samples_leaf, min_weight_fraction_leaf, "
        "max_features, max_leaf_nodes, min_impurity_decrease, bootstrap, oob_score, n_jobs, "
        "random_state, verbose, warm_start, class_weight, ccp_alpha, max_samples, monotonic_cst"
    )


def test_param_with_a_wrong_type_says_what_it_takes():
    error = _error("sklearn.linear_model.LogisticRegression", {"max_iter": "500"})
    assert str(error) == (
        "invalid shipyard config: model 'iris', key 'params.max_iter': '500' is not a valid "
        "LogisticRegression 'max_iter' (a quoted number is a string: write it without quotes); "
        "expected an integer >= 0"
    )
    error = _error(RF, {"max_features": 2.5})
    assert error.key == "params.max_features"
    assert str(error).endswith(
        "2.5 is not a valid RandomForestClassifier 'max_features'; expected an integer >= 1, a number "
        "with a decimal point in (0, 1], one of 'log2', 'sqrt' or null"
    )
    # scikit-learn's RealNotInt: 1 (one feature) and 1.0 (all of them) differ; both are valid here
    assert load_config(with_model(estimator=RF, params={"max_features": 1})).models["iris"].params == {
        "max_features": 1}
    assert _error(RF, {"max_features": 1.5}).key == "params.max_features"
    assert "expected an integer >= 1" in str(_error(RF, {"n_estimators": 0}))


def test_params_that_need_a_python_object_are_refused_with_the_reason():
    error = _error("sklearn.ensemble.BaggingClassifier", {"estimator": "sklearn.tree.DecisionTreeClassifier"})
    assert (error.model, error.key) == ("iris", "params.estimator")
    assert str(error).endswith(
        "BaggingClassifier's 'estimator' takes an estimator object (with fit, predict), which a JSON "
        "config cannot express; leave it out (or null) to use the default, got "
        "'sklearn.tree.DecisionTreeClassifier'"
    )
    error = _error("sklearn.linear_model.RANSACRegressor", {"is_data_valid": "lambda X, y: True"}, "regression")
    assert "'is_data_valid' takes a callable, which a JSON config cannot express" in str(error)
    # null is the default of each of them, and is accepted
    load_config(with_model(estimator="sklearn.ensemble.BaggingClassifier", params={"estimator": None}))


def test_valid_params_load_unchanged():
    params = {"n_estimators": 50, "max_depth": None, "max_features": 0.5, "class_weight": "balanced",
              "random_state": 0, "n_jobs": -1, "verbose": False}
    assert load_config(with_model(estimator=RF, params=params)).models["iris"].params == params
    reg = {"loss": "squared_error", "learning_rate": 0.1, "max_iter": 100, "categorical_features": None}
    config = load_config(with_model(task="regression", estimator="sklearn.ensemble.HistGradientBoostingRegressor",
                                    params=reg))
    assert config.models["iris"].params == reg


def test_config_checks_params_without_importing_scikit_learn():
    code = (
        "import sys\n"
        "from infra.config import load_config, ConfigError\n"
        "load_config({'models': {'m': {'target': 'y', 'params': {'max_iter': 500, 'C': 0.5}}}})\n"
        "try:\n"
        "    load_config({'models': {'m': {'target': 'y', 'params': {'max_ite': 500}}}})\n"
        "except ConfigError as e:\n"
        "    assert \"did you mean 'max_iter'\" in str(e), e\n"
        "else:\n"
        "    raise SystemExit('not refused')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('sklearn', 'numpy', 'scipy')], 'imported'\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)


def test_catalogue_covers_exactly_the_supported_estimators():
    from infra.estimator_params import CATALOGUE

    catalogued = set(json.loads(CATALOGUE.read_text())["estimators"])
    assert catalogued == set(CLASSIFIERS | REGRESSORS), (
        "infra/estimator_params.json and infra/config.py's CLASSIFIERS/REGRESSORS differ: "
        "run `python -m infra.estimator_params`")


def test_catalogue_matches_the_installed_scikit_learn():
    """A scikit-learn upgrade that changes a signature or a parameter's constraints fails here."""
    pytest.importorskip("sklearn")
    import warnings

    from infra.estimator_params import CATALOGUE, REGENERATE, generate

    stored = json.loads(CATALOGUE.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated estimators still in the catalogue
        current = generate()
    stale = sorted(
        name for name in set(stored["estimators"]) | set(current["estimators"])
        if stored["estimators"].get(name) != current["estimators"].get(name)
    )
    assert not stale, (
        f"infra/estimator_params.json (scikit-learn {stored['scikit-learn']}) differs from the "
        f"installed scikit-learn {current['scikit-learn']} for {', '.join(stale)}; regenerate it with "
        f"`{REGENERATE}` and review the diff"
    )


# Values the check deliberately refuses although scikit-learn's own validation would take them:
# booleans where a number is expected (True would be 1), dicts as "array-like" (scikit-learn's
# check is loose: anything with a length), and lists as cv splits (a JSON config has no split
# indices to give).
_CANDIDATES = [None, True, False, 0, 1, 2, -1, 3, 100, 0.0, 0.5, 1.0, 1.5, -0.5, float("inf"),
               "x", "auto", "sqrt", "balanced", "lbfgs", "l2", "squared_error", [], [1, 2], {}, {"a": 1}]


def test_check_agrees_with_scikit_learns_own_parameter_validation():
    pytest.importorskip("sklearn")
    import importlib
    import warnings

    from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

    from infra.config import _accepts

    disagree = []
    for path in sorted(CLASSIFIERS | REGRESSORS):
        module, name = path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            defaults = cls().get_params(deep=False)
        for param, spec in estimator_params(path).items():
            values = list(_CANDIDATES)
            if isinstance(defaults[param], (type(None), bool, int, float, str)):
                values.append(defaults[param])
            for value in values:
                ours = any(_accepts(form, value) for form in spec["accepts"])
                try:
                    validate_parameter_constraints({param: cls._parameter_constraints[param]},
                                                   {param: value}, name)
                    theirs = True
                except InvalidParameterError:
                    theirs = False
                deliberate = theirs and not ours and (
                    isinstance(value, bool) or isinstance(value, dict) or (param == "cv" and isinstance(value, list))
                )
                if ours != theirs and not deliberate:
                    disagree.append(f"{name}.{param}={value!r}: ours {ours}, scikit-learn {theirs}")
    assert not disagree, "\n".join(disagree)


def test_every_default_value_is_accepted():
    """No estimator's own default (as JSON) is refused: the check never blocks a config that
    spells out the defaults."""
    pytest.importorskip("sklearn")
    import importlib
    import math
    import warnings

    for path in sorted(CLASSIFIERS | REGRESSORS):
        module, name = path.rsplit(".", 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            defaults = getattr(importlib.import_module(module), name)().get_params(deep=False)
        as_json = {k: v for k, v in defaults.items()
                   if v is None or isinstance(v, (bool, int, str))
                   or (isinstance(v, float) and not math.isnan(v))}
        task = "classification" if path in CLASSIFIERS else "regression"
        if path in PROBABILITY_PARAMS:  # the default gives no probabilities: the one rule beyond types
            key, gives, _, _ = PROBABILITY_PARAMS[path]
            as_json[key] = gives[0]
        assert load_config(with_model(task=task, estimator=path, params=as_json)).models["iris"].params == as_json


@pytest.mark.parametrize("estimator, params, key, fix", [
    ("sklearn.svm.SVC", {}, "params.probability", '{"probability": true}'),
    ("sklearn.svm.NuSVC", {"probability": False}, "params.probability", '{"probability": true}'),
    ("sklearn.linear_model.SGDClassifier", {}, "params.loss", '{"loss": "log_loss"}'),
])
def test_classifiers_must_predict_probabilities(estimator, params, key, fix):
    """Shipyard serves and gates on class probabilities: a setting without them fails synth."""
    error = _error(estimator, params)
    assert (error.model, error.key) == ("iris", key)
    assert "does not predict class probabilities" in str(error) and fix in str(error)


def test_classifiers_with_probabilities_load():
    load_config(with_model(estimator="sklearn.svm.SVC", params={"probability": True}))
    load_config(with_model(estimator="sklearn.linear_model.SGDClassifier", params={"loss": "modified_huber"}))


@pytest.mark.parametrize("estimator", ["sklearn.svm.LinearSVC", "sklearn.linear_model.RidgeClassifier",
                                       "sklearn.gaussian_process.GaussianProcessClassifier",
                                       "sklearn.neighbors.RadiusNeighborsClassifier"])
def test_estimators_that_failed_on_real_data_are_not_offered(estimator):
    with pytest.raises(ConfigError, match="estimator"):
        load_config(with_model(estimator=estimator))


def test_compute_defaults_to_lambda_with_3008_mb_and_the_dataset_limit_it_allows():
    from functions.core.layout import max_dataset_bytes

    compute = load_config(BASE).models["iris"].compute
    assert (compute.type, compute.memory) == ("lambda", 3008)
    assert compute.max_dataset_bytes == max_dataset_bytes(3008) == int(2752 * 2**20 / 5)  # 550 MiB; was 100 MiB
    big = load_config(with_model(compute={"memory": 10240})).models["iris"].compute
    assert big.memory == 10240 and big.max_dataset_bytes > 3 * compute.max_dataset_bytes


@pytest.mark.parametrize("compute, key, words", [
    ({"memory": 512}, "compute.memory", "from 1024 to 10240"),
    ({"memory": 20000}, "compute.memory", "from 1024 to 10240 (Lambda's limit), got 20000"),
    ({"memory": "3008"}, "compute.memory", "expected an integer number of MB"),
    ({"type": "sagemaker", "memory": 4096}, "compute.memory", "compute.type 'lambda' only"),
    ({"instance_type": "ml.m5.xlarge"}, "compute.instance_type", "compute.type 'sagemaker' only"),
    ({"type": "fargate"}, "compute.type", "expected one of: lambda, sagemaker"),
    ({"memroy": 4096}, "compute.memroy", "memory"),
])
def test_bad_compute_names_the_key(compute, key, words):
    with pytest.raises(ConfigError) as info:
        load_config(with_model(compute=compute))
    assert (info.value.model, info.value.key) == ("iris", key) and words in str(info.value)


def test_the_train_function_takes_the_largest_memory_and_each_run_its_models_limit():
    from functions.pipeline.execution import spec_document
    from infra.pipeline import train_memory

    config = load_config({"models": {"small": {"target": "y"}, "big": {"target": "y", "compute": {"memory": 8192}}}})
    assert train_memory(config.models) == 8192
    assert train_memory({}) == 3008
    small, big = (spec_document(config.models[m]) for m in ("small", "big"))
    assert small["compute"] == {"type": "lambda", "memory": 3008}
    assert small["max_dataset_bytes"] < big["max_dataset_bytes"] == config.models["big"].compute.max_dataset_bytes


@pytest.mark.parametrize("task, estimator", [("classification", "sklearn.neighbors.KNeighborsClassifier"),
                                             ("regression", "sklearn.neighbors.KNeighborsRegressor")])
def test_params_skl2onnx_does_not_convert_faithfully_fail_synth_with_the_reason(task, estimator):
    error = _error(estimator, {"weights": "distance"}, task)
    assert (error.model, error.key) == ("iris", "params.weights")
    assert "does not convert to ONNX faithfully" in str(error) and "use weights 'uniform'" in str(error)
    load_config(with_model(task=task, estimator=estimator, params={"weights": "uniform"}))
