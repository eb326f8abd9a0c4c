"""OnnxModel: an onnxruntime session over a model in Shipyard's format, with JSON-safe answers."""
from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from .schema import FeatureSchema
from .values import plain


class ModelFormatError(ValueError):
    """The ONNX graph does not match the model format (inputs per feature, named outputs)."""


class PredictionError(ValueError):
    """The model produced a non-finite output for some instances (inputs far outside its range)."""


class OnnxModel:
    def __init__(self, session: ort.InferenceSession, schema: FeatureSchema):
        self.session = session
        self.schema = schema
        self._check_format()

    @classmethod
    def from_bytes(cls, data: bytes, schema: FeatureSchema) -> OnnxModel:
        opts = ort.SessionOptions()
        # Lambda gives a fraction of a core per request; thread pools only add contention.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelFormatError(f"not a loadable ONNX model: {exc}") from exc
        return cls(session, schema)

    def _check_format(self) -> None:
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != self.schema.names:
            raise ModelFormatError(f"model inputs {inputs} differ from the schema's features {self.schema.names}")
        outputs = [o.name for o in self.session.get_outputs()]
        expected = ["label", "probabilities"] if self.schema.is_classifier else ["variable"]
        if outputs[: len(expected)] != expected:
            raise ModelFormatError(f"model outputs {outputs}, expected {expected}")
        self.outputs = expected  # what is run: the model format's outputs, in order

    def predict(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        """``{"predictions": [...]}`` plus ``"probabilities"`` and ``"classes"`` for classifiers."""
        results = self.session.run(self.outputs, feeds)
        if self.schema.is_classifier:
            labels, probabilities = results
            probabilities = _finite(np.asarray(probabilities, dtype=np.float64))
            return {
                "predictions": _labels(np.asarray(labels).ravel()),
                "probabilities": probabilities.tolist(),
                "classes": list(self.schema.classes or ()),
            }
        (values,) = results
        return {"predictions": _finite(np.asarray(values, dtype=np.float64)).ravel().tolist()}


def _finite(values: np.ndarray) -> np.ndarray:
    # Extreme (yet float32) inputs can overflow inside the graph; JSON has no inf/NaN to say so.
    if np.isfinite(values).all():
        return values
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:10].tolist()
        raise PredictionError(
            f"instances {rows} gave non-finite outputs; their values are too far outside the range the "
            "model was trained on (expected values of a magnitude like the training data)"
        )
    return values


def _labels(labels: np.ndarray) -> list:
    """Labels as plain Python values (what ``_plain`` gives each), converted as a whole."""
    out = labels.tolist()  # numeric and numpy-str dtypes: Python int/float/str, as .item() gives
    if labels.dtype == object and set(map(type, out)) != {str}:
        out = [_plain(v) for v in out]  # object arrays may hold numpy scalars or bytes
    return out


def _plain(v: Any) -> Any:
    # numpy scalars (int64 labels, numpy str) are not JSON serializable as such; nor are bytes.
    if isinstance(v, bytes) and not isinstance(v, np.generic):
        return v.decode("utf-8")
    return plain(v)
