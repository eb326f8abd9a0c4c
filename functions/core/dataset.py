"""Training datasets: a CSV upload, validated and typed before anything is fitted.

Only the standard library's ``csv`` and numpy: this module runs in the training function and in
unit tests without pandas. ``load_csv`` turns the uploaded bytes into a :class:`Dataset` (typed
feature columns, the target, the feature schema of docs/architecture.md) or raises
:class:`DatasetError` whose message says what is wrong, where (column, line) and what was
expected. ``holdout_split`` is the deterministic (seeded) train/holdout split.

The rules, and every message a user can meet, are documented in docs/datasets.md.

Column types
    Missing cells are empty (or whitespace-only) cells and ``nan`` in any case. Of the other
    cells, a column is ``number`` when every one parses as a finite decimal number; it is
    ``string`` otherwise, *unless* at least ``NUMERIC_SHARE`` (90 %) of them are numbers: then the
    few that are not are taken for mistakes and the dataset is refused, naming the column, the
    line and the value. ``inf``/``infinity`` (any sign or case), and numbers too large for the
    float32 inputs of the ONNX model, are refused in a numeric column.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from functions.core.artifacts import sha256_hex
from functions.core.layout import DEFAULT_MAX_DATASET_BYTES, DEFAULT_MIN_DATASET_ROWS
from functions.core.schema import FLOAT32_MAX, NUMBER, STRING, TASKS

DEFAULT_MAX_BYTES = DEFAULT_MAX_DATASET_BYTES
DEFAULT_MIN_ROWS = DEFAULT_MIN_DATASET_ROWS
DEFAULT_MAX_CATEGORIES = 1000
# At least this share of a column's non-missing cells being numbers makes it a numeric column
# with a few bad values (an error) rather than a string column.
NUMERIC_SHARE = 0.9

_MISSING_TOKENS = frozenset({"", "nan", "+nan", "-nan"})
_INF_TOKENS = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
# A plain decimal number: what float() accepts minus underscores, nan/inf and exotic digits.
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z", re.ASCII)
_INT_RE = re.compile(r"[+-]?\d+\Z", re.ASCII)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class DatasetError(ValueError):
    """The dataset cannot be used; the message names the column or problem and what was expected."""


def check_size(size: int, max_bytes: int) -> None:
    """DatasetError when a dataset of ``size`` bytes is over the ``max_bytes`` limit."""
    if size > max_bytes:
        raise DatasetError(
            f"dataset is too large: {size:,} bytes ({_mib(size)}), the limit is {max_bytes:,} bytes "
            f"({_mib(max_bytes)}); upload a smaller sample"
        )


@dataclass
class Dataset:
    """A validated, typed dataset.

    ``columns`` holds the feature columns in file order (the schema's order): ``float64`` with NaN
    for missing numbers, or ``object`` arrays of ``str`` with ``None`` for missing strings.
    ``target`` is ``float64`` (regression), ``int64`` (classification, every label an integer) or
    an ``object`` array of the original label strings. ``n_columns`` counts every column of the
    file, target included; ``missing`` counts missing cells per feature column.
    """

    columns: dict[str, np.ndarray]
    target: np.ndarray
    schema: dict[str, Any]
    rows: int
    n_columns: int
    sha256: str
    missing: dict[str, int] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.schema["features"]]


# ---- loading ----------------------------------------------------------------------------------


def load_csv(
    data: bytes,
    *,
    target: str,
    task: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    min_rows: int = DEFAULT_MIN_ROWS,
    max_categories: int | None = DEFAULT_MAX_CATEGORIES,
) -> Dataset:
    """Validate and type a CSV upload; raise :class:`DatasetError` on the first problem found."""
    if task not in TASKS:
        raise DatasetError(f"task must be one of {list(TASKS)}, got {task!r}")
    if not isinstance(target, str) or not target.strip():
        raise DatasetError(f"target must be a column name (a non-empty string), got {target!r}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"load_csv takes the file's bytes, got {type(data).__name__}")
    data = bytes(data)

    check_size(len(data), max_bytes)
    digest = sha256_hex(data)
    text = _decode(data)
    if not text.strip():
        raise DatasetError(
            "dataset is empty: expected a header line of column names followed by at least "
            f"{min_rows} data rows"
        )

    header, header_line, records = _read(text)
    names = _check_header(header, header_line)
    n_columns = len(names)

    if target not in names:
        hint = [n for n in names if n.strip().lower() == target.strip().lower()]
        did_you_mean = f" (did you mean {hint[0]!r}? names are case-sensitive)" if hint else ""
        raise DatasetError(f"target column {target!r} not found{did_you_mean}; the columns are {names}")
    if n_columns < 2:
        raise DatasetError(
            f"no feature columns: the only column is the target {target!r}; expected at least one "
            "other column to learn from"
        )

    for line, row in records:
        if len(row) != n_columns:
            raise DatasetError(
                f"line {line} has {len(row)} field{'s' if len(row) != 1 else ''}, expected {n_columns} (one per column of the "
                f"header: {_names_short(names)}); quote values that contain commas"
            )

    n_rows = len(records)
    if n_rows < min_rows:
        raise DatasetError(
            f"too few rows: the dataset has {n_rows} data row{'s' if n_rows != 1 else ''}, "
            f"at least {min_rows} are needed"
        )

    lines = [line for line, _ in records]
    cells_by_column = list(zip(*(row for _, row in records)))
    t = names.index(target)
    y, classes = _target(target, task, cells_by_column[t], lines)

    columns: dict[str, np.ndarray] = {}
    missing: dict[str, int] = {}
    features: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        if j == t:
            continue
        col, feature, n_missing = _feature(name, cells_by_column[j], lines, max_categories)
        columns[name] = col
        missing[name] = n_missing
        features.append(feature)

    schema: dict[str, Any] = {"target": target, "task": task, "features": features}
    if classes is not None:
        schema["classes"] = classes
    return Dataset(
        columns=columns,
        target=y,
        schema=schema,
        rows=n_rows,
        n_columns=n_columns,
        sha256=digest,
        missing=missing,
    )


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"dataset is not UTF-8 text: byte {exc.start} (line {line}) is {data[exc.start:exc.start + 1]!r}; "
            "save the file as UTF-8 CSV"
        ) from None


def _read(text: str) -> tuple[list[str], int, list[tuple[int, list[str]]]]:
    """Header, its line number and the data records with the line each starts on.

    Blank lines are skipped (a trailing newline, an empty last line).
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    records: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    header_line = 0
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DatasetError(f"line {reader.line_num}: the CSV cannot be read ({exc})") from None
        line = start
        start = reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            if header is None:
                raise DatasetError(
                    f"no header: line {line} is empty; expected the first line to be the column names"
                )
            continue
        if header is None:
            header, header_line = row, line
        else:
            records.append((line, row))
    assert header is not None  # text is not blank
    return header, header_line, records


def _check_header(header: list[str], line: int) -> list[str]:
    names = [h.strip() for h in header]
    if all(_NUMBER_RE.match(n) for n in names):
        raise DatasetError(
            f"no header: line {line} holds numbers ({_names_short(names)}), not column names; "
            "expected the first line to name the columns"
        )
    blank = [i + 1 for i, n in enumerate(names) if not n]
    if blank:
        raise DatasetError(
            f"blank column name in the header (line {line}) at position{'s' if len(blank) > 1 else ''} "
            f"{', '.join(map(str, blank))}; every column needs a name"
        )
    seen: dict[str, int] = {}
    dupes = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        if seen[n] == 2:
            dupes.append(n)
    if dupes:
        raise DatasetError(f"duplicate column names in the header (line {line}): {dupes}; names must be unique")
    return names


# ---- typing -------------------------------------------------------------------------------------


def _is_missing(cell: str) -> bool:
    s = cell.strip()
    return not s or s.lower() in _MISSING_TOKENS


def _number(cell: str) -> float | None:
    """The float for a plain decimal number (may be inf on overflow); None when not one."""
    s = cell.strip()
    if _NUMBER_RE.match(s):
        return float(s)
    return None


def _target(name: str, task: str, cells: Sequence[str], lines: list[int]) -> tuple[np.ndarray, list | None]:
    gaps = [lines[i] for i, c in enumerate(cells) if _is_missing(c)]
    if gaps:
        raise DatasetError(
            f"target column {name!r} has {len(gaps)} missing value{'s' if len(gaps) > 1 else ''} "
            f"(line{'s' if len(gaps) > 1 else ''} {_lines_short(gaps)}); every row needs a target: "
            "fill them in or remove those rows"
        )
    if task == "regression":
        values = np.empty(len(cells), dtype=np.float64)
        bad = []
        for i, c in enumerate(cells):
            x = _number(c)
            if x is None or not math.isfinite(x):
                bad.append(i)
            else:
                values[i] = x
        if bad:
            i = bad[0]
            raise DatasetError(
                f"regression target {name!r} must be numeric: {len(bad)} of {len(cells)} values are not "
                f"finite numbers, the first on line {lines[i]}: {_short(cells[i])}; expected a number on "
                "every row (or task 'classification')"
            )
        if np.all(values == values[0]):
            raise DatasetError(
                f"regression target {name!r} is constant ({values[0]:g} on every row); there is nothing to learn"
            )
        return values, None

    labels: np.ndarray
    if all(_INT_RE.match(c.strip()) for c in cells):
        ints = [int(c.strip()) for c in cells]
        if all(_INT64_MIN <= v <= _INT64_MAX for v in ints):
            labels = np.asarray(ints, dtype=np.int64)
        else:
            labels = _object_array(cells)
    else:
        labels = _object_array(cells)
    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        raise DatasetError(
            f"classification needs at least 2 classes, but target column {name!r} has only one: "
            f"{classes[0]!r} on every row"
        )
    return labels, classes


def _feature(
    name: str, cells: Sequence[str], lines: list[int], max_categories: int | None
) -> tuple[np.ndarray, dict[str, Any], int]:
    n = len(cells)
    values = np.full(n, np.nan, dtype=np.float64)
    present = 0
    numeric = 0  # numbers, infinite ones included
    problems: list[int] = []  # positions of cells that are not finite numbers
    missing_mask = np.zeros(n, dtype=bool)
    for i, c in enumerate(cells):
        if _is_missing(c):
            missing_mask[i] = True
            continue
        present += 1
        x = _number(c)
        if x is not None:
            numeric += 1
            if math.isfinite(x):
                values[i] = x
                continue
        elif c.strip().lower() in _INF_TOKENS:
            numeric += 1
        problems.append(i)
    n_missing = n - present
    if present == 0:
        raise DatasetError(
            f"column {name!r} has no values (every cell is empty); fill it in or remove the column"
        )

    if numeric >= NUMERIC_SHARE * present:
        # A numeric column: every non-missing cell must be a finite, float32-sized number.
        if problems:
            i = problems[0]
            cell = cells[i]
            if cell.strip().lower() in _INF_TOKENS:
                what = "an infinite value"
                expected = "a finite number"
            elif _number(cell) is not None:
                what = "a number too large to represent"
                expected = "a finite number"
            else:
                what = "a value that is not a number"
                expected = "a number"
            finite = present - len(problems)
            raise DatasetError(
                f"column {name!r} is numeric ({finite} of {present} values are numbers) but line "
                f"{lines[i]} has {what}: {_short(cell)}; expected {expected}, or an empty cell for a "
                f"missing value ({len(problems)} such value{'s' if len(problems) > 1 else ''} in the column)"
            )
        big = np.flatnonzero(np.abs(values) > FLOAT32_MAX)
        if big.size:
            i = int(big[0])
            raise DatasetError(
                f"column {name!r}: line {lines[i]} has {_short(cells[i])}, which is out of range; "
                f"expected a magnitude of at most {FLOAT32_MAX:.4g} (the model takes float32)"
            )
        return values, {"name": name, "type": NUMBER}, n_missing

    col = np.empty(n, dtype=object)
    for i, c in enumerate(cells):
        col[i] = None if missing_mask[i] else c
    categories = sorted({c for c, m in zip(cells, missing_mask) if not m})
    if max_categories is not None and len(categories) > max_categories:
        raise DatasetError(
            f"column {name!r} is a string column with {len(categories):,} distinct values, more than the "
            f"limit of {max_categories:,}; is it an identifier? Remove it, or bucket its values"
        )
    return col, {"name": name, "type": STRING, "categories": categories}, n_missing


# ---- split ------------------------------------------------------------------------------------


def holdout_split(
    n_rows: int,
    fraction: float,
    seed: int,
    stratify: Sequence[Any] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/holdout split: sorted ``int64`` index arrays ``(train_idx, test_idx)``.

    The holdout has ``round(n_rows * fraction)`` rows, at least one, and at least one row stays in
    train. With ``stratify`` (the class labels), each class is split on its own so that every class
    keeps a row in train and every class with at least 2 rows has one in the holdout; the holdout
    size then follows ``fraction`` as closely as those guarantees allow (largest remainders).
    The same ``(n_rows, fraction, seed, stratify)`` always gives the same split (PCG64).
    """
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)):
        raise DatasetError(f"n_rows must be an integer, got {n_rows!r}")
    n_rows = int(n_rows)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating, np.integer)) or not (
        0.0 < float(fraction) < 1.0
    ):
        raise DatasetError(f"holdout fraction must be a number strictly between 0 and 1, got {fraction!r}")
    fraction = float(fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise DatasetError(f"seed must be a non-negative integer, got {seed!r}")
    if n_rows < 2:
        raise DatasetError(
            f"cannot split {n_rows} row{'s' if n_rows != 1 else ''}: a holdout split needs at least 2 rows "
            "(one to train on, one to hold out)"
        )
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    wanted = min(max(int(round(n_rows * fraction)), 1), n_rows - 1)

    if stratify is None:
        perm = rng.permutation(n_rows)
        test = np.sort(perm[:wanted])
        train = np.sort(perm[wanted:])
        return train.astype(np.int64), test.astype(np.int64)

    labels = np.asarray(stratify, dtype=object).ravel() if not isinstance(stratify, np.ndarray) else stratify.ravel()
    if len(labels) != n_rows:
        raise DatasetError(f"stratify has {len(labels)} labels for {n_rows} rows; expected one label per row")
    try:
        classes, codes = np.unique(labels, return_inverse=True)
    except TypeError:  # labels of mixed, unorderable types
        classes, codes = np.unique(np.asarray([repr(v) for v in labels], dtype=object), return_inverse=True)
    codes = codes.ravel()
    counts = np.bincount(codes, minlength=len(classes))
    lo = (counts >= 2).astype(np.int64)
    hi = counts - 1
    if hi.sum() < 1:
        raise DatasetError(
            f"cannot hold out any row: each of the {len(classes)} classes has a single row, and every "
            "class must keep a row in train; expected at least one class with 2 or more rows"
        )
    ideal = counts * fraction
    take = np.clip(np.floor(ideal).astype(np.int64), lo, hi)
    remainder = ideal - np.floor(ideal)
    target_total = max(wanted, int(lo.sum()))
    # Add rows where the remainder is largest, take them back where it is smallest; ties by class.
    order_up = sorted(range(len(classes)), key=lambda k: (-remainder[k], k))
    order_down = sorted(range(len(classes)), key=lambda k: (remainder[k], k))
    while take.sum() < target_total:
        grown = False
        for k in order_up:
            if take.sum() >= target_total:
                break
            if take[k] < hi[k]:
                take[k] += 1
                grown = True
        if not grown:
            break
    while take.sum() > target_total:
        shrunk = False
        for k in order_down:
            if take.sum() <= target_total:
                break
            if take[k] > lo[k]:
                take[k] -= 1
                shrunk = True
        if not shrunk:
            break

    test_parts = []
    train_parts = []
    for k in range(len(classes)):
        members = np.flatnonzero(codes == k)
        perm = rng.permutation(members)
        test_parts.append(perm[: take[k]])
        train_parts.append(perm[take[k]:])
    test = np.sort(np.concatenate(test_parts)).astype(np.int64)
    train = np.sort(np.concatenate(train_parts)).astype(np.int64)
    return train, test


# ---- views for training -----------------------------------------------------------------------


def feature_columns(dataset: Dataset, idx: Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The feature columns (schema order) restricted to the rows ``idx`` (all rows when None)."""
    if idx is None:
        return {name: col.copy() for name, col in dataset.columns.items()}
    idx = _index(idx, dataset.rows)
    return {name: dataset.columns[name][idx] for name in dataset.feature_names}


def rows_matrix(dataset: Dataset, idx: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """An ``[len(idx), n_features]`` object array in schema feature order.

    Numbers are Python floats (NaN when missing), strings are ``str`` (``None`` when missing).
    """
    cols = feature_columns(dataset, idx)
    n = len(next(iter(cols.values()))) if cols else 0
    X = np.empty((n, len(cols)), dtype=object)
    for j, col in enumerate(cols.values()):
        X[:, j] = col.tolist() if col.dtype != object else col
    return X


def _index(idx: Sequence[int] | np.ndarray, n_rows: int) -> np.ndarray:
    arr = np.asarray(idx)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DatasetError(f"row indices must be a 1-D sequence of integers, got dtype {arr.dtype} shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= n_rows:
        raise DatasetError(f"row indices must be in [0, {n_rows - 1}], got {int(arr.min())}..{int(arr.max())}")
    return arr.astype(np.int64)


# ---- message helpers --------------------------------------------------------------------------


def _object_array(values: Sequence[Any]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _short(value: str, limit: int = 40) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 4] + "...'"


def _names_short(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _lines_short(lines: list[int], limit: int = 5) -> str:
    shown = ", ".join(map(str, lines[:limit]))
    return shown + (f", ... ({len(lines)} in all)" if len(lines) > limit else "")
