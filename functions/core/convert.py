"""scikit-learn pipelines (framework preprocessing + the user's estimator) and their ONNX form.

No pandas: training data is a 2-D numpy object array whose columns are the schema's features in
order; the ColumnTransformer selects them by integer index. The ONNX graph gets one ``[None, 1]``
input per feature, in the same order, named as the feature. skl2onnx maps integer column ``i`` of
a multi-input graph to its i-th input when every input is one column wide
(``skl2onnx.common.utils.get_column_index``), so the fitted pipeline converts as it is.

Imports of scikit-learn and skl2onnx are local to the functions that need them: the inference
function imports this package's siblings without shipping the training stack.
"""
from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .schema import NUMBER, STRING, FeatureSchema, SchemaError, coerce_labels, is_missing, parse_number
from .values import plain

# Missing string cells are "" in training arrays and at inference (ONNX strings cannot be null).
MISSING_STRING = ""
FILL_STRING = "__missing__"


class ConvertError(ValueError):
    """A pipeline cannot be built or converted; the message names what and why."""


# ---- estimator resolution ----------------------------------------------------------------------


def resolve_estimator(path: str, task: str | None = None) -> type:
    """The estimator class named by a dotted path under ``sklearn.``; nothing else is importable.

    ``task`` ("classification"/"regression") additionally requires a classifier/regressor.
    """
    from sklearn.base import BaseEstimator

    if not isinstance(path, str) or not path.startswith("sklearn.") or path.count(".") < 2:
        raise ConvertError(
            f"estimator {path!r} is not allowed: expected a dotted path to a scikit-learn class, "
            "e.g. 'sklearn.linear_model.LogisticRegression'"
        )
    module_name, _, class_name = path.rpartition(".")
    parts = path.split(".")
    if any(not p.isidentifier() or p.startswith("_") for p in parts):
        raise ConvertError(f"estimator {path!r} is not allowed: private or malformed name")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConvertError(f"estimator {path!r}: no module {module_name!r} in scikit-learn") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConvertError(f"estimator {path!r}: {module_name} has no {class_name!r}")
    if not (inspect.isclass(cls) and issubclass(cls, BaseEstimator)) or inspect.isabstract(cls):
        raise ConvertError(f"estimator {path!r} is not a scikit-learn estimator class")
    if task is not None and _default_constructible(cls):
        _check_task(cls(), path, task)
    return cls


def _check_task(model, path: str, task: str) -> None:
    from sklearn.base import is_classifier, is_regressor

    if task == "classification" and not is_classifier(model):
        raise ConvertError(f"estimator {path!r} is not a classifier, but the task is classification")
    if task == "regression" and not is_regressor(model):
        raise ConvertError(f"estimator {path!r} is not a regressor, but the task is regression")


def preprocessing_kind(cls: type) -> str:
    """How the framework prepares numbers for an estimator class (docs/pipeline.md, "Parity").

    - ``"trees"``: decision trees and ensembles of them. Median-impute only, then cast to float32:
      trees are scale-invariant, and a float64 scaler before float32 thresholds is what made ONNX
      and scikit-learn send rows down different branches (ONNX scales in float32).
    - ``"native_nan"``: histogram gradient boosting. Numbers pass through untouched, NaN included
      (the model learned where missing values go), then cast to float32.
    - ``"counts"``: multinomial, complement and categorical naive Bayes, which take non-negative
      counts: median-impute only (standardizing would make them negative).
    - ``"scaled"``: every other estimator: median-impute and standardize (what linear models,
      SVMs, neighbours and networks need); their outputs are continuous in the inputs.
    """
    from sklearn.ensemble import AdaBoostClassifier, AdaBoostRegressor, BaggingClassifier, BaggingRegressor
    from sklearn.ensemble._forest import BaseForest
    from sklearn.ensemble._gb import BaseGradientBoosting
    from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import BaseHistGradientBoosting
    from sklearn.naive_bayes import CategoricalNB, ComplementNB, MultinomialNB
    from sklearn.tree import BaseDecisionTree

    if issubclass(cls, (MultinomialNB, ComplementNB, CategoricalNB)):
        return "counts"
    if issubclass(cls, BaseHistGradientBoosting):
        return "native_nan"
    # AdaBoost and Bagging: their default (and, from a JSON config, only) base estimator is a tree.
    if issubclass(cls, (BaseDecisionTree, BaseForest, BaseGradientBoosting, AdaBoostClassifier,
                        AdaBoostRegressor, BaggingClassifier, BaggingRegressor)):
        return "trees"
    return "scaled"


_PROBABILITY_HINT = ("choose a classifier with predict_proba, e.g. LogisticRegression, or "
                     "sklearn.calibration.CalibratedClassifierCV (a calibrated linear SVM)")
_PROBABILITY_HINTS = {
    "SVC": "set params {\"probability\": true}",
    "NuSVC": "set params {\"probability\": true}",
    "SGDClassifier": "set params {\"loss\": \"log_loss\"} (or \"modified_huber\")",
}


def build_pipeline(schema: FeatureSchema, estimator: str, params: Mapping[str, Any] | None = None, *,
                   encoded: bool = False):
    """An unfitted Pipeline: numeric preparation by estimator family, string impute + one-hot, estimator.

    ``encoded=False``: the input is an object array (:func:`matrix`), strings as strings.
    ``encoded=True``: the input is a float32 array (:func:`design_matrix`), each string feature as
    its code in :func:`vocabulary`, so training holds no Python object per cell; such a pipeline
    is converted through :func:`servable`, its twin that reads the strings themselves.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cls = resolve_estimator(estimator, schema.task)
    params = dict(params or {})
    valid = set(cls().get_params(deep=False)) if _default_constructible(cls) else None
    unknown = sorted(set(params) - valid) if valid is not None else []
    if unknown:
        raise ConvertError(
            f"estimator {estimator}: unknown params {unknown}; valid params are {sorted(valid)}"
        )
    try:
        model = cls(**params)
    except TypeError as exc:
        raise ConvertError(f"estimator {estimator}: bad params {params!r} ({exc})") from exc
    _check_task(model, estimator, schema.task)
    if schema.task == "classification" and not hasattr(model, "predict_proba"):
        raise ConvertError(
            f"estimator {estimator} with params {params!r} does not predict class probabilities, which "
            f"Shipyard serves and gates on; {_PROBABILITY_HINTS.get(cls.__name__, _PROBABILITY_HINT)}"
        )
    kind = preprocessing_kind(cls)

    numeric = [i for i, f in enumerate(schema.features) if f.type == NUMBER]
    strings = [i for i, f in enumerate(schema.features) if f.type == STRING]
    transformers = []
    if numeric:
        if kind == "native_nan":
            numbers: Any = "passthrough"
        # copy=False: the column transformer hands each step a fresh array (its column selection
        # copies), so working in place is safe and saves a copy of the training rows per step.
        elif kind in ("trees", "counts"):
            numbers = median_imputer()
        else:
            numbers = Pipeline([("impute", median_imputer()), ("scale", StandardScaler(copy=False))])
        transformers.append(("num", numbers, numeric))
    if strings and encoded:
        # Codes are positions in the sorted vocabulary (missing = FILL_STRING's position), so the
        # fitted categories map back to the strings, in the same order (see servable()).
        # float32 out: with float32 numbers the stacked matrix stays float32 (half the memory).
        transformers.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32),
                             strings))
    elif strings:
        transformers.append((
            "cat",
            Pipeline([
                # skl2onnx converts string imputers only when missing_values is a string.
                ("impute", SimpleImputer(strategy="constant", missing_values=MISSING_STRING,
                                         fill_value=FILL_STRING)),
                # Dense output: not every estimator accepts sparse input.
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]),
            strings,
        ))
    steps = [("preprocess", ColumnTransformer(transformers))]
    if kind in ("trees", "native_nan") and not encoded:  # the encoded matrix is float32 already
        # Trees compare features with thresholds: scikit-learn must see the very float32 values
        # the ONNX graph compares (ONNX computes in float32), or a row near a threshold goes
        # down the other branch.
        from skl2onnx.sklapi import CastTransformer

        steps.append(("float32", CastTransformer(dtype=np.float32)))
    return Pipeline(steps + [("model", model)])


def median_imputer():
    """A median SimpleImputer that fits one column at a time (:mod:`functions.core.imputer`)."""
    from .imputer import ColumnMedianImputer

    return ColumnMedianImputer(strategy="median", copy=False)


def _register_imputer_converter() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes

    from .imputer import ColumnMedianImputer

    update_registered_converter(ColumnMedianImputer, "ShipyardColumnMedianImputer",
                                calculate_sklearn_imputer_output_shapes, convert_sklearn_imputer)


def _default_constructible(cls) -> bool:
    try:
        cls()
        return True
    except Exception:
        return False


# ---- training arrays ---------------------------------------------------------------------------


def matrix(schema: FeatureSchema, rows: Iterable[Any], columns: Sequence[str] | None = None) -> np.ndarray:
    """The training array: an ``[n, n_features]`` object array in schema order.

    ``rows`` are records (dicts) or, with ``columns``, sequences of cells (e.g. CSV rows; extra
    columns such as the target are ignored). Numbers become floats (NaN when missing), strings
    stay strings ("" when missing), matching what ``FeatureSchema.to_feeds`` gives ONNX.
    """
    rows = list(rows)
    positions = _positions(schema.names, columns)
    X = np.empty((len(rows), len(schema.features)), dtype=object)
    for i, row in enumerate(rows):
        for j, f in enumerate(schema.features):
            v = _get(row, f.name, positions, i)
            if is_missing(v):
                X[i, j] = math.nan if f.type == NUMBER else MISSING_STRING
            elif f.type == NUMBER:
                x = parse_number(v)
                if x is None:
                    raise SchemaError(f"row {i}: feature {f.name!r} must be a finite number, got {v!r}")
                X[i, j] = x
            else:
                X[i, j] = str(v)
    return X


def target(schema: FeatureSchema, rows: Iterable[Any], columns: Sequence[str] | None = None) -> np.ndarray:
    """The target vector: floats for regression, labels typed like ``schema.classes`` otherwise."""
    rows = list(rows)
    positions = _positions([schema.target], columns)
    values = [_get(row, schema.target, positions, i) for i, row in enumerate(rows)]
    for i, v in enumerate(values):
        if is_missing(v):
            raise SchemaError(f"row {i}: target {schema.target!r} is missing")
    if schema.task == "regression":
        ys = [parse_number(v) for v in values]
        bad = next((i for i, y in enumerate(ys) if y is None), None)
        if bad is not None:
            raise SchemaError(f"row {bad}: target {schema.target!r} must be a finite number, got {values[bad]!r}")
        return np.asarray(ys, dtype=np.float64)
    labels = coerce_labels(values)
    if schema.classes and all(isinstance(c, str) for c in schema.classes):
        labels = [str(v) for v in values]
    return np.asarray(labels, dtype=object if isinstance(labels[0], str) else np.int64)


def _positions(names: Sequence[str], columns: Sequence[str] | None) -> dict[str, int] | None:
    if columns is None:
        return None
    columns = list(columns)
    missing = [n for n in names if n not in columns]
    if missing:
        raise SchemaError(f"columns {missing} not found; columns are {columns}")
    return {n: columns.index(n) for n in names}


def _get(row: Any, name: str, positions: dict[str, int] | None, i: int) -> Any:
    if positions is None:
        if not isinstance(row, Mapping):
            raise SchemaError(f"row {i}: expected a record (dict) when no column names are given")
        if name not in row:
            raise SchemaError(f"row {i}: column {name!r} is missing")
        return row[name]
    return row[positions[name]]


# ---- the lean training path: one float32 matrix, strings as codes ------------------------------


def vocabulary(categories: Iterable[str]) -> list[str]:
    """A string feature's codes: its categories and FILL_STRING (what missing becomes), sorted."""
    return sorted(set(categories) | {FILL_STRING})


def design_matrix(schema: FeatureSchema, columns: Mapping[str, np.ndarray], idx: np.ndarray | None = None,
                  vocabularies: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
    """The encoded pipeline's input: ``[n, n_features]`` float32, schema order, no per-cell objects.

    Numbers become float32 (NaN when missing): exactly what the ONNX model receives at inference,
    so the pipeline is fitted and compared on the values it will serve. A string feature becomes
    its code in ``vocabularies[name]`` (default :func:`vocabulary` of the schema's categories);
    missing (None or "") becomes FILL_STRING's code, as the servable twin's imputer does.
    """
    n = len(idx) if idx is not None else len(next(iter(columns.values()))) if columns else 0
    X = np.empty((n, len(schema.features)), dtype=np.float32)
    for j, f in enumerate(schema.features):
        col = columns[f.name] if idx is None else columns[f.name][idx]
        if f.type == NUMBER:
            X[:, j] = col  # float64 -> float32, NaN stays NaN
            continue
        vocab = (vocabularies or {}).get(f.name) or vocabulary(f.categories or ())
        code = {v: float(i) for i, v in enumerate(vocab)}
        fill = code[FILL_STRING]
        # An unknown string (not in the vocabulary) gets -1: one-hot ignores it, as ONNX does.
        X[:, j] = np.fromiter((fill if v is None or v == MISSING_STRING else code.get(v, -1.0) for v in col),
                              dtype=np.float32, count=n)
    return X


def servable(pipeline, schema: FeatureSchema, vocabularies: Mapping[str, Sequence[str]] | None = None):
    """The twin of an encoded pipeline that reads strings (what :func:`to_onnx` converts).

    The same fitted numeric transformer, cast and estimator objects; for the string features an
    imputer ("" -> FILL_STRING) and a one-hot encoder whose categories are the strings of the
    codes the encoded pipeline's encoder learned, in the same order: the same columns out.
    A pipeline that is not encoded is returned as it is.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    ct = pipeline.steps[0][1]
    fitted = {name: (trans, cols) for name, trans, cols in ct.transformers_ if name in ("num", "cat")}
    cat = fitted.get("cat")
    if cat is None or not isinstance(cat[0], OneHotEncoder):
        return pipeline
    encoder, cols = cat
    vocabs = [(vocabularies or {}).get(schema.features[c].name) or vocabulary(schema.features[c].categories or ())
              for c in cols]
    categories = [[vocab[int(code)] for code in learned if code >= 0]
                  for vocab, learned in zip(vocabs, encoder.categories_)]
    strings = Pipeline([
        ("impute", SimpleImputer(strategy="constant", missing_values=MISSING_STRING, fill_value=FILL_STRING)),
        ("onehot", OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False,
                                 dtype=np.float32)),
    ])
    transformers = [("num", ct.transformers[0][1], fitted["num"][1])] if "num" in fitted else []
    transformers.append(("cat", strings, cols))
    twin = ColumnTransformer(transformers)
    # Fit the twin's structure on a few rows holding every category once (the string encoder's
    # fit only checks them), then put the trained numeric transformer in place of its own.
    rows = max(len(c) for c in categories)
    sample = np.empty((rows, len(schema.features)), dtype=object)
    for j, f in enumerate(schema.features):
        sample[:, j] = 0.0 if f.type == NUMBER else None
    for c, cats in zip(cols, categories):
        sample[:, c] = [cats[i % len(cats)] for i in range(rows)]
    twin.fit(sample)
    if "num" in fitted and not isinstance(fitted["num"][0], str):
        twin.transformers_ = [("num", fitted["num"][0], fitted["num"][1]) if name == "num" else (name, t, c)
                              for name, t, c in twin.transformers_]
    return Pipeline([("preprocess", twin)] + list(pipeline.steps[1:]))


# ---- ONNX --------------------------------------------------------------------------------------


def fitted_classes(pipeline) -> list[Any]:
    """The fitted classifier's classes as plain Python values (the order of its probabilities)."""
    return [plain(c) for c in pipeline.classes_]


def _fix_skl2onnx_leaf_flags() -> None:
    """skl2onnx 1.20 writes ``False`` (a bool) as the missing-value flag of histogram-gradient-
    boosting leaves; onnx 1.23 refuses bools in an ints attribute ("Expected an int, got a
    boolean"), so no HistGradientBoosting* model converted. Coerce the flag to 0/1 where skl2onnx
    adds each tree node. Idempotent; skl2onnx is pinned exactly (pyproject.toml)."""
    from skl2onnx.common import tree_ensemble

    add_node = tree_ensemble.add_node
    if getattr(add_node, "_shipyard_fixed", False):
        return

    def fixed(*args, nodes_missing_value_tracks_true=0, **kwargs):
        return add_node(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs)

    fixed._shipyard_fixed = True
    tree_ensemble.add_node = fixed


def floor_thresholds_to_float32(estimator) -> int:
    """Round every split threshold of a fitted tree model down to the nearest float32; returns how
    many thresholds moved.

    ONNX tree ensembles hold float32 thresholds; skl2onnx rounds scikit-learn's float64 ones to the
    *nearest* float32, which can land above the float64 value, and an input equal to it then goes
    left in ONNX and right in scikit-learn. Rounded *down*, ``x <= t`` holds for a float32 ``x``
    exactly when ``x <= t64`` does (no float32 lies between), so for the float32 inputs both sides
    see (the pipeline casts them, see :func:`build_pipeline`) scikit-learn's predictions do not
    change and ONNX's become identical.
    """
    moved = 0

    def floor(values: np.ndarray) -> None:
        nonlocal moved
        f32 = values.astype(np.float32)
        above = f32.astype(np.float64) > values
        f32[above] = np.nextafter(f32[above], np.float32(-np.inf))
        moved += int(np.count_nonzero(f32.astype(np.float64) != values))
        values[...] = f32

    seen: set[int] = set()

    def walk(obj) -> None:
        if obj is None or id(obj) in seen:
            return
        seen.add(id(obj))
        tree = getattr(obj, "tree_", None)
        if tree is not None and hasattr(tree, "threshold"):
            leaf = tree.children_left == -1
            thresholds = tree.threshold  # a writable view of the tree's nodes
            splits = thresholds[~leaf].copy()
            floor(splits)
            thresholds[~leaf] = splits
        for stage in getattr(obj, "_predictors", None) or ():  # HistGradientBoosting*
            for predictor in stage:
                nodes = predictor.nodes
                split = nodes["is_leaf"] == 0
                values = nodes["num_threshold"][split].copy()
                floor(values)
                nodes["num_threshold"][split] = values
        members = getattr(obj, "estimators_", None)
        if members is not None:
            for member in np.asarray(members, dtype=object).ravel():
                walk(member)
        for attr in ("estimator_", "calibrated_classifiers_"):
            inner = getattr(obj, attr, None)
            for member in inner if isinstance(inner, list) else [inner]:
                walk(getattr(member, "estimator", member))

    walk(estimator)
    return moved


def _restore_input_names(onx, names: Sequence[str]) -> None:
    """skl2onnx rewrites input names that are not identifiers (``od280/od315`` becomes
    ``od280_od315``); the model format names each input exactly as its feature. Inputs come in
    the order of ``initial_types``, so the i-th input is the i-th feature."""
    graph = onx.graph
    if len(graph.input) != len(names):
        raise ConvertError(f"converted graph has {len(graph.input)} inputs, expected {len(names)}")
    renamed = {i.name: n for i, n in zip(graph.input, names) if i.name != n}
    if not renamed:
        return
    for value in graph.input:
        value.name = renamed.get(value.name, value.name)
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = renamed[name]


def _apply_log_link(onx, estimator) -> None:
    """Histogram gradient boosting regressors with a log link (``loss`` poisson or gamma) predict
    ``exp(raw)``; skl2onnx 1.20 leaves the raw sum of the trees (measured on diabetes: 4.57 where
    scikit-learn says 96.4). Append the Exp the converter leaves out."""
    from onnx import helper

    link = getattr(getattr(estimator, "_loss", None), "link", None)
    if type(link).__name__ != "LogLink" or not hasattr(estimator, "_predictors"):
        return
    graph = onx.graph
    (output,) = graph.output
    raw = output.name + "_log"
    for node in graph.node:
        for k, name in enumerate(node.output):
            if name == output.name:
                node.output[k] = raw
    graph.node.append(helper.make_node("Exp", [raw], [output.name], name="shipyard_log_link"))


def to_onnx(pipeline, schema: FeatureSchema) -> bytes:
    """Serialized ONNX of a fitted pipeline, in the model format of docs/architecture.md."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    inputs = [
        (f.name, FloatTensorType([None, 1]) if f.type == NUMBER else StringTensorType([None, 1]))
        for f in schema.features
    ]
    estimator = pipeline.steps[-1][1]
    options = None
    if schema.is_classifier:
        classes = fitted_classes(pipeline)
        if list(schema.classes or ()) != classes:
            raise ConvertError(
                f"the schema's classes {list(schema.classes or ())} differ from the fitted model's "
                f"{classes}; fit on data with every class or update the schema's classes"
            )
        # zipmap=False: plain `label` and `probabilities` tensors instead of a list of maps.
        options = {id(estimator): {"zipmap": False}}
    binary = schema.is_classifier and len(schema.classes or ()) == 2
    if binary and type(estimator).__name__ == "LinearDiscriminantAnalysis":
        # Measured on breast-cancer: ONNX gives expit(2d) where scikit-learn gives expit(d).
        raise ConvertError(
            "skl2onnx cannot convert sklearn.discriminant_analysis.LinearDiscriminantAnalysis faithfully on two "
            "classes: its probabilities come out as sigmoid(2 x decision) instead of sigmoid(decision); use it "
            "for three or more classes, or use sklearn.linear_model.LogisticRegression"
        )
    _fix_skl2onnx_leaf_flags()
    _register_imputer_converter()
    floor_thresholds_to_float32(estimator)
    try:
        # A fixed graph name (skl2onnx would pick a random one): the same fitted pipeline always
        # gives the same bytes, so an artifact's sha256 is reproducible.
        onx = convert_sklearn(pipeline, initial_types=inputs, options=options, name="shipyard")
    except Exception as exc:  # skl2onnx raises many types; name the estimator in one error
        # skl2onnx's messages can hold a whole model (a tree ensemble's attributes: megabytes):
        # keep the first line, bounded; the full text is in the exception chain (the log).
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(first) > 300:
            first = first[:300] + "…"
        raise ConvertError(
            f"skl2onnx cannot convert {type(estimator).__module__}.{type(estimator).__name__}: "
            f"{type(exc).__name__}: {first}"
        ) from exc
    _restore_input_names(onx, schema.names)
    if not schema.is_classifier:
        _apply_log_link(onx, estimator)
    outputs = [o.name for o in onx.graph.output]
    expected = ["label", "probabilities"] if schema.is_classifier else ["variable"]
    if outputs != expected:
        raise ConvertError(f"converted graph has outputs {outputs}, expected {expected}")
    return onx.SerializeToString()
