"""Batch scoring: one batch of CSV rows (as Step Functions' Distributed Map hands them) → prediction
and error CSVs. No AWS here; ``functions/batch/`` does the reading and writing.

A row is refused for exactly what the API refuses: each cell becomes the JSON value the API would
be sent (a number column: a finite decimal number, or null when missing — ``dataset.cell_value``;
a string column: the text, or null when missing) and a row the fast numpy path does not plainly
accept goes through the API's own cell check (``schema._cell``, what ``FeatureSchema.to_feeds``
runs instance by instance), whose message is recorded. Valid rows are scored in one session run.

Rows arrive as ``{"index": <0-based data row>, "row": {column: text}}``. Step Functions reads a row
with fewer fields than the header as empty strings and drops extra fields
(https://docs.aws.amazon.com/step-functions/latest/dg/example-csv-parse-dist-map.html), so a
ragged row cannot be told apart here: the Prepare step finds them (``field_counts``) and passes
their indices in ``ragged``; they are refused with the count.
"""
from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from functions.core.dataset import _fast_numbers, cell_value, is_missing
from functions.core.onnx_model import OnnxModel, _labels
from functions.core.schema import FLOAT32_MAX, NUMBER, SchemaError, _cell

ERROR_HEADER = ("line", "column", "value", "message")
# kinds of refusal, counted in the summary (errors by kind)
NOT_A_NUMBER, OUT_OF_RANGE, MISSING_COLUMN, EXTRA_COLUMN, RAGGED, NON_FINITE = (
    "not_a_number", "out_of_range", "missing_column", "extra_column", "ragged_row", "non_finite_output")
_INSTANCE_PREFIX = re.compile(r"^instance \d+: ")
_NEEDS_QUOTES = re.compile(r'[",\r\n]')


class BatchInputError(ValueError):
    """The batch file cannot be scored at all (its header lacks a feature, it has no rows, …)."""


def line_of(index: int) -> int:
    """The file line of data row ``index`` (0-based), the header being line 1: exact while no quoted
    field spans lines (Prepare records whether one does: ``lines_exact``)."""
    return int(index) + 2


def check_header(columns: Sequence[str], features: Sequence[str]) -> None:
    """Every feature must be a column; other columns (ids, the target) are carried through."""
    if not columns or all(not c.strip() for c in columns):
        raise BatchInputError("the file has no header row: expected a first row of column names, "
                              f"including the model's features {list(features)}")
    dupes = sorted({c for c in columns if list(columns).count(c) > 1})
    if dupes:
        raise BatchInputError(f"duplicate column names in the header: {dupes}; names must be unique")
    missing = [f for f in features if f not in columns]
    if missing and len(columns) == 1 and (sep := next((s for s in ";\t|" if s in columns[0]), None)):
        raise BatchInputError(
            f"the header is one column, {columns[0][:200]!r}: the file looks {sep!r}-separated; batch files "
            f"must be comma-separated (as Step Functions reads them), with columns including {list(features)}")
    if missing:
        raise BatchInputError(
            f"the header lacks the model's features {missing}; expected columns including {list(features)} "
            f"(comma-separated; got {list(columns)[:20]})")


def field_counts(text: Iterable[str]) -> dict:
    """One pass over the CSV text (header included), as Step Functions' reader splits it: rows,
    the rows whose field count is not the header's (``{index: count}``), the header, and whether
    every row is one line (``lines_exact``). Blank lines are not rows."""
    reader = csv.reader(text, strict=False)
    header = next(reader, None) or []
    width = len(header)
    rows, ragged = 0, {}
    for row in reader:
        if not row:
            continue
        if len(row) != width:
            ragged[rows] = len(row)
        rows += 1
    return {"header": header, "rows": rows, "ragged": ragged, "lines_exact": reader.line_num == rows + 1}


@dataclass
class BatchResult:
    """One scored batch: the output CSVs (``None`` when empty) and its counts."""

    first_index: int
    rows: int
    scored: int = 0
    refused: int = 0
    errors_by_kind: Counter = field(default_factory=Counter)
    part_csv: bytes | None = None
    errors_csv: bytes | None = None

    def summary(self) -> dict:
        return {"first_index": self.first_index, "rows": self.rows, "scored": self.scored,
                "refused": self.refused, "errors_by_kind": dict(self.errors_by_kind)}


def output_header(columns: Sequence[str], model: OnnxModel) -> list[str]:
    """Input columns, ``prediction``, ``probability_<class>`` (classifiers), ``version``."""
    probs = [f"probability_{c}" for c in model.schema.classes or ()] if model.schema.is_classifier else []
    return [*columns, "prediction", *probs, "version"]


def score_batch(model: OnnxModel, version: int, columns: Sequence[str], items: Sequence[Mapping[str, Any]],
                *, ragged: Mapping[int, int] | None = None) -> BatchResult:
    """Score one batch: valid rows in one session run, every refusal as an error line."""
    ragged = {int(k): int(v) for k, v in (ragged or {}).items()}
    n = len(items)
    indices = [int(it["index"]) for it in items]
    rows = [it["row"] for it in items]
    result = BatchResult(first_index=min(indices) if indices else 0, rows=n)
    errors: list[tuple[int, str, str, str]] = []  # (index, column, value, message)
    bad = np.zeros(n, dtype=bool)
    kinds: list[str | None] = [None] * n
    schema = model.schema
    known = set(columns)

    def refuse(i: int, column: str, value: str, message: str, kind: str) -> None:
        errors.append((indices[i], column, value, message))
        if not bad[i]:
            bad[i] = True
            kinds[i] = kind

    width = len(columns)
    for i, idx in enumerate(indices):
        if idx in ragged:
            got = ragged[idx]
            what = "missing values" if got < width else "extra fields"
            refuse(i, "", "", f"line {line_of(idx)} has {got} field{'s' if got != 1 else ''}, expected {width} "
                              f"(one per column of the header): {what}", RAGGED)
        row = rows[i]
        if len(row) != width or row.keys() != known:
            for name in columns:
                if name not in row:
                    refuse(i, name, "", f"column {name!r} is missing from this row; expected every column "
                                        "of the header", MISSING_COLUMN)
            for name in row:
                if name not in known:
                    refuse(i, str(name), str(row[name]), f"column {name!r} is not in the header "
                                                         f"{list(columns)[:20]}", EXTRA_COLUMN)

    feeds: dict[str, np.ndarray] = {}
    complete = not bad.any()  # every row has every column (the usual case): itemgetter, no .get
    for feature in schema.features:
        name = feature.name
        cells = list(map(itemgetter(name), rows)) if complete else [r.get(name, "") for r in rows]
        if feature.type == NUMBER:
            values = _fast_numbers(cells)
            if values is not None and (np.abs(values) > FLOAT32_MAX).any():
                values = None  # beyond float32: each such cell is looked at below
            if values is None:
                values = np.empty(n, dtype=np.float64)
                for i, cell in enumerate(cells):
                    value = cell_value(cell)
                    try:
                        values[i] = _cell(indices[i], feature, value)
                    except SchemaError as err:
                        message = _INSTANCE_PREFIX.sub("", str(err))
                        refuse(i, name, cell, message, OUT_OF_RANGE if "out of range" in message else NOT_A_NUMBER)
                        values[i] = math.nan
            feeds[name] = values.astype(np.float32)
        else:
            # A string feature takes any text; a missing cell is null, which the imputer fills in.
            column = np.empty(n, dtype=object)
            text = {c: "" if is_missing(c) else c for c in set(cells)}  # few distinct values: each looked at once
            column[:] = list(map(text.__getitem__, cells))
            feeds[name] = column

    good = np.flatnonzero(~bad)
    labels = probabilities = values_out = None
    if len(good):
        run_feeds = {k: (v if len(good) == n else v[good]).reshape(-1, 1) for k, v in feeds.items()}
        outputs = model.session.run(model.outputs, run_feeds)
        if schema.is_classifier:
            labels = np.asarray(outputs[0]).ravel()
            probabilities = np.asarray(outputs[1], dtype=np.float32).reshape(len(good), -1)
            finite = np.isfinite(probabilities).all(axis=1)
        else:
            values_out = np.asarray(outputs[0], dtype=np.float32).ravel()
            finite = np.isfinite(values_out)
        if not finite.all():
            # The API refuses the whole request (PredictionError); here only those rows.
            for j in np.flatnonzero(~finite):
                refuse(int(good[j]), "", "", "the model gave a non-finite output: the row's values are too far "
                                             "outside the range the model was trained on", NON_FINITE)
            keep = finite
            good = good[keep]
            labels = labels[keep] if labels is not None else None
            probabilities = probabilities[keep] if probabilities is not None else None
            values_out = values_out[keep] if values_out is not None else None

    result.scored = int(len(good))
    result.refused = int(bad.sum())
    result.errors_by_kind = Counter(k for k in kinds if k is not None)
    if len(good):
        result.part_csv = _part_csv(columns, rows, good, model, version, labels, probabilities, values_out)
    if errors:
        result.errors_csv = _errors_csv(errors)
    return result


def _quoted_column(rows: Sequence[Mapping[str, str]], column: str) -> list[str]:
    try:
        return _quoted(list(map(itemgetter(column), rows)))
    except KeyError:
        return _quoted([r.get(column, "") for r in rows])


def _quoted(cells: list[str]) -> list[str]:
    """CSV fields: a cell holding a comma, quote or newline is quoted (quotes doubled)."""
    if not _NEEDS_QUOTES.search("".join(cells)):
        return cells
    return ['"' + c.replace('"', '""') + '"' if _NEEDS_QUOTES.search(c) else c for c in cells]


def _part_csv(columns: Sequence[str], rows: Sequence[Mapping[str, str]], good: np.ndarray, model: OnnxModel,
              version: int, labels, probabilities, values_out) -> bytes:
    """Column by column, then joined: no per-row csv.writer call (this path is benchmarked)."""
    picked = rows if len(good) == len(rows) else [rows[i] for i in good.tolist()]
    out_columns: list[list[str]] = [_quoted_column(picked, c) for c in columns]
    if labels is not None:
        out_columns.append(_quoted([str(v) for v in _labels(labels)]))  # the API's labels (bytes decoded)
        # repr of the float the API answers (float32 widened to float64: tolist), which reads back as
        # exactly that value; Python's float repr is ~50x faster than numpy's float32 astype(str)
        out_columns.extend(list(map(repr, probabilities[:, k].tolist())) for k in range(probabilities.shape[1]))
    else:
        out_columns.append(list(map(repr, values_out.tolist())))
    out_columns.append([str(int(version))] * len(picked))
    header = ",".join(_quoted(output_header(columns, model)))
    body = "\n".join(map(",".join, zip(*out_columns)))
    return (header + "\n" + body + "\n").encode("utf-8")


def _errors_csv(errors: list[tuple[int, str, str, str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ERROR_HEADER)
    for index, column, value, message in sorted(errors, key=lambda e: e[0]):
        writer.writerow((line_of(index), column, value, message))
    return buf.getvalue().encode("utf-8")


def part_name(first_index: int) -> str:
    """``part-<first row index, 9 digits>.csv``: names sort in row order."""
    return f"part-{int(first_index):09d}.csv"


def errors_name(first_index: int) -> str:
    return f"errors-{int(first_index):09d}.csv"
