"""Feature schema: what a model takes, and how request instances become ONNX feeds.

The schema is stored on every model version (see docs/architecture.md, "Model format"). It is
the single source of truth for feature names, order and types, both when training (inferring
types from a dataset) and when serving (validating request instances).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from typing import Any

import numpy as np

NUMBER = "number"
STRING = "string"
TASKS = ("classification", "regression")

# ONNX numeric inputs are float32: anything beyond this would silently become inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)

# Below this many instances numpy's per-call overhead outweighs the per-cell Python loop, so
# to_feeds goes instance by instance (the same result either way).
FAST_MIN_INSTANCES = 8


class SchemaError(ValueError):
    """Input does not fit the schema; the message says what was wrong and what was expected."""


@dataclass(frozen=True)
class Feature:
    name: str
    type: str
    categories: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.type == STRING:
            out["categories"] = list(self.categories or ())
        return out


@dataclass(frozen=True)
class FeatureSchema:
    target: str
    task: str
    features: tuple[Feature, ...]
    classes: tuple[Any, ...] | None = None
    _index: dict[str, int] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    _plan: tuple = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self):
        if self.task not in TASKS:
            raise SchemaError(f"task must be one of {list(TASKS)}, got {self.task!r}")
        if not self.features:
            raise SchemaError("a schema needs at least one feature")
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"duplicate feature names: {dupes}")
        for f in self.features:
            if f.type not in (NUMBER, STRING):
                raise SchemaError(f"feature {f.name!r}: type must be 'number' or 'string', got {f.type!r}")
        if self.target in names:
            raise SchemaError(f"the target {self.target!r} cannot also be a feature")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})
        # Serving metadata, built once per schema (i.e. once per cached model): what to_feeds'
        # column-wise fast path needs without recomputing it per request.
        object.__setattr__(self, "_plan", tuple(
            (f.name, f.type == NUMBER, itemgetter(f.name)) for f in self.features))

    # ---- (de)serialisation -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        """Build from the stored dict form; raises SchemaError when it is not that form."""
        try:
            features = tuple(
                Feature(
                    name=str(f["name"]),
                    type=str(f["type"]),
                    categories=tuple(str(c) for c in f["categories"]) if f.get("categories") is not None else None,
                )
                for f in data["features"]
            )
            classes = data.get("classes")
            return cls(
                target=str(data["target"]),
                task=str(data["task"]),
                features=features,
                # DynamoDB hands integers back as Decimal: normalise so labels compare equal.
                classes=tuple(_plain(c) for c in classes) if classes is not None else None,
            )
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"not a feature schema ({exc!r}); expected keys target, task, features") from exc

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "target": self.target,
            "task": self.task,
            "features": [f.to_dict() for f in self.features],
        }
        if self.classes is not None:
            out["classes"] = list(self.classes)
        return out

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def is_classifier(self) -> bool:
        return self.task == "classification"

    # ---- training: infer a schema from a table ----------------------------------------------

    @classmethod
    def from_rows(
        cls,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        target: str,
        task: str,
    ) -> FeatureSchema:
        """Infer a schema from a table (e.g. CSV cells, all strings, or typed values).

        A column is a number when every non-missing cell is a number (or a string that parses as
        a finite one); otherwise it is a string column whose categories are its distinct values.
        Missing cells are ``None``, ``""`` or NaN.
        """
        columns = [str(c) for c in columns]
        if target not in columns:
            raise SchemaError(f"target column {target!r} not found; columns are {columns}")
        rows = [list(r) for r in rows]
        if not rows:
            raise SchemaError("cannot infer a schema from an empty table")
        for i, r in enumerate(rows):
            if len(r) != len(columns):
                raise SchemaError(f"row {i} has {len(r)} cells, expected {len(columns)} (one per column)")
        features = []
        for j, name in enumerate(columns):
            if name == target:
                continue
            cells = [r[j] for r in rows if not is_missing(r[j])]
            if all(parse_number(c) is not None for c in cells):
                features.append(Feature(name, NUMBER))
            else:
                features.append(Feature(name, STRING, tuple(sorted({str(c) for c in cells}))))
        classes = None
        if task == "classification":
            t = columns.index(target)
            labels = [r[t] for r in rows if not is_missing(r[t])]
            classes = tuple(sorted(set(coerce_labels(labels))))
            if len(classes) < 2:
                raise SchemaError(f"classification needs at least 2 classes in {target!r}, found {list(classes)}")
        return cls(target=target, task=task, features=tuple(features), classes=classes)

    # ---- serving: request instances -> ONNX feeds --------------------------------------------

    def to_feeds(self, instances: Any) -> dict[str, np.ndarray]:
        """Validate request instances and return one ``[n, 1]`` array per feature.

        Instances are records ``{"feature": value}`` or arrays in schema order (they may be mixed).
        Numbers accept JSON numbers or null (imputed); strings accept strings or null (imputed).

        Column-wise fast path: when every instance is a record (or every one an array) of exactly
        the schema's features and every column holds only the accepted JSON types, the columns are
        checked and converted as a whole with numpy. Anything the fast path does not plainly
        accept (a wrong key, type, length, a non-finite or out-of-range number, a lone surrogate,
        mixed records and arrays, numpy scalars) goes to the instance-by-instance path, which
        either raises the precise error (first offending instance and feature) or converts it.
        """
        if not isinstance(instances, list):
            raise SchemaError(
                f"'instances' must be a list of records or arrays, got {_json_type(instances)}"
            )
        if not instances:
            raise SchemaError("'instances' is empty; expected at least one record or array")
        feeds = self._fast_feeds(instances)
        if feeds is None:
            feeds = self._slow_feeds(instances)
        return feeds

    def _fast_feeds(self, instances: list) -> dict[str, np.ndarray] | None:
        """The feeds, or None when the input needs the instance-by-instance path."""
        n = len(instances)
        if n < FAST_MIN_INSTANCES:
            return None
        plan = self._plan
        kinds = set(map(type, instances))
        if len(kinds) != 1:
            return None
        kind = kinds.pop()
        if (kind is not dict and kind is not list) or set(map(len, instances)) != {len(plan)}:
            return None
        if kind is dict:
            try:
                columns = [list(map(get, instances)) for _name, _number, get in plan]
            except KeyError:  # a missing feature (and so, with the right length, an unknown one)
                return None
        else:
            columns = list(zip(*instances))
        feeds: dict[str, np.ndarray] = {}
        for (name, number, _get), col in zip(plan, columns):
            column = _number_column(col) if number else _string_column(col)
            if column is None:
                return None
            feeds[name] = column.reshape(n, 1)
        return feeds

    def _slow_feeds(self, instances: list) -> dict[str, np.ndarray]:
        n = len(instances)
        columns: list[list[Any]] = [[None] * n for _ in self.features]
        for i, inst in enumerate(instances):
            if isinstance(inst, dict):
                values = self._record_values(i, inst)
            elif isinstance(inst, list):
                if len(inst) != len(self.features):
                    raise SchemaError(
                        f"instance {i}: array has {len(inst)} values, expected {len(self.features)} "
                        f"in this order: {self.names}"
                    )
                values = inst
            else:
                raise SchemaError(
                    f"instance {i}: expected a record {{\"feature\": value}} or an array in schema order "
                    f"{self.names}, got {_json_type(inst)}"
                )
            for j, (f, v) in enumerate(zip(self.features, values)):
                columns[j][i] = _cell(i, f, v)
        feeds = {}
        for f, col in zip(self.features, columns):
            if f.type == NUMBER:
                feeds[f.name] = np.asarray(col, dtype=np.float32).reshape(n, 1)
            else:
                feeds[f.name] = np.asarray(col, dtype=object).reshape(n, 1)
        return feeds

    def _record_values(self, i: int, record: dict) -> list[Any]:
        unknown = [k for k in record if k not in self._index]
        missing = [n for n in self.names if n not in record]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown features {sorted(map(str, unknown))}")
            if missing:
                parts.append(f"missing features {missing}")
            raise SchemaError(f"instance {i}: {' and '.join(parts)}; expected exactly {self.names}")
        return [record[n] for n in self.names]


# ---- cell helpers (shared with training) ---------------------------------------------------


def is_missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def parse_number(value: Any) -> float | None:
    """A finite float for a number or numeric string; None otherwise (bools are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        try:
            x = float(value)
        except OverflowError:
            return None
        return x if math.isfinite(x) else None
    if isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            return None
        return x if math.isfinite(x) else None
    return None


def coerce_labels(labels: Iterable[Any]) -> list[Any]:
    """Class labels as ints when they all are integers (or integer strings), else as strings."""
    labels = list(labels)
    ints = []
    for v in labels:
        if isinstance(v, bool):
            break
        if isinstance(v, (int, np.integer)):
            ints.append(int(v))
            continue
        if isinstance(v, str):
            try:
                ints.append(int(v.strip()))
                continue
            except ValueError:
                pass
        break
    else:
        return ints
    return [str(v) for v in labels]


_NUMBER_TYPES = frozenset({int, float, type(None)})
_NUMBER_VALUES = frozenset({int, float})
_STRING_TYPES = frozenset({str, type(None)})


def _number_column(col: Sequence[Any]) -> np.ndarray | None:
    """float32 values of a column of JSON numbers and nulls (NaN), or None when some cell is not
    plainly valid (wrong type, non-finite, beyond float32): then the slow path says which."""
    types = set(map(type, col))
    if not types <= _NUMBER_TYPES:
        return None
    try:
        values = np.array(col, dtype=np.float64)  # null -> NaN; ints rounded as float() does
    except (OverflowError, ValueError, TypeError):  # ints beyond float64
        return None
    magnitude = np.abs(values)
    if types <= _NUMBER_VALUES:
        if not magnitude.max() <= FLOAT32_MAX:  # NaN, an infinity or beyond float32
            return None
    else:
        # Every null became NaN: any NaN beyond the nulls, an infinity or a value beyond float32
        # is a bad number (fmax skips NaN; it is NaN only when every cell is null).
        nulls = col.count(None)
        if nulls != len(col) and (int(np.count_nonzero(np.isnan(values))) != nulls
                                  or not np.fmax.reduce(magnitude) <= FLOAT32_MAX):
            return None
    return values.astype(np.float32)


def _string_column(col: Sequence[Any]) -> np.ndarray | None:
    """An object array of a column of strings and nulls (""), or None when some cell is not a
    string or null or is not UTF-8 encodable (a lone surrogate): then the slow path says which."""
    types = set(map(type, col))
    if not types <= _STRING_TYPES:
        return None
    if type(None) in types:
        col = ["" if v is None else v for v in col]
    joined = "".join(col)
    if not joined.isascii():
        try:
            joined.encode("utf-8")  # Python's codec refuses any surrogate, paired or not
        except UnicodeEncodeError:
            return None
    out = np.empty(len(col), dtype=object)
    out[:] = col
    return out


def _cell(i: int, f: Feature, v: Any) -> Any:
    if f.type == NUMBER:
        if v is None:
            return math.nan  # the pipeline's imputer fills it in
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SchemaError(
                f"instance {i}: feature {f.name!r} must be a number (or null), got {_json_type(v)} {_short(v)}"
            )
        try:
            x = float(v)
        except OverflowError:
            x = math.inf
        if not math.isfinite(x):
            raise SchemaError(
                f"instance {i}: feature {f.name!r} must be a finite number, got {_short(v)}"
            )
        if abs(x) > FLOAT32_MAX:
            raise SchemaError(
                f"instance {i}: feature {f.name!r} is out of range ({_short(v)}); "
                f"expected a magnitude of at most {FLOAT32_MAX:.4g}"
            )
        return x
    if v is None:
        return ""  # the pipeline's imputer treats "" as missing
    if not isinstance(v, str):
        raise SchemaError(
            f"instance {i}: feature {f.name!r} must be a string (or null), got {_json_type(v)} {_short(v)}"
        )
    try:
        v.encode("utf-8")  # JSON "\ud800" escapes decode to lone surrogates, which ONNX cannot take
    except UnicodeEncodeError:
        raise SchemaError(
            f"instance {i}: feature {f.name!r} is not valid Unicode text (it has a lone surrogate); "
            "expected a UTF-8 encodable string"
        ) from None
    return v


def _plain(v: Any) -> Any:
    # Decimal (DynamoDB) -> int when integral, float otherwise; everything else unchanged.
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    return v


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _short(v: Any, limit: int = 40) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 128:
        # repr() of a huge int is slow (or refused by Python's digit limit) and unreadable.
        return "<a very large integer>"
    try:
        r = repr(v)
    except Exception:  # pragma: no cover - defensive
        r = "<unprintable>"
    return r if len(r) <= limit else r[: limit - 3] + "..."
