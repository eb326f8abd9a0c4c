"""Training a model version from dataset bytes: validate, split, fit, convert, check parity.

No AWS here: :func:`train` takes the CSV bytes and the model's spec and returns everything a
version is made of (ONNX bytes, ``metrics.json``, ``baseline.json``, ``holdout.json``, schema,
lineage facts). The pipeline's train step (``functions/pipeline/train.py``) reads the dataset from
S3, calls this, writes the artifacts and registers the candidate.

Steps (docs/pipeline.md):

1. :func:`functions.core.dataset.load_csv` validates and types the CSV (every refusal is a
   :class:`~functions.core.dataset.DatasetError` naming the column or problem); the bytes are
   dropped once parsed when the caller hands a reader.
2. Deterministic holdout split (stratified for classifiers). The seed is derived from the
   dataset's sha256, so the same bytes always give the same split, and it is recorded.
3. The drift baseline (:func:`functions.core.baseline.build_baseline`) of the training rows and
   ``holdout.json``, then one float32 design matrix per split
   (:func:`functions.core.convert.design_matrix`); the typed columns go before the fit.
4. :func:`functions.core.convert.build_pipeline` (numbers prepared by estimator family, strings
   one-hot, the configured estimator) is fitted and converted to ONNX through its string-reading
   twin (:func:`functions.core.convert.servable`).
5. Parity (:func:`check_parity`): the ONNX model (onnxruntime) and the scikit-learn pipeline
   predict the holdout; the result is recorded either way; the validate step gates on it.
"""
from __future__ import annotations

import json
import math
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import dataset as ds
from .layout import DEFAULT_MAX_DATASET_BYTES, DEFAULT_MIN_DATASET_ROWS
from .metrics import higher_is_better, score
from .values import plain

PARITY_TOLERANCE = 1e-4
# Seeds are derived from the dataset's sha256: 32 bits of it.
_SEED_HEX_DIGITS = 8
HOLDOUT_FORMAT = 1


class TrainingError(ValueError):
    """The model cannot be trained or converted (not a dataset problem); the message says why."""


@dataclass
class TrainResult:
    """Everything a model version is made of, as bytes and JSON-ready dicts."""

    onnx: bytes
    schema: dict[str, Any]
    metrics: dict[str, Any]
    parity: dict[str, Any]
    baseline: dict[str, Any]
    holdout_json: bytes  # holdout.json, as written (see holdout_json())
    dataset: dict[str, Any]  # sha256, rows, columns (lineage facts of the bytes)
    split: dict[str, Any]  # seed, fraction, train_rows, holdout_rows, stratified
    libraries: dict[str, str] = field(default_factory=dict)

    @property
    def holdout(self) -> dict[str, Any]:
        """``holdout.json`` parsed (the validate step's view of it)."""
        return json.loads(self.holdout_json)


def split_seed(sha256: str) -> int:
    """The holdout split's seed for a dataset: the first 32 bits of its sha256 (recorded)."""
    return int(sha256[:_SEED_HEX_DIGITS], 16)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that made (and will serve) a model: recorded in lineage."""
    out = {"python": platform.python_version()}
    for name in ("numpy", "sklearn", "skl2onnx", "onnx", "onnxruntime"):
        try:
            module = __import__(name)
            out["scikit-learn" if name == "sklearn" else name] = str(getattr(module, "__version__", "unknown"))
        except ImportError:
            continue
    return out


def onnx_feeds(schema: Mapping[str, Any], X: np.ndarray, strings: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ONNX inputs for rows of the design matrix ``X`` (:func:`functions.core.convert.design_matrix`):
    one ``[n, 1]`` array per feature; numbers from ``X`` (float32), string features from
    ``strings`` (name -> object array, None for missing), as a caller would send them."""
    from .convert import MISSING_STRING

    feeds = {}
    for j, f in enumerate(schema["features"]):
        if f["type"] == ds.NUMBER:
            feeds[f["name"]] = np.asarray(X[:, j], dtype=np.float32).reshape(-1, 1)
        else:
            feeds[f["name"]] = np.asarray([MISSING_STRING if v is None else v for v in strings[f["name"]]],
                                          dtype=object).reshape(-1, 1)
    return feeds


def holdout_json(dataset: ds.Dataset, idx: np.ndarray, seed: int, fraction: float) -> bytes:
    """``holdout.json``: the holdout rows as JSON columns (null for missing) and their targets, the
    seed, fraction and row indices; compact, key-sorted JSON.

    The validate step scores candidate and production on exactly these rows with onnxruntime
    (no scikit-learn): records ``{feature: value}`` go through ``FeatureSchema.to_feeds``. Written
    one column at a time, so that a large holdout never exists as one Python object per cell
    (184k rows x 13 columns were 90 MB of floats)."""
    def dumps(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)

    columns = []
    for name, col in sorted(ds.feature_columns(dataset, idx).items()):
        if col.dtype == object:
            values = [None if v is None else str(v) for v in col.tolist()]
        else:
            values = [None if math.isnan(v) else float(v) for v in col.tolist()]
        columns.append(dumps(name) + ":" + dumps(values))
        del values
    target = dataset.target[idx]
    top = {
        "format": HOLDOUT_FORMAT,
        "fraction": float(fraction),
        "indices": [int(i) for i in idx],
        "rows": int(len(idx)),
        "seed": int(seed),
        "target": [plain(v) for v in target.tolist()],
        "target_name": dataset.schema["target"],
    }
    # "columns" sorts first of the top-level keys.
    rest = dumps(top)[1:]
    return ('{"columns":{' + ",".join(columns) + "}," + rest).encode()


def label_mismatches(onnx_labels: list, sk_labels: list, sk_proba: np.ndarray,
                     tolerance: float) -> tuple[int, int]:
    """(labels that differ, labels that differ on a tie).

    Where scikit-learn's two most probable classes are within ``tolerance`` of each other, argmax
    is decided by rounding (float64 in scikit-learn, float32 in ONNX): a different label there is
    a tie, not a conversion error. Every other difference is a mismatch.
    """
    differs = np.array([a != b for a, b in zip(onnx_labels, sk_labels)], dtype=bool)
    if not differs.any():
        return 0, 0
    top2 = np.sort(sk_proba, axis=1)[:, -2:] if sk_proba.shape[1] >= 2 else np.zeros((len(differs), 2))
    tie = (top2[:, 1] - top2[:, 0]) <= tolerance
    return int(np.sum(differs & ~tie)), int(np.sum(differs & tie))


def check_parity(pipeline, onnx_bytes: bytes, schema: Mapping[str, Any], X: np.ndarray,
                 tolerance: float = PARITY_TOLERANCE, *, feature_schema: Any = None,
                 target_scale: float | None = None, strings: Mapping[str, np.ndarray],
                 ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Compare ONNX (onnxruntime) with scikit-learn on ``X``: the parity gate (docs/pipeline.md).

    Returns (parity record, ONNX output, scikit-learn output); each output is ``{"predictions"}``
    plus ``"probabilities"`` (float64) for a classifier, so the caller scores both without
    predicting again. ``feature_schema``: the ``FeatureSchema`` of ``schema`` if the caller has it.
    ``X``: the design matrix ``pipeline`` takes; ``strings``: the string features' values, which
    the ONNX graph reads as text (:func:`onnx_feeds`).

    Classifiers: labels identical but on ties (:func:`label_mismatches`), and probabilities within
    ``tolerance`` (absolute: probabilities are on one scale, 0 to 1).
    Regressors: each prediction within ``tolerance × (target_scale + |prediction|)``, where
    ``target_scale`` is the training target's standard deviation: the gate scales with the
    target's units (grams or kilograms pass alike) and with the value's own magnitude, which
    bounds float32 rounding in ONNX (relative 6e-8 per operation).
    """
    from .onnx_model import OnnxModel
    from .schema import FeatureSchema

    fs = feature_schema if feature_schema is not None else FeatureSchema.from_dict(schema)
    model = OnnxModel.from_bytes(onnx_bytes, fs)
    out = model.session.run(model.outputs, onnx_feeds(schema, X, strings))
    record: dict[str, Any] = {"rows": int(X.shape[0]), "tolerance": tolerance}
    if fs.is_classifier:
        onnx_labels = [plain(v) for v in np.asarray(out[0]).ravel().tolist()]
        onnx_proba = np.asarray(out[1], dtype=np.float64)
        sk_labels = [plain(v) for v in pipeline.predict(X).tolist()]
        sk_proba = np.asarray(pipeline.predict_proba(X), dtype=np.float64)
        mismatched, ties = label_mismatches(onnx_labels, sk_labels, sk_proba, tolerance)
        diff = float(np.max(np.abs(onnx_proba - sk_proba))) if onnx_proba.size else 0.0
        record.update(label_mismatches=mismatched, label_ties=ties, max_abs_diff=_finite_or_none(diff),
                      allowed=tolerance, compared="labels and probabilities")
        record["passed"] = bool(mismatched == 0 and math.isfinite(diff) and diff <= tolerance)
        onnx_out = {"predictions": onnx_labels, "probabilities": onnx_proba}
        sk_out = {"predictions": sk_labels, "probabilities": sk_proba}
    else:
        onnx_pred = np.asarray(out[0], dtype=np.float64).ravel()
        sk_raw = pipeline.predict(X)
        sk_pred = np.asarray(sk_raw, dtype=np.float64).ravel()
        scale = float(target_scale) if target_scale is not None and math.isfinite(target_scale) else 1.0
        diff = np.abs(onnx_pred - sk_pred)
        allowed = tolerance * (scale + np.abs(sk_pred))
        worst = float(np.max(diff)) if diff.size else 0.0
        worst_rel = float(np.max(diff / np.maximum(np.abs(sk_pred), 1e-12))) if diff.size else 0.0
        record.update(max_abs_diff=_finite_or_none(worst), max_rel_diff=_finite_or_none(worst_rel),
                      target_scale=scale, allowed=_finite_or_none(float(tolerance * scale)),
                      compared="predictions, within tolerance x (target std + |prediction|)")
        record["passed"] = bool(np.all(np.isfinite(onnx_pred)) and np.all(diff <= allowed))
        onnx_out = {"predictions": onnx_pred}
        sk_out = {"predictions": [plain(v) for v in sk_raw.tolist()]}
    return record, onnx_out, sk_out


def train(data: bytes | Callable[[], bytes], spec: Mapping[str, Any], *, max_bytes: int = DEFAULT_MAX_DATASET_BYTES,
          min_rows: int = DEFAULT_MIN_DATASET_ROWS, tolerance: float = PARITY_TOLERANCE) -> TrainResult:
    """Validate, split, fit, convert and check one dataset for a model ``spec`` (cdk.json keys).

    Raises :class:`~functions.core.dataset.DatasetError` for a dataset that cannot be used and
    :class:`TrainingError` (or :class:`~functions.core.convert.ConvertError`) for a model that
    cannot be built or converted.

    ``data``: the CSV's bytes, or a function that reads them. With a function, training holds
    the only reference and drops the bytes once they are parsed (docs/pipeline.md, "Memory").
    """
    from . import convert
    from .schema import FeatureSchema

    target, task = spec["target"], spec.get("task", "classification")
    metric = spec.get("metric") or ("accuracy" if task == "classification" else "r2")
    fraction = float(spec.get("holdout", 0.2))
    if callable(data):
        data = data()
    dataset = ds.load_csv(data, target=target, task=task, max_bytes=max_bytes, min_rows=min_rows)
    del data
    seed = split_seed(dataset.sha256)
    classifier = task == "classification"
    train_idx, test_idx = ds.holdout_split(dataset.rows, fraction, seed,
                                           stratify=dataset.target if classifier else None)
    y_train, y_test = dataset.target[train_idx], dataset.target[test_idx]
    schema = dataset.schema
    fs = FeatureSchema.from_dict(schema)

    # Memory (docs/pipeline.md): one float32 matrix per split (strings as codes), then everything
    # that needs the typed columns (drift baseline, holdout.json, the holdout's strings for ONNX)
    # before the fit, so the columns can go before the estimator makes its own copies.
    baseline = _baseline(dataset, train_idx, schema, spec.get("drift") or {})
    holdout = holdout_json(dataset, test_idx, seed, fraction)
    X_train = convert.design_matrix(fs, dataset.columns, train_idx)
    X_test = convert.design_matrix(fs, dataset.columns, test_idx)
    test_strings = {f.name: dataset.columns[f.name][test_idx] for f in fs.features if f.type != ds.NUMBER}
    lineage = {"sha256": dataset.sha256, "rows": dataset.rows, "columns": dataset.n_columns,
               "missing": dict(dataset.missing), "dropped": dict(dataset.dropped)}
    dataset.columns = {}
    del dataset

    params = dict(spec.get("params") or {})
    pipeline = convert.build_pipeline(fs, spec["estimator"], params, encoded=True)
    # Reproducible training: a randomized estimator without a configured random_state gets the
    # split seed (recorded), so the same dataset bytes give the same model.
    estimator = pipeline.steps[-1][1]
    random_state = params.get("random_state")
    if "random_state" in estimator.get_params(deep=False) and random_state is None:
        random_state = seed
        estimator.set_params(random_state=random_state)
    try:
        pipeline.fit(X_train, y_train)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise TrainingError(f"estimator {spec['estimator']} failed to fit the training rows: {exc}") from exc
    del X_train
    if classifier:
        classes = convert.fitted_classes(pipeline)
        if list(schema.get("classes") or []) != classes:  # cannot happen with a stratified split
            raise TrainingError(f"the fitted classes {classes} differ from the dataset's {schema.get('classes')}")
    onnx_bytes = convert.to_onnx(convert.servable(pipeline, fs), fs)
    parity, onnx_out, sk_out = check_parity(pipeline, onnx_bytes, schema, X_test, tolerance, feature_schema=fs,
                                            target_scale=None if classifier else float(np.std(y_train)),
                                            strings=test_strings)

    holdout_score = _score(metric, y_test, onnx_out, schema)
    sklearn_score = _score(metric, y_test, sk_out, schema)

    split = {"seed": seed, "fraction": fraction, "train_rows": int(len(train_idx)),
             "holdout_rows": int(len(test_idx)), "stratified": classifier, "method": "holdout_split/PCG64",
             "random_state": random_state}
    metrics = {
        "metric": metric,
        "higher_is_better": higher_is_better(metric),
        metric: holdout_score,
        "sklearn_" + metric: sklearn_score,
        "train_rows": split["train_rows"],
        "holdout_rows": split["holdout_rows"],
        "parity": parity,
    }
    return TrainResult(
        onnx=onnx_bytes,
        schema=schema,
        metrics=metrics,
        parity=parity,
        baseline=baseline,
        holdout_json=holdout,
        dataset=lineage,
        split=split,
        libraries=library_versions(),
    )


def _baseline(dataset: ds.Dataset, train_idx: np.ndarray, schema: Mapping[str, Any],
              drift: Mapping[str, Any]) -> dict[str, Any]:
    from .baseline import build_baseline

    kwargs: dict[str, Any] = {}
    if drift.get("window") is not None:
        kwargs["window"] = int(drift["window"])
    if drift.get("threshold") is not None:
        kwargs["threshold"] = float(drift["threshold"])
    return build_baseline(_RowsOf(dataset, train_idx), schema, **kwargs)


class _RowsOf(Mapping):
    """The feature columns at rows ``idx``, each made when read: the baseline reads one column at
    a time, so a copy of every training column never exists at once."""

    def __init__(self, dataset: ds.Dataset, idx: np.ndarray):
        self._columns, self._idx = dataset.columns, idx

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns[name][self._idx]

    def __contains__(self, name: object) -> bool:  # without making the column
        return name in self._columns

    def __iter__(self):
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def _score(metric: str, y_true: np.ndarray, out: Mapping[str, Any], schema: Mapping[str, Any]) -> float | None:
    classes = schema.get("classes")
    try:
        value = score(metric, [plain(v) for v in y_true.tolist()], out["predictions"],
                      probabilities=out.get("probabilities"), classes=classes)
    except ValueError:
        return None  # e.g. roc_auc on a holdout that holds one class: recorded as null
    return value if math.isfinite(value) else None


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None

