"""Typed Shipyard configuration: ``cdk.json`` → ``context.shipyard`` → :class:`ShipyardConfig`.

Every key but a model's ``target`` has a default (documented in ``docs/configuration.md``).
A bad configuration raises :class:`ConfigError`, whose message names the model (when the key
belongs to one), the key, what was found and what was expected — ``cdk synth`` prints it as is.

This module does not import scikit-learn (the CDK app must not need the training stack): the
estimator is checked against a catalogue of the scikit-learn estimators that skl2onnx converts
and that need no nested estimator object in ``params``, and its ``params`` against
``estimator_params.json`` — each estimator's constructor parameters and the JSON values
scikit-learn's own parameter validation accepts for them, generated from the installed
scikit-learn by ``python -m infra.estimator_params`` (a test fails when they drift apart).
"""
from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functions.core.layout import (
    DEFAULT_DRIFT_SHARE,
    DEFAULT_DRIFT_THRESHOLD,
    DEFAULT_DRIFT_WINDOW,
    DEFAULT_TRAIN_MEMORY_MB,
    MAX_TRAIN_MEMORY_MB,
    MIN_TRAIN_MEMORY_MB,
    TRAIN_IMPORTS_MB,
    TRAIN_PEAK_PER_CSV_BYTE,
    max_dataset_bytes,
)
from infra.sagemaker_catalog import (
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_MAX_RUNTIME_SECONDS,
    DEFAULT_VOLUME_GB,
    INSTANCE_MEMORY_GIB,
    MAX_HYPERPARAMETER_CHARS,
    MAX_RUNTIME_SECONDS,
    MAX_VOLUME_GB,
    MIN_VOLUME_GB,
    instance_max_dataset_bytes,
    spec_hyperparameter_chars,
)

__all__ = [
    "ARCHITECTURES",
    "AUTH_MODES",
    "ApiConfig",
    "ComputeConfig",
    "ConfigError",
    "DriftConfig",
    "ModelSpec",
    "QualityConfig",
    "ReleaseConfig",
    "ShipyardConfig",
    "UploadsConfig",
    "CLASSIFIERS",
    "REGRESSORS",
    "METRICS",
    "estimator_params",
    "load_config",
    "rate_seconds",
    "validate_schedule",
]


class ConfigError(ValueError):
    """A bad ``context.shipyard``. ``model`` is ``None`` for keys outside ``models``."""

    def __init__(self, key: str, problem: str, *, model: str | None = None):
        self.model = model
        self.key = key
        self.problem = problem
        where = f"model '{model}', key '{key}'" if model is not None else f"key '{key}'"
        super().__init__(f"invalid shipyard config: {where}: {problem}")


# --------------------------------------------------------------------------- catalogues

TASKS = ("classification", "regression")

METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1", "roc_auc"),
    "regression": ("r2", "rmse", "mae"),
}

DEFAULT_ESTIMATOR = {
    "classification": "sklearn.linear_model.LogisticRegression",
    "regression": "sklearn.linear_model.Ridge",
}
DEFAULT_METRIC = {"classification": "accuracy", "regression": "r2"}

# scikit-learn estimators that skl2onnx 1.20 converts (checked against
# skl2onnx._supported_operators), minus meta-estimators that need an estimator object in
# their params (Stacking*, Voting*, OneVsRest/OneVsOne, MultiOutput*, TunedThreshold*) and
# multi-target-only regressors (MultiTask*), which a JSON config cannot express or use, and minus
# what failed on real data (python -m bench.parity; docs/pipeline.md, "Supported estimators"):
# classifiers that never predict probabilities (LinearSVC, Perceptron, PassiveAggressive,
# RidgeClassifier[CV]: Shipyard serves and gates on probabilities), Gaussian processes (skl2onnx
# converts binary classifiers only, and its regressor's output is not the model format's) and
# radius neighbours and categorical naive Bayes (ONNX fails on a row with no neighbour in the
# radius, or a value the model has not seen).
CLASSIFIERS = frozenset(
    "sklearn." + name
    for name in """
    calibration.CalibratedClassifierCV
    discriminant_analysis.LinearDiscriminantAnalysis
    discriminant_analysis.QuadraticDiscriminantAnalysis
    ensemble.AdaBoostClassifier ensemble.BaggingClassifier ensemble.ExtraTreesClassifier
    ensemble.GradientBoostingClassifier ensemble.HistGradientBoostingClassifier
    ensemble.RandomForestClassifier
    linear_model.LogisticRegression linear_model.LogisticRegressionCV
    linear_model.SGDClassifier
    naive_bayes.BernoulliNB naive_bayes.ComplementNB
    naive_bayes.GaussianNB naive_bayes.MultinomialNB
    neighbors.KNeighborsClassifier
    neural_network.MLPClassifier
    svm.NuSVC svm.SVC
    tree.DecisionTreeClassifier tree.ExtraTreeClassifier
    """.split()
)
REGRESSORS = frozenset(
    "sklearn." + name
    for name in """
    cross_decomposition.PLSRegression
    ensemble.AdaBoostRegressor ensemble.BaggingRegressor ensemble.ExtraTreesRegressor
    ensemble.GradientBoostingRegressor ensemble.HistGradientBoostingRegressor
    ensemble.RandomForestRegressor
    linear_model.ARDRegression linear_model.BayesianRidge linear_model.ElasticNet
    linear_model.ElasticNetCV linear_model.GammaRegressor linear_model.HuberRegressor
    linear_model.Lars linear_model.LarsCV linear_model.Lasso linear_model.LassoCV
    linear_model.LassoLars linear_model.LassoLarsCV linear_model.LassoLarsIC
    linear_model.LinearRegression linear_model.OrthogonalMatchingPursuit
    linear_model.OrthogonalMatchingPursuitCV linear_model.PassiveAggressiveRegressor
    linear_model.PoissonRegressor linear_model.QuantileRegressor linear_model.RANSACRegressor
    linear_model.Ridge linear_model.RidgeCV linear_model.SGDRegressor
    linear_model.TheilSenRegressor linear_model.TweedieRegressor
    neighbors.KNeighborsRegressor
    neural_network.MLPRegressor
    svm.LinearSVR svm.NuSVR svm.SVR
    tree.DecisionTreeRegressor tree.ExtraTreeRegressor
    """.split()
)
ESTIMATORS = {"classification": CLASSIFIERS, "regression": REGRESSORS}
_ESTIMATOR_SHAPE = re.compile(r"^sklearn(\.[a-z_][a-z0-9_]*)+\.[A-Z][A-Za-z0-9]*$")

# Model names end up in S3 prefixes, DynamoDB keys (``MODEL#<name>``), CloudWatch dimensions,
# resource names and ARNs: lower-case letters, digits, '-' and '_', starting with a letter.
MODEL_NAME = re.compile(r"^[a-z](?:[a-z0-9_-]{0,30}[a-z0-9])?$")
# CloudFormation stack names.
STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

AUTH_MODES = ("iam", "api_key", "none")
ARCHITECTURES = ("arm64", "x86_64")

_RATE = re.compile(r"^rate\((\d+) ([a-z]+)\)$")
_RATE_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_CRON = re.compile(r"^cron\((.*)\)$")
_CRON_FIELD = [
    ("minutes", re.compile(r"^[0-9,\-*/]+$")),
    ("hours", re.compile(r"^[0-9,\-*/]+$")),
    ("day-of-month", re.compile(r"^[0-9,\-*/?LW]+$")),
    ("month", re.compile(r"^([0-9,\-*/]|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)+$", re.I)),
    ("day-of-week", re.compile(r"^([0-9,\-*/?L#]|SUN|MON|TUE|WED|THU|FRI|SAT)+$", re.I)),
    ("year", re.compile(r"^[0-9,\-*/]+$")),
]


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class DriftConfig:
    """Scheduled drift check of one model's captured inputs against its training baseline."""

    schedule: str = "rate(1 hour)"
    """EventBridge schedule expression: ``rate(N unit)`` or ``cron(6 fields)``."""
    threshold: float = DEFAULT_DRIFT_THRESHOLD
    """Per-feature drift score above which a feature counts as drifted."""
    share: float = DEFAULT_DRIFT_SHARE
    """Share of features (0..1] that must drift for the model to count as drifted."""
    retrain: bool = False
    """Start a pipeline run on the latest dataset when drift is detected."""
    window: int = DEFAULT_DRIFT_WINDOW
    """Most recent captured records compared with the baseline."""


QUALITY_RETRAIN_MODES = ("dataset", "dataset+labels")


@dataclass(frozen=True)
class QualityConfig:
    """Scheduled model quality check: captured predictions joined with ground-truth labels
    (``labels/<model>/*.csv`` of the data bucket) by inference id (docs/quality.md)."""

    schedule: str = "rate(1 day)"
    """EventBridge schedule expression: ``rate(N unit)`` or ``cron(6 fields)``."""
    min_labels: int = 200
    """Labelled predictions a version needs before its metric is published (and can alarm)."""
    window: int = 7 * 86400
    """Seconds back from the check that captures (and labels of them) are joined (``"7d"``)."""
    min_score: float | None = None
    """The live metric's floor (a ceiling for rmse/mae); ``None``: the model's own ``min_score``."""
    retrain: str | None = None
    """``None`` (false), ``"dataset"`` (the latest dataset) or ``"dataset+labels"`` (it plus the
    labelled traffic) when quality degrades."""


@dataclass(frozen=True)
class ComputeConfig:
    """Where a model trains. ``lambda`` (default): a Train function of ``memory`` MB (one per size,
    infra/pipeline.py). ``sagemaker``: a SageMaker training job on ``instance_type`` with a
    ``volume_gb`` disk, stopped after ``max_runtime`` seconds (infra/trainjob.py). Either way the
    largest dataset it accepts follows from the memory (``functions.core.layout.max_dataset_bytes``:
    550 MiB at the default 3008 MB, about 3 GiB on the default ml.m5.xlarge)."""

    type: str = "lambda"
    memory: int = DEFAULT_TRAIN_MEMORY_MB
    instance_type: str = DEFAULT_INSTANCE_TYPE
    volume_gb: int = DEFAULT_VOLUME_GB
    max_runtime: int = DEFAULT_MAX_RUNTIME_SECONDS

    @property
    def is_sagemaker(self) -> bool:
        return self.type == "sagemaker"

    @property
    def max_dataset_bytes(self) -> int:
        if self.is_sagemaker:
            return instance_max_dataset_bytes(self.instance_type)
        return max_dataset_bytes(self.memory)

    def document(self) -> dict:
        """What the execution input carries (``spec.compute``): the state machine routes on it and
        the SageMaker state takes the instance, volume and runtime from it."""
        if self.is_sagemaker:
            return {"type": self.type, "instance_type": self.instance_type, "volume_gb": self.volume_gb,
                    "max_runtime": self.max_runtime}
        return {"type": self.type, "memory": self.memory}


@dataclass(frozen=True)
class ReleaseConfig:
    """How a candidate that passed the gate reaches production (docs/release.md).

    ``approval``: ``auto`` or ``manual`` (the run waits on a task token until someone approves or
    rejects, at most ``approval_timeout`` seconds, then it is rejected). ``mode``: ``all_at_once``,
    ``canary`` (``percent`` of the traffic for ``bake`` seconds, then all; rolled back when one of its
    alarms fires: more than ``max_errors`` failed predictions in a minute, or p99 latency above
    ``max_latency_ms`` for 3 minutes) or ``shadow`` (the candidate scores a copy of the traffic for
    ``bake`` seconds; then the rule ``agreement`` (at least ``min_samples`` shadowed predictions, of
    which this share agree with production; a regression prediction agrees within ``tolerance``)
    promotes or rejects it, or, without a rule, a person decides as with ``approval: manual``)."""

    approval: str = "auto"
    approval_timeout: int = 86400
    mode: str = "all_at_once"
    percent: float = 10.0
    bake: int = 1800
    agreement: float | None = None
    tolerance: float = 0.0
    min_samples: int = 100
    max_errors: int = 0
    max_latency_ms: float = 1000.0

    @property
    def is_progressive(self) -> bool:
        """Anything but an automatic all-at-once promotion (the pipeline has more to do after the gate)."""
        return self.approval == "manual" or self.mode != "all_at_once"

    def document(self) -> dict:
        """What the execution input carries (``spec.release``): the state machine's choices and waits
        read it (``approval_timeout`` is the approval task's ``TimeoutSecondsPath``)."""
        return {"approval": self.approval, "approval_timeout": self.approval_timeout, "mode": self.mode,
                "percent": self.percent, "bake": self.bake, "agreement": self.agreement,
                "tolerance": self.tolerance, "min_samples": self.min_samples, "max_errors": self.max_errors,
                "max_latency_ms": self.max_latency_ms}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    target: str
    task: str = "classification"
    estimator: str = DEFAULT_ESTIMATOR["classification"]
    params: Mapping[str, Any] = field(default_factory=dict)
    metric: str = DEFAULT_METRIC["classification"]
    min_score: float = 0.0
    max_regression: float = 0.0
    holdout: float = 0.2
    drift: DriftConfig = field(default_factory=DriftConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    quality: QualityConfig | None = None
    """``None``: no quality check for this model (only models with a ``quality`` block get one)."""

    @property
    def is_classifier(self) -> bool:
        return self.task == "classification"

    @property
    def quality_min_score(self) -> float | None:
        """The quality floor (ceiling for rmse/mae): ``quality.min_score``, else the model's ``min_score``."""
        if self.quality is None:
            return None
        return self.quality.min_score if self.quality.min_score is not None else self.min_score


@dataclass(frozen=True)
class ApiConfig:
    auth: str = "iam"
    """``iam`` (SigV4), ``api_key`` (usage plan with throttling) or ``none`` (local/demo)."""
    rate_limit: float = 100.0
    """Stage (and usage plan) steady-state requests per second."""
    burst_limit: int = 200
    """Stage (and usage plan) burst capacity."""
    cloudwatch_role: bool = True
    """Create the regional API Gateway account CloudWatch Logs role (needed for API logs)."""


@dataclass(frozen=True)
class ConcurrencyConfig:
    """Reserved concurrency (``null``: none). Reserving takes from the account's pool: AWS keeps
    100 unreserved, so with the default limit of 1000 a region can reserve at most 900 in total,
    and ``cdk deploy`` fails if the reservations would leave less (docs/configuration.md)."""
    inference: int | None = 50
    """Reserved for the inference function: serving keeps this many concurrent executions, and
    is capped at it."""
    training: int | None = 5
    """Reserved for (and the cap of) each Train function: concurrent training runs per memory size."""


@dataclass(frozen=True)
class UploadsConfig:
    """Reporting of uploads under ``datasets/`` and ``batch/`` that start no run (infra/uploads.py)."""

    alarm_unowned: bool = True
    """Alarm (to the alarm topic) on the first upload under a ``datasets/<folder>/`` or
    ``batch/<folder>/`` no model owns: a typo in the folder silently loses a training or batch scoring
    run. The warning and the metric are always on."""


@dataclass(frozen=True)
class ShipyardConfig:
    stack_name: str = "Shipyard"
    alarm_email: str | None = None
    architecture: str = "arm64"
    api: ApiConfig = field(default_factory=ApiConfig)
    concurrency: ConcurrencyConfig = field(default_factory=ConcurrencyConfig)
    uploads: UploadsConfig = field(default_factory=UploadsConfig)
    models: Mapping[str, ModelSpec] = field(default_factory=dict)

    @property
    def model_names(self) -> list[str]:
        return list(self.models)


# --------------------------------------------------------------------------- helpers

TOP_KEYS = ("stack_name", "alarm_email", "architecture", "api", "concurrency", "uploads", "models")
UPLOADS_KEYS = ("alarm_unowned",)
CONCURRENCY_KEYS = ("inference", "training")
API_KEYS = ("auth", "rate_limit", "burst_limit", "cloudwatch_role")
MODEL_KEYS = (
    "target", "task", "estimator", "params", "metric", "min_score", "max_regression",
    "holdout", "drift", "compute", "release", "quality",
)
RELEASE_KEYS = ("approval", "approval_timeout", "mode", "percent", "bake", "agreement", "tolerance",
                "min_samples", "max_errors", "max_latency_ms")
APPROVALS = ("auto", "manual")
RELEASE_MODES = ("all_at_once", "canary", "shadow")
MAX_APPROVAL_TIMEOUT_SECONDS = 30 * 86400  # a month; a Standard execution may run a year
MIN_BAKE_SECONDS = 60  # the per-version alarms' period: a shorter bake could not see one datapoint
MAX_BAKE_SECONDS = 7 * 86400
DRIFT_KEYS = ("schedule", "threshold", "share", "retrain", "window")
QUALITY_KEYS = ("schedule", "min_labels", "window", "min_score", "retrain")
COMPUTE_KEYS = ("type", "memory", "instance_type", "volume_gb", "max_runtime")
COMPUTE_TYPES = ("lambda", "sagemaker")
SAGEMAKER_KEYS = ("instance_type", "volume_gb", "max_runtime")
_DURATION = re.compile(r"^([1-9][0-9]*)(s|m|h|d)$")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(raw: Mapping, allowed, prefix: str, model: str | None) -> None:
    for key in raw:
        if not isinstance(key, str) or key not in allowed:
            raise ConfigError(
                f"{prefix}{key}",
                f"unknown key{_suggest(str(key), allowed)}; expected one of: {', '.join(allowed)}",
                model=model,
            )


def _mapping(value, key: str, model: str | None) -> Mapping:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected an object, got {type(value).__name__} {value!r}", model=model)
    return value


def _number(value, key: str, model: str | None, *, low=None, high=None, low_open=False,
            high_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, f"expected a finite number, got {value!r}", model=model)
    bad = (
        (low is not None and (value <= low if low_open else value < low))
        or (high is not None and (value >= high if high_open else value > high))
    )
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise ConfigError(key, f"expected a number {' and '.join(x for x in (lo, hi) if x)}, got {value!r}",
                          model=model)
    return float(value)


def _integer(value, key: str, model: str | None, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(key, f"expected an integer >= {low}, got {value!r}", model=model)
    return value


def _bool(value, key: str, model: str | None) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}", model=model)
    return value


def _choice(value, options, key: str, model: str | None, what: str = "") -> str:
    if not isinstance(value, str) or value not in options:
        hint = _suggest(value, options) if isinstance(value, str) else ""
        raise ConfigError(
            key, f"{value!r} is not a valid {what or key}{hint}; expected one of: {', '.join(options)}",
            model=model,
        )
    return value


def _rate_unit(unit: str) -> str:
    return unit[:-1] if unit.endswith("s") else unit


def rate_seconds(expression) -> int | None:
    """The interval of a ``rate(N minute(s)|hour(s)|day(s))`` expression in seconds; ``None`` for
    anything else (``cron()``, ``at()``, not a schedule)."""
    rate = _RATE.match(expression) if isinstance(expression, str) else None
    if not rate:
        return None
    unit_seconds = _RATE_UNIT_SECONDS.get(_rate_unit(rate.group(2)))
    return None if unit_seconds is None else int(rate.group(1)) * unit_seconds


def validate_schedule(expression) -> str | None:
    """Return ``None`` when *expression* is a valid EventBridge schedule, else what is wrong."""
    if not isinstance(expression, str):
        return f"expected a string like 'rate(1 hour)' or 'cron(0 * * * ? *)', got {expression!r}"
    rate = _RATE.match(expression)
    if rate:
        n, unit = int(rate.group(1)), rate.group(2)
        base = _rate_unit(unit)
        if base not in _RATE_UNIT_SECONDS:
            return (f"{expression!r} has unit {unit!r}; expected minute(s), hour(s) or day(s)")
        if n < 1:
            return f"{expression!r}: the rate value must be a positive integer"
        want = base if n == 1 else base + "s"
        if unit != want:
            return f"{expression!r}: expected 'rate({n} {want})' (singular unit for 1, plural otherwise)"
        return None
    cron = _CRON.match(expression)
    if cron:
        fields = cron.group(1).split()
        if len(fields) != 6:
            return (f"{expression!r} has {len(fields)} fields; expected 6 "
                    "(minutes hours day-of-month month day-of-week year), e.g. 'cron(0 * * * ? *)'")
        for (name, pattern), value in zip(_CRON_FIELD, fields):
            if not pattern.match(value):
                return f"{expression!r}: bad {name} field {value!r}"
        if (fields[2] == "?") == (fields[4] == "?"):
            return (f"{expression!r}: exactly one of day-of-month and day-of-week must be '?', "
                    "e.g. 'cron(0 6 * * ? *)'")
        return None
    return (f"{expression!r} is not a schedule expression; expected 'rate(N minute|minutes|hour|hours|"
            "day|days)' or 'cron(minutes hours day-of-month month day-of-week year)'")


# --------------------------------------------------------------------------- estimator params

ESTIMATOR_PARAMS = Path(__file__).resolve().with_name("estimator_params.json")


@functools.lru_cache(maxsize=1)
def _params_catalogue() -> dict:
    return json.loads(ESTIMATOR_PARAMS.read_text(encoding="utf-8"))


def estimator_params(estimator: str) -> dict[str, dict] | None:
    """The constructor parameters of a catalogued estimator, in signature order, each as
    ``{"accepts": [JSON forms], "objects": [Python-only forms]}`` (see ``infra.estimator_params``);
    ``None`` for an estimator the catalogue does not know."""
    return _params_catalogue()["estimators"].get(estimator)


def _describe_range(form: dict) -> str:
    lo, hi, closed = form.get("min"), form.get("max"), form.get("closed", "both")
    left_in, right_in = closed in ("left", "both"), closed in ("right", "both")
    if lo is not None and hi is not None:
        return f" in {'[' if left_in else '('}{repr(lo)}, {repr(hi)}{']' if right_in else ')'}"
    if lo is not None:
        return f" {'>=' if left_in else '>'} {repr(lo)}"
    if hi is not None:
        return f" {'<=' if right_in else '<'} {repr(hi)}"
    return ""


_VALUE_JSON = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}


def _describe_form(form: dict) -> str:
    kind = form["type"]
    if kind == "int":
        return "an integer" + _describe_range(form)
    if kind == "number":
        return "a number" + _describe_range(form)
    if kind == "float":
        return "a number with a decimal point" + _describe_range(form)
    if kind == "string":
        if "options" in form:
            return "one of " + ", ".join(repr(o) for o in form["options"])
        return "a string"
    if kind == "values":
        return "one of " + ", ".join(_VALUE_JSON.get(v, repr(v)) for v in form["values"])
    return {"null": "null", "bool": "true or false", "array": "an array", "object": "an object",
            "any": "anything"}[kind]


def _in_range(value, form: dict) -> bool:
    """scikit-learn's ``Interval``: a missing bound is infinite, and ``closed`` applies to it too
    (``closed: left`` with no ``max`` refuses ``Infinity``)."""
    lo, hi, closed = form.get("min", -math.inf), form.get("max", math.inf), form.get("closed", "both")
    if value < lo if closed in ("left", "both") else value <= lo:
        return False
    if value > hi if closed in ("right", "both") else value >= hi:
        return False
    return True


def _accepts(form: dict, value) -> bool:
    """Whether a JSON value takes this form. Booleans are not numbers here (scikit-learn would
    take ``true`` as 1; in a config it is a mistake)."""
    kind = form["type"]
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "any":
        return True
    if kind == "null":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and _in_range(value, form)
    if kind == "number":
        return is_number and not (isinstance(value, float) and math.isnan(value)) and _in_range(value, form)
    if kind == "float":
        return isinstance(value, float) and not math.isnan(value) and _in_range(value, form)
    if kind == "string":
        return isinstance(value, str) and ("options" not in form or value in form["options"])
    if kind == "values":
        if not is_number:
            return False
        wanted = {float(v) if isinstance(v, str) else v for v in form["values"]}
        return (math.isnan(value) and any(isinstance(w, float) and math.isnan(w) for w in wanted)) \
            or value in wanted
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, Mapping)
    raise AssertionError(f"unknown form {kind!r} in {ESTIMATOR_PARAMS.name}")


# Classifiers that predict probabilities (what Shipyard serves and gates on) only with some params:
# estimator -> (param, the values that give probabilities, its default, the fix to suggest).
PROBABILITY_PARAMS = {
    "sklearn.svm.SVC": ("probability", (True,), False, '{"probability": true}'),
    "sklearn.svm.NuSVC": ("probability", (True,), False, '{"probability": true}'),
    "sklearn.linear_model.SGDClassifier": ("loss", ("log_loss", "modified_huber"), "hinge",
                                           '{"loss": "log_loss"} (or "modified_huber")'),
}


# Params with which skl2onnx 1.20 does not reproduce the estimator (found on real data by
# python -m bench.parity and tests/unit/test_parity_real.py): (estimator, param, value) -> why.
UNFAITHFUL_PARAMS = {
    (f"sklearn.neighbors.KNeighbors{kind}", "weights", "distance"):
        "skl2onnx 1.20 negates the neighbours' distances when it weights by them (probabilities 0.04 "
        "and predictions 12 off on real data); use weights 'uniform'"
    for kind in ("Classifier", "Regressor")
}


def _check_faithful(params: Mapping, estimator: str, model: str) -> None:
    for key, value in params.items():
        why = UNFAITHFUL_PARAMS.get((estimator, key, value if isinstance(value, str) else None))
        if why:
            short = estimator.rsplit(".", 1)[1]
            raise ConfigError(f"params.{key}", f"{short} with {key}={value!r} does not convert to ONNX faithfully: "
                              f"{why}", model=model)


def _check_probabilities(params: Mapping, estimator: str, model: str) -> None:
    rule = PROBABILITY_PARAMS.get(estimator)
    if rule is None:
        return
    key, gives, default, fix = rule
    value = params.get(key, default)
    if value not in gives:
        short = estimator.rsplit(".", 1)[1]
        raise ConfigError(
            f"params.{key}",
            f"{short} with {key}={value!r} does not predict class probabilities, which Shipyard serves "
            f"and gates on; set params {fix}",
            model=model,
        )


def _check_params(params: Mapping, estimator: str, model: str) -> None:
    catalogue = estimator_params(estimator)
    if catalogue is None:  # a catalogue older than CLASSIFIERS/REGRESSORS; a test catches it
        return
    short = estimator.rsplit(".", 1)[1]
    for key, value in params.items():
        where = f"params.{key}"
        if not isinstance(key, str) or key not in catalogue:
            raise ConfigError(
                where,
                f"{short} has no parameter {str(key)!r}{_suggest(str(key), catalogue)}; expected one "
                f"of: {', '.join(catalogue)}",
                model=model,
            )
        spec = catalogue[key]
        if any(_accepts(form, value) for form in spec["accepts"]):
            continue
        json_forms = [form for form in spec["accepts"] if form["type"] != "null"]
        objects = spec.get("objects", [])
        if objects and not json_forms:
            raise ConfigError(
                where,
                f"{short}'s {key!r} takes {' or '.join(objects)}, which a JSON config cannot "
                f"express; leave it out (or null) to use the default, got {value!r}",
                model=model,
            )
        forms = [_describe_form(form) for form in spec["accepts"]]
        expected = forms[0] if len(forms) == 1 else ", ".join(forms[:-1]) + " or " + forms[-1]
        hint = ""
        if isinstance(value, str) and any(f["type"] in ("int", "number", "float") for f in json_forms):
            hint = " (a quoted number is a string: write it without quotes)"
        elif isinstance(value, str):
            options = [o for f in json_forms if f["type"] == "string" for o in f.get("options", ())]
            hint = _suggest(value, options)
        raise ConfigError(
            where, f"{value!r} is not a valid {short} {key!r}{hint}; expected {expected}", model=model,
        )


# --------------------------------------------------------------------------- loading


def _load_drift(raw, model: str) -> DriftConfig:
    raw = _mapping(raw, "drift", model)
    _check_keys(raw, DRIFT_KEYS, "drift.", model)
    d = DriftConfig()
    schedule = raw.get("schedule", d.schedule)
    problem = validate_schedule(schedule)
    if problem:
        raise ConfigError("drift.schedule", problem, model=model)
    return DriftConfig(
        schedule=schedule,
        threshold=_number(raw.get("threshold", d.threshold), "drift.threshold", model, low=0, low_open=True),
        share=_number(raw.get("share", d.share), "drift.share", model, low=0, high=1, low_open=True),
        retrain=_bool(raw.get("retrain", d.retrain), "drift.retrain", model),
        window=_integer(raw.get("window", d.window), "drift.window", model, low=1),
    )


def _load_quality(raw, model: str) -> QualityConfig | None:
    """``quality`` of a model (docs/quality.md); absent: None (no quality check)."""
    if raw is None:
        return None
    raw = _mapping(raw, "quality", model)
    _check_keys(raw, QUALITY_KEYS, "quality.", model)
    d = QualityConfig()
    schedule = raw.get("schedule", d.schedule)
    problem = validate_schedule(schedule)
    if problem:
        raise ConfigError("quality.schedule", problem, model=model)
    min_score = raw.get("min_score")
    if min_score is not None:
        min_score = _number(min_score, "quality.min_score", model)
    retrain = raw.get("retrain", False)
    if retrain is False or retrain is None:
        retrain = None
    elif retrain is True:
        raise ConfigError("quality.retrain", "expected false, 'dataset' (retrain on the latest dataset) or "
                          "'dataset+labels' (the latest dataset plus the labelled traffic), got true", model=model)
    else:
        retrain = _choice(retrain, QUALITY_RETRAIN_MODES, "quality.retrain", model, what="retrain mode")
    return QualityConfig(
        schedule=schedule,
        min_labels=_integer(raw.get("min_labels", d.min_labels), "quality.min_labels", model, low=1),
        window=_duration_seconds(raw.get("window", "7d"), "quality.window", model),
        min_score=min_score,
        retrain=retrain,
    )


def _load_model(name, raw) -> ModelSpec:
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise ConfigError(
            "models", f"model name {name!r} is not safe for S3 keys and ARNs; expected 1-32 "
            "characters: lower-case letters, digits, '-' or '_', starting with a letter and "
            "ending with a letter or digit (e.g. 'iris', 'house-prices')",
            model=str(name),
        )
    raw = _mapping(raw, "models." + name, None)
    _check_keys(raw, MODEL_KEYS, "", name)
    if "target" not in raw:
        raise ConfigError("target", "missing; expected the name of the CSV column to predict", model=name)
    target = raw["target"]
    if not isinstance(target, str) or not target.strip():
        raise ConfigError("target", f"expected a non-empty column name, got {target!r}", model=name)

    task = _choice(raw.get("task", "classification"), TASKS, "task", name)
    estimator = raw.get("estimator", DEFAULT_ESTIMATOR[task])
    if not isinstance(estimator, str) or not _ESTIMATOR_SHAPE.match(estimator):
        raise ConfigError(
            "estimator", f"{estimator!r} is not a scikit-learn estimator path; expected a dotted "
            f"'sklearn.<module>.<Class>' name such as '{DEFAULT_ESTIMATOR[task]}'", model=name,
        )
    if estimator not in ESTIMATORS[task]:
        other = "regression" if task == "classification" else "classification"
        if estimator in ESTIMATORS[other]:
            raise ConfigError(
                "estimator", f"{estimator!r} is a {other} estimator but task is {task!r}; expected a "
                f"{task} estimator such as '{DEFAULT_ESTIMATOR[task]}'", model=name,
            )
        raise ConfigError(
            "estimator", f"{estimator!r} is not a scikit-learn estimator Shipyard can convert to "
            f"ONNX{_suggest(estimator, ESTIMATORS[task])}; expected one of: "
            f"{', '.join(sorted(ESTIMATORS[task]))}", model=name,
        )
    params = raw.get("params", {})
    if not isinstance(params, Mapping):
        raise ConfigError("params", f"expected an object of estimator keyword arguments, got {params!r}",
                          model=name)
    _check_params(params, estimator, name)
    _check_probabilities(params, estimator, name)
    _check_faithful(params, estimator, name)

    metric = raw.get("metric", DEFAULT_METRIC[task])
    if metric not in METRICS[task]:
        other = "regression" if task == "classification" else "classification"
        if isinstance(metric, str) and metric in METRICS[other]:
            raise ConfigError("metric", f"{metric!r} is a {other} metric but task is {task!r}; "
                              f"expected one of: {', '.join(METRICS[task])}", model=name)
        _choice(metric, METRICS[task], "metric", name, what=f"{task} metric")

    spec = ModelSpec(
        name=name,
        target=target,
        task=task,
        estimator=estimator,
        params=dict(params),
        metric=metric,
        min_score=_number(raw.get("min_score", 0.0), "min_score", name),
        max_regression=_number(raw.get("max_regression", 0.0), "max_regression", name, low=0),
        holdout=_number(raw.get("holdout", 0.2), "holdout", name, low=0, high=1, low_open=True,
                        high_open=True),
        drift=_load_drift(raw.get("drift", {}), name),
        compute=_load_compute(raw.get("compute", {}), name),
        release=_load_release(raw.get("release", {}), name, task),
        quality=_load_quality(raw.get("quality"), name),
    )
    if spec.compute.is_sagemaker and (chars := spec_hyperparameter_chars(spec)) > MAX_HYPERPARAMETER_CHARS:
        raise ConfigError("params", f"the model's spec is {chars:,} characters as JSON, more than the "
                          f"{MAX_HYPERPARAMETER_CHARS:,} a SageMaker hyperparameter holds (compute.type sagemaker "
                          "passes it to the training job as one); shorten params (e.g. long lists) or train on "
                          "Lambda", model=name)
    return spec


def _load_compute(raw, model: str) -> ComputeConfig:
    raw = _mapping(raw, "compute", model)
    _check_keys(raw, COMPUTE_KEYS, "compute.", model)
    kind = _choice(raw.get("type", "lambda"), COMPUTE_TYPES, "compute.type", model)
    if kind == "sagemaker":
        return _load_sagemaker(raw, model)
    for key in SAGEMAKER_KEYS:
        if key in raw:
            raise ConfigError(f"compute.{key}", f"applies to compute.type 'sagemaker' only, and this model's type "
                              f"is 'lambda'; expected compute.type 'sagemaker' with it, or no compute.{key}",
                              model=model)
    memory = raw.get("memory", DEFAULT_TRAIN_MEMORY_MB)
    if isinstance(memory, bool) or not isinstance(memory, int) or not (
            MIN_TRAIN_MEMORY_MB <= memory <= MAX_TRAIN_MEMORY_MB):
        raise ConfigError(
            "compute.memory", f"expected an integer number of MB from {MIN_TRAIN_MEMORY_MB} to "
            f"{MAX_TRAIN_MEMORY_MB} (Lambda's limit), got {memory!r}; the largest dataset a Train function "
            f"takes is about (memory - {TRAIN_IMPORTS_MB} MB) / {TRAIN_PEAK_PER_CSV_BYTE:g}", model=model)
    return ComputeConfig(type=kind, memory=memory)


def _load_sagemaker(raw: Mapping, model: str) -> ComputeConfig:
    if "memory" in raw:
        raise ConfigError("compute.memory", "applies to compute.type 'lambda' only: a SageMaker job's memory is "
                          "its instance's; expected compute.instance_type instead (e.g. 'ml.r5.xlarge', 32 GiB)",
                          model=model)
    instance = raw.get("instance_type", DEFAULT_INSTANCE_TYPE)
    if not isinstance(instance, str) or instance not in INSTANCE_MEMORY_GIB:
        sizes = ", ".join(f"{name} ({gib} GiB: datasets up to {_mib(instance_max_dataset_bytes(name))})"
                          for name, gib in INSTANCE_MEMORY_GIB.items())
        hint = _suggest(instance, INSTANCE_MEMORY_GIB) if isinstance(instance, str) else ""
        raise ConfigError("compute.instance_type", f"{instance!r} is not a SageMaker CPU training instance type "
                          f"Shipyard knows{hint}; expected one of: {sizes}", model=model)
    volume = raw.get("volume_gb", DEFAULT_VOLUME_GB)
    if isinstance(volume, bool) or not isinstance(volume, int) or not MIN_VOLUME_GB <= volume <= MAX_VOLUME_GB:
        raise ConfigError("compute.volume_gb", f"expected an integer number of GB from {MIN_VOLUME_GB} to "
                          f"{MAX_VOLUME_GB} (SageMaker's limit), got {volume!r}", model=model)
    runtime = _duration_seconds(raw.get("max_runtime", DEFAULT_MAX_RUNTIME_SECONDS), "compute.max_runtime", model)
    if runtime > MAX_RUNTIME_SECONDS:
        raise ConfigError("compute.max_runtime", f"{raw['max_runtime']!r} is {runtime:,} seconds, more than "
                          f"SageMaker's limit of 28 days ({MAX_RUNTIME_SECONDS:,} seconds)", model=model)
    return ComputeConfig(type="sagemaker", instance_type=instance, volume_gb=volume, max_runtime=runtime)


def _load_release(raw, model: str, task: str) -> ReleaseConfig:
    raw = _mapping(raw, "release", model)
    _check_keys(raw, RELEASE_KEYS, "release.", model)
    d = ReleaseConfig()
    approval = _choice(raw.get("approval", d.approval), APPROVALS, "release.approval", model)
    mode = _choice(raw.get("mode", d.mode), RELEASE_MODES, "release.mode", model)
    timeout = _duration_seconds(raw.get("approval_timeout", d.approval_timeout), "release.approval_timeout", model)
    if timeout > MAX_APPROVAL_TIMEOUT_SECONDS:
        raise ConfigError("release.approval_timeout", f"{raw['approval_timeout']!r} is {timeout:,} seconds; expected "
                          f"at most 30 days ({MAX_APPROVAL_TIMEOUT_SECONDS:,} s)", model=model)
    bake = _duration_seconds(raw.get("bake", d.bake), "release.bake", model)
    if not MIN_BAKE_SECONDS <= bake <= MAX_BAKE_SECONDS:
        raise ConfigError("release.bake", f"{raw['bake']!r} is {bake:,} seconds; expected from 1 minute (the "
                          f"per-version alarms' period) to 7 days", model=model)
    percent = _number(raw.get("percent", d.percent), "release.percent", model, low=0, high=100,
                      low_open=True, high_open=True)
    agreement = raw.get("agreement", d.agreement)
    if agreement is not None:
        agreement = _number(agreement, "release.agreement", model, low=0, high=1, low_open=True)
    tolerance = _number(raw.get("tolerance", d.tolerance), "release.tolerance", model, low=0)
    for key in ("percent",):
        if key in raw and mode != "canary":
            raise ConfigError(f"release.{key}", f"applies to release.mode 'canary' only, and this model's mode is "
                              f"{mode!r}; expected mode 'canary' with it, or no release.{key}", model=model)
    for key in ("agreement", "tolerance", "min_samples"):
        if key in raw and mode != "shadow":
            raise ConfigError(f"release.{key}", f"applies to release.mode 'shadow' only (the rule that ends a shadow "
                              f"release), and this model's mode is {mode!r}; expected mode 'shadow' with it, or no "
                              f"release.{key}", model=model)
    if "tolerance" in raw and task != "regression":
        raise ConfigError("release.tolerance", "applies to regression models only (how far a shadow prediction may "
                          "be from production's and still agree); a classification agrees on the class", model=model)
    if agreement is not None and task == "regression" and "tolerance" not in raw:
        raise ConfigError("release.tolerance", "missing: with release.agreement a regression needs the largest "
                          "difference from production's prediction that still agrees (e.g. 0.5, in the target's "
                          "units)", model=model)
    if "bake" in raw and mode == "all_at_once":
        raise ConfigError("release.bake", "applies to release.mode 'canary' or 'shadow' only; this model's mode is "
                          "'all_at_once', which promotes at once", model=model)
    if "approval_timeout" in raw and approval != "manual" and mode != "shadow":
        raise ConfigError("release.approval_timeout", "applies when a person decides (release.approval 'manual', or "
                          "a shadow release without an agreement rule); expected release.approval 'manual' with it",
                          model=model)
    return ReleaseConfig(
        approval=approval, approval_timeout=timeout, mode=mode, percent=percent, bake=bake, agreement=agreement,
        tolerance=tolerance,
        min_samples=_integer(raw.get("min_samples", d.min_samples), "release.min_samples", model, low=1),
        max_errors=_integer(raw.get("max_errors", d.max_errors), "release.max_errors", model, low=0),
        max_latency_ms=_number(raw.get("max_latency_ms", d.max_latency_ms), "release.max_latency_ms", model,
                               low=0, low_open=True),
    )


def _mib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n // 2**20} MiB"


def duration_seconds(value) -> int | None:
    """Seconds of an integer >= 1 or of a duration ``<N>s|m|h|d`` (``"90m"``, ``"2h"``; digits alone are
    seconds); None when it is neither (configuration and the CLI say what they expected)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 1 else None
    if isinstance(value, str) and value.isdigit() and int(value) >= 1:
        return int(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    return int(match.group(1)) * _DURATION_SECONDS[match.group(2)] if match else None


def _duration_seconds(value, key: str, model: str) -> int:
    """Seconds (an integer >= 1) or a duration string ``<N>s|m|h|d`` (``"90m"``, ``"2h"``)."""
    seconds = duration_seconds(value) if not isinstance(value, str) or not value.isdigit() else None
    if seconds is None:
        raise ConfigError(key, f"expected a whole number of seconds >= 1 or a duration such as '90m', '2h' or "
                          f"'1d' (units s, m, h, d), got {value!r}", model=model)
    return seconds


def _load_api(raw) -> ApiConfig:
    raw = _mapping(raw, "api", None)
    _check_keys(raw, API_KEYS, "api.", None)
    d = ApiConfig()
    auth = _choice(raw.get("auth", d.auth), AUTH_MODES, "api.auth", None, what="API auth mode")
    return ApiConfig(
        auth=auth,
        rate_limit=_number(raw.get("rate_limit", d.rate_limit), "api.rate_limit", None, low=0, low_open=True),
        burst_limit=_integer(raw.get("burst_limit", d.burst_limit), "api.burst_limit", None, low=1),
        cloudwatch_role=_bool(raw.get("cloudwatch_role", d.cloudwatch_role), "api.cloudwatch_role", None),
    )


def _load_concurrency(raw) -> ConcurrencyConfig:
    raw = _mapping(raw, "concurrency", None)
    _check_keys(raw, CONCURRENCY_KEYS, "concurrency.", None)
    d = ConcurrencyConfig()
    values = {}
    for key in CONCURRENCY_KEYS:
        value = raw.get(key, getattr(d, key))
        values[key] = None if value is None else _integer(value, f"concurrency.{key}", None, low=1)
    return ConcurrencyConfig(**values)


def _load_uploads(raw) -> UploadsConfig:
    raw = _mapping(raw, "uploads", None)
    _check_keys(raw, UPLOADS_KEYS, "uploads.", None)
    alarm = raw.get("alarm_unowned", UploadsConfig.alarm_unowned)
    if not isinstance(alarm, bool):
        quoted = " (a quoted string: write true or false without quotes)" if isinstance(alarm, str) else ""
        raise ConfigError("uploads.alarm_unowned", "expected true (alarm on uploads under a datasets/ or batch/ "
                          f"folder no model owns, the default) or false, got {alarm!r}{quoted}")
    return UploadsConfig(alarm_unowned=alarm)


def without_comments(value: Any) -> Any:
    """``value`` without its comments: cdk.json is JSON, so a comment is a key starting with ``//``
    (``"// drift": "…"``), at any level."""
    if isinstance(value, Mapping):
        return {k: without_comments(v) for k, v in value.items() if not (isinstance(k, str) and k.startswith("//"))}
    if isinstance(value, list):
        return [without_comments(v) for v in value]
    return value


def load_config(raw: Mapping | None) -> ShipyardConfig:
    """Validate ``context.shipyard`` (comments left out) and return it typed, with every default filled in."""
    raw = {} if raw is None else without_comments(_mapping(raw, "shipyard", None))
    _check_keys(raw, TOP_KEYS, "", None)
    d = ShipyardConfig()

    stack_name = raw.get("stack_name", d.stack_name)
    if not isinstance(stack_name, str) or not STACK_NAME.match(stack_name):
        raise ConfigError("stack_name", f"{stack_name!r} is not a CloudFormation stack name; expected "
                          "letters, digits and '-', starting with a letter, at most 128 characters")
    alarm_email = raw.get("alarm_email", d.alarm_email)
    if alarm_email is not None and (not isinstance(alarm_email, str) or not EMAIL.match(alarm_email)):
        raise ConfigError("alarm_email", f"expected an e-mail address or null, got {alarm_email!r}")
    architecture = _choice(raw.get("architecture", d.architecture), ARCHITECTURES, "architecture", None,
                           what="Lambda architecture")

    models_raw = _mapping(raw.get("models", {}), "models", None)
    models = {name: _load_model(name, spec) for name, spec in models_raw.items()}
    return ShipyardConfig(
        stack_name=stack_name,
        alarm_email=alarm_email,
        architecture=architecture,
        api=_load_api(raw.get("api", {})),
        concurrency=_load_concurrency(raw.get("concurrency", {})),
        uploads=_load_uploads(raw.get("uploads", {})),
        models=models,
    )
