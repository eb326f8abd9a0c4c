"""Training datasets: a CSV upload, validated and typed before anything is fitted.

Only the standard library's ``csv`` and numpy: this module runs in the training function and in
unit tests without pandas. ``load_csv`` turns the uploaded bytes into a :class:`Dataset` (typed
feature columns, the target, the feature schema of docs/architecture.md) or raises
:class:`DatasetError` whose message says what is wrong, where (column, line) and what was
expected. ``holdout_split`` is the deterministic (seeded) train/holdout split. ``read_table`` is
the same reader for small files that are not training data (``shipyard predict FILE.csv``).

The rules, and every message a user can meet, are documented in docs/datasets.md.

Reading
    gzip-compressed uploads (the gzip magic bytes) are decompressed, at most ``max_bytes`` of
    them. The delimiter is a comma, a semicolon, a tab or a pipe, told from the header line and
    the first rows (``sniff_delimiter``). The file is read as a stream, row chunk by row chunk,
    into per-column arrays: no decoded copy of the text, no list of all rows, no per-cell Python
    object kept (a string cell is a reference to one shared ``str`` per distinct value).

Column types
    Missing cells are those pandas reads as missing by default (``NA_VALUES``: empty, ``NA``,
    ``N/A``, ``NaN``, ``null``, ``None``, ``#N/A`` …; surrounding spaces ignored) and ``nan`` in
    any case. Of the other cells, a column is ``number`` when every one parses as a finite
    decimal number; it is ``string`` otherwise, *unless* at least ``NUMERIC_SHARE`` (90 %) of
    them are numbers: then the few that are not are taken for mistakes and the dataset is
    refused, naming the column, the line and the value. ``inf``/``infinity`` (any sign or case),
    and numbers too large for the float32 inputs of the ONNX model, are refused in a numeric
    column.
"""
from __future__ import annotations

import codecs
import csv
import io
import math
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from functions.core.artifacts import sha256_hex
from functions.core.layout import DEFAULT_MAX_DATASET_BYTES, DEFAULT_MIN_DATASET_ROWS
from functions.core.schema import FLOAT32_MAX, NUMBER, STRING, TASKS

DEFAULT_MAX_CATEGORIES = 1000
# At least this share of a column's non-missing cells being numbers makes it a numeric column
# with a few bad values (an error) rather than a string column.
NUMERIC_SHARE = 0.9

# The cells pandas.read_csv reads as missing by default (pandas 2.x ``STR_NA_VALUES``; the empty
# cell included), compared after removing surrounding spaces, case-sensitively ...
NA_VALUES = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})
# ... and, as before, nan in any case and sign.
_NAN_TOKENS = frozenset({"nan", "+nan", "-nan"})
_INF_TOKENS = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
# A plain decimal number: what float() accepts minus underscores, nan/inf and exotic digits.
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z", re.ASCII)
_INT_RE = re.compile(r"[+-]?\d+\Z", re.ASCII)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "a comma (',')", ";": "a semicolon (';')", "\t": "a tab", "|": "a pipe ('|')"}
_DELIMITER_PLURALS = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "pipes"}
GZIP_MAGIC = b"\x1f\x8b"
# A leading header name that is a pandas index written by DataFrame.to_csv (without index=False).
_INDEX_NAMES = ("", "Unnamed: 0")

# Rows parsed per chunk: the transient Python objects of one chunk are all the parser holds.
_CHUNK_ROWS = 8192
_STEP = 1 << 20  # bytes decoded / decompressed per step

# Cell kinds.
_MISSING, _FINITE, _OVERFLOW, _INF, _OTHER = range(5)
# Missing tokens mapped to "nan" for the vectorized path (float("nan") is NaN: a missing cell).
_AS_NAN = {token: "nan" for token in NA_VALUES}.get
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
    dropped: dict[str, Any] = field(default_factory=dict)  # rows without a target: {"rows", "lines"}

    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.schema["features"]]


# ---- loading ----------------------------------------------------------------------------------


def load_csv(
    data: bytes,
    *,
    target: str,
    task: str,
    max_bytes: int = DEFAULT_MAX_DATASET_BYTES,
    min_rows: int = DEFAULT_MIN_DATASET_ROWS,
    max_categories: int | None = DEFAULT_MAX_CATEGORIES,
) -> Dataset:
    """Validate and type a CSV upload; raise :class:`DatasetError` on the first problem found.

    ``data`` is the file's bytes as uploaded (``bytes``, ``bytearray`` or ``memoryview``; it is
    not copied), plain or gzip-compressed. ``sha256`` is that of these bytes.
    """
    if task not in TASKS:
        raise DatasetError(f"task must be one of {list(TASKS)}, got {task!r}")
    if not isinstance(target, str) or not target.strip():
        raise DatasetError(f"target must be a column name (a non-empty string), got {target!r}")
    raw = _view(data, "load_csv")

    check_size(len(raw), max_bytes)
    digest = sha256_hex(raw)
    text = _uncompressed(raw, max_bytes)
    capacity = _check_text(
        text, "dataset is empty: expected a header line of column names followed by at least "
        f"{min_rows} data rows"
    )
    delimiter = sniff_delimiter(text)

    chunks = _read_chunks(text, delimiter)
    header_lines, header_rows = next(chunks)
    try:
        names = _check_header(header_rows[0], header_lines[0])
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
    except DatasetError as exc:
        for _ in chunks:  # a file the CSV reader cannot read is reported first, wherever it fails
            pass
        raise exc from None

    t = names.index(target)
    # Every column is written into arrays of ``capacity`` rows (at least the number of records):
    # pages never written are never resident, so over-counting costs address space only.
    states = [_Column(capacity, codes=(j == t and task != "regression")) for j in range(n_columns)]
    line_of = np.empty(capacity, dtype=np.int64)  # the line each data row starts on
    bad_width: tuple[int, int] | None = None
    n_rows = 0
    for lines, rows in chunks:
        if bad_width is not None:
            continue  # read on: a CSV error further down is reported first
        if len(set(map(len, rows))) != 1 or len(rows[0]) != n_columns:
            i = next(i for i, row in enumerate(rows) if len(row) != n_columns)
            bad_width = (lines[i], len(rows[i]))
            continue
        for state, cells in zip(states, zip(*rows)):
            state.feed(cells, n_rows)
        line_of[n_rows:n_rows + len(lines)] = lines
        n_rows += len(rows)
        del rows, lines
    if bad_width is not None:
        line, width = bad_width
        raise DatasetError(
            f"line {line} has {width} field{'s' if width != 1 else ''}, expected {n_columns} (one per column of the "
            f"header: {_names_short(names)}); quote values that contain {_DELIMITER_PLURALS[delimiter]}"
            + ("" if delimiter == "," else f" (the file's delimiter is {_DELIMITER_NAMES[delimiter]})")
        )
    if n_rows < min_rows:
        raise DatasetError(
            f"too few rows: the dataset has {n_rows} data row{'s' if n_rows != 1 else ''}, "
            f"at least {min_rows} are needed"
        )
    for state in states:
        state.close(n_rows)

    keep = _rows_with_target(target, states[t], line_of)
    y, classes = _target(target, task, states[t], line_of, keep)
    states[t] = None  # type: ignore[call-overload]

    # Columns that are text after a first stretch of numbers need those numbers' text: read the
    # file again up to the last such row (rare: a column is usually text from its first value).
    kinds = {j: s.decide() for j, s in enumerate(states) if s is not None}
    reread = {j: states[j].mixed_at for j, kind in kinds.items() if kind == STRING and states[j].prefix_present}
    if reread:
        _reread_prefixes(text, delimiter, {j: states[j] for j in reread})

    columns: dict[str, np.ndarray] = {}
    missing: dict[str, int] = {}
    features: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        if j == t:
            continue
        col, feature, n_missing = states[j].result(name, kinds[j], line_of, max_categories)
        states[j] = None  # type: ignore[call-overload]
        columns[name] = col
        missing[name] = n_missing
        features.append(feature)

    dropped: dict[str, Any] = {}
    if keep is not None:
        gone = np.flatnonzero(~keep)
        dropped = {"rows": int(gone.size), "lines": [int(line_of[r]) for r in gone[:20]]}
        for name, col in columns.items():
            col = columns[name] = col[keep]
            missing[name] = int(np.count_nonzero(np.isnan(col))) if col.dtype != object else \
                sum(v is None for v in col.tolist())
        n_rows = int(np.count_nonzero(keep))
        if n_rows < min_rows:
            raise DatasetError(
                f"too few rows: the dataset has {n_rows} data row{'s' if n_rows != 1 else ''} with a target "
                f"({dropped['rows']} without one), at least {min_rows} are needed"
            )

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
        dropped=dropped,
    )


def read_table(data: bytes, *,
               max_bytes: int = DEFAULT_MAX_DATASET_BYTES) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The column names and the ``(line, cells)`` records of a small CSV that is not training data.

    The same reading rules as :func:`load_csv` — gzip, UTF-8 (a BOM is fine), the delimiter, the
    header checks, one field per column on every row — without typing the columns: cells stay
    text (:func:`is_missing` and :func:`cell_value` say what they hold). ``shipyard predict``
    reads its CSV with this. Raises :class:`DatasetError`.
    """
    raw = _view(data, "read_table")
    check_size(len(raw), max_bytes)
    text = _uncompressed(raw, max_bytes)
    _check_text(text, "the file is empty: expected a header row of column names and data rows")
    delimiter = sniff_delimiter(text)
    chunks = _read_chunks(text, delimiter)
    header_lines, header_rows = next(chunks)
    names = _check_header(header_rows[0], header_lines[0])
    records: list[tuple[int, list[str]]] = []
    for lines, rows in chunks:
        for line, row in zip(lines, rows):
            if len(row) != len(names):
                raise DatasetError(
                    f"line {line} has {len(row)} field{'s' if len(row) != 1 else ''}, expected {len(names)} "
                    f"(one per column of the header: {_names_short(names)}); quote values that contain "
                    f"{_DELIMITER_PLURALS[delimiter]}"
                )
            records.append((line, row))
    return names, records


def is_missing(cell: str) -> bool:
    """Whether a CSV cell is a missing value (``NA_VALUES`` after stripping spaces, or nan in any case)."""
    s = cell.strip()
    return s in NA_VALUES or s.lower() in _NAN_TOKENS


def cell_value(cell: str) -> float | str | None:
    """A CSV cell as a value: ``None`` when missing, a float for a finite plain decimal number,
    else the text as written."""
    kind, x = _classify(cell)
    if kind == _MISSING:
        return None
    return x if kind == _FINITE else cell


def sniff_delimiter(text: memoryview | bytes) -> str:
    """The delimiter of a CSV (UTF-8 bytes): ``,``, ``;``, tab or ``|``.

    The candidates are the delimiters that split the header (the first non-blank line) into two
    or more names. One candidate is the delimiter. Of several, the one that also gives every
    one of the first rows as many fields as the header; a comma when it is one of several that
    fit (or that none fits); otherwise :class:`DatasetError` naming them. No candidate (a
    single-column header) means a comma.
    """
    head, complete = _head(text)
    records: dict[str, list[list[str]]] = {}
    for d in DELIMITERS:
        rows: list[list[str]] = []
        try:
            for row in csv.reader(io.StringIO(head, newline=""), delimiter=d, strict=False):
                if len(row) < 2 and (not row or not row[0].strip()):
                    continue
                rows.append(row)
                if len(rows) > 50:
                    break
        except csv.Error:
            pass
        if rows and not complete and len(rows) <= 50:
            rows = rows[:-1] or rows[:1]  # the last row read may be cut short
        records[d] = rows
    header_width = {d: len(rows[0]) for d, rows in records.items() if rows}
    candidates = [d for d in DELIMITERS if header_width.get(d, 0) >= 2]
    if not candidates:
        return ","
    if len(candidates) == 1:
        return candidates[0]
    fit = [d for d in candidates if all(len(r) == header_width[d] for r in records[d][1:])]
    if len(fit) == 1:
        return fit[0]
    if "," in candidates and ("," in fit or not fit):
        return ","
    shown = fit or candidates
    splits = ", ".join(f"{header_width[d]} at {_DELIMITER_NAMES[d]}" for d in shown)
    fits = "and the first rows fit each of them" if fit else "and none fits all of the first rows"
    raise DatasetError(
        f"cannot tell the delimiter: the header splits into {splits}, {fits}; expected one delimiter "
        "(a comma, a semicolon, a tab or a pipe), with values that contain it quoted"
    )


def _view(data: Any, what: str) -> memoryview:
    """A flat byte view of ``data`` (no copy for contiguous buffers)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} takes the file's bytes, got {type(data).__name__}")
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1 or view.format != "B":
        view = memoryview(view.tobytes()) if not view.c_contiguous else view.cast("B")
    return view


def _uncompressed(raw: memoryview, max_bytes: int) -> memoryview:
    """The CSV's bytes: ``raw`` itself, or, if it is gzip-compressed, its content (at most
    ``max_bytes`` of it; more is refused before it is all in memory)."""
    if raw[:2] != GZIP_MAGIC:
        return raw
    out = bytearray()
    n = len(raw)
    pos = 0
    members = 0
    while pos < n:
        if raw[pos:pos + 2] != GZIP_MAGIC:
            if members and not any(raw[pos:]):  # zero padding after the last member (as gzip allows)
                break
            raise DatasetError(
                f"dataset is gzip-compressed but byte {pos:,} (after the compressed data) is not the start "
                "of another gzip member; upload the .csv.gz file as gzip wrote it"
            )
        members += 1
        inflater = zlib.decompressobj(wbits=31)
        while not inflater.eof:
            if inflater.unconsumed_tail:
                piece: Any = inflater.unconsumed_tail
            elif pos < n:
                piece = raw[pos:pos + _STEP]
                pos += len(piece)
            else:
                break
            try:
                out += inflater.decompress(piece, _STEP)
            except zlib.error as exc:
                raise DatasetError(
                    f"dataset looks gzip-compressed (it starts with the gzip magic bytes) but cannot be "
                    f"decompressed ({exc}); upload the CSV itself or an intact .csv.gz"
                ) from None
            if len(out) > max_bytes:
                raise DatasetError(
                    f"dataset is too large once decompressed: the gzip file ({n:,} bytes) holds more than "
                    f"{max_bytes:,} bytes ({_mib(max_bytes)}), the limit for a dataset; upload a smaller sample"
                )
        if not inflater.eof:
            raise DatasetError(
                "dataset looks gzip-compressed (it starts with the gzip magic bytes) but the compressed data "
                "ends early: the file is truncated; upload it again"
            )
        pos -= len(inflater.unused_data)
    return memoryview(out)


def _check_text(text: memoryview, empty: str) -> int:
    """DatasetError unless ``text`` is UTF-8 with something besides white space (a BOM aside).

    Returns an upper bound of the number of records: line terminators + 1.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    blank = True
    n = len(text)
    terminators = 0
    for start in range(0, max(n, 1), _STEP):
        piece = np.frombuffer(text[start:start + _STEP], dtype=np.uint8)
        terminators += int(np.count_nonzero(piece == 10)) + int(np.count_nonzero(piece == 13))
        pending = len(decoder.getstate()[0])
        try:
            chunk = decoder.decode(text[start:start + _STEP], start + _STEP >= n)
        except UnicodeDecodeError as exc:
            at = start - pending + exc.start
            line = bytes(text[:at]).count(b"\n") + 1
            raise DatasetError(
                f"dataset is not UTF-8 text: byte {at} (line {line}) is {bytes(text[at:at + 1])!r}; "
                "save the file as UTF-8 CSV"
            ) from None
        if blank:
            if start == 0 and chunk.startswith("\ufeff"):
                chunk = chunk[1:]
            blank = not chunk.strip()
    if blank:
        raise DatasetError(empty)
    return terminators + 1


def _head(text: memoryview | bytes) -> tuple[str, bool]:
    """The first lines of the file, decoded, and whether that is the whole file."""
    size = 1 << 16
    while True:
        head = bytes(text[:size])
        complete = len(head) >= len(text)
        if complete or head.count(b"\n") + head.count(b"\r") >= 60 or size >= 1 << 24:
            break
        size *= 4
    return head.decode("utf-8-sig", errors="ignore"), complete


class _MemoryReader(io.RawIOBase):
    """A read-only binary stream over a memoryview (``io.BytesIO`` would copy a bytearray)."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), len(self._view) - self._pos)
        buffer[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n


def _read_chunks(text: memoryview, delimiter: str) -> Iterator[tuple[list[int], list[list[str]]]]:
    """The non-blank records as ``(lines, rows)`` chunks of at most ``_CHUNK_ROWS``: the header
    alone first, then the data rows. A record's line is the line it starts on.

    The bytes are decoded as they are read (universal newlines kept for the CSV reader).
    """
    stream = io.TextIOWrapper(io.BufferedReader(_MemoryReader(text), 1 << 16), encoding="utf-8-sig", newline="")
    reader = csv.reader(stream, delimiter=delimiter, strict=False)
    header = False
    rows: list[list[str]] = []
    lines: list[int] = []
    start = 1
    try:
        for row in reader:
            line = start
            start = reader.line_num + 1
            if len(row) < 2 and (not row or not row[0].strip()):
                if not header:
                    raise DatasetError(
                        f"no header: line {line} is empty; expected the first line to be the column names"
                    )
                continue
            if not header:
                header = True
                yield [line], [row]
                continue
            rows.append(row)
            lines.append(line)
            if len(rows) >= _CHUNK_ROWS:
                yield lines, rows
                rows, lines = [], []
    except csv.Error as exc:
        raise DatasetError(f"line {reader.line_num}: the CSV cannot be read ({exc})") from None
    if rows:
        yield lines, rows


def _reread_prefixes(text: memoryview, delimiter: str, columns: dict[int, _Column]) -> None:
    """Fill in the codes of each column's first ``mixed_at`` rows from a second read of the file."""
    end = max(c.mixed_at for c in columns.values())
    chunks = _read_chunks(text, delimiter)
    next(chunks)
    offset = 0
    for _, rows in chunks:
        if offset >= end:
            break
        for j, column in columns.items():
            stop = min(len(rows), column.mixed_at - offset)
            if stop > 0:
                column.prefix_codes(offset, [row[j] for row in rows[:stop]])
        offset += len(rows)


def _check_header(header: list[str], line: int) -> list[str]:
    names = [h.strip() for h in header]
    if all(_NUMBER_RE.match(n) for n in names):
        raise DatasetError(
            f"no header: line {line} holds numbers ({_names_short(names)}), not column names; "
            "expected the first line to name the columns"
        )
    if len(names) > 1 and names[0] in _INDEX_NAMES:
        what = "blank column name" if not names[0] else f"column {names[0]!r}"
        raise DatasetError(
            f"{what} in the header (line {line}) at position 1: it looks like an index column written by "
            "pandas; drop it or save with index=False (DataFrame.to_csv(path, index=False))"
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


def _classify(cell: str) -> tuple[int, float]:
    """A cell's kind (missing, finite number, number too large, inf literal, other) and value."""
    s = cell.strip()
    if s in NA_VALUES:
        return _MISSING, math.nan
    if _NUMBER_RE.match(s):
        x = float(s)
        return (_FINITE, x) if math.isfinite(x) else (_OVERFLOW, x)
    low = s.lower()
    if low in _NAN_TOKENS:
        return _MISSING, math.nan
    if low in _INF_TOKENS:
        return _INF, math.nan
    return _OTHER, math.nan


def _fast_numbers(cells: Sequence[str]) -> np.ndarray | None:
    """The float64 values of a chunk of cells that are all plain numbers or missing (NaN), with
    every number finite; None when any cell is something else (then each cell is looked at)."""
    joined = "".join(cells)
    # float() also takes underscores, non-ASCII digits and inf/nan words: those go the slow way.
    if not joined.isascii() or "_" in joined:
        return None
    try:
        values = np.fromiter(map(float, map(_AS_NAN, cells, cells)), np.float64, len(cells))
    except ValueError:
        return None
    if np.isinf(values).any():
        return None
    return values


class _Column:
    """One column while the file is read: float64 values while every cell is a number or missing;
    from the first other cell on (or from the start, ``codes=True``), an int32 code per cell
    into the column's distinct values, each ``str`` kept once. Both are preallocated arrays of
    ``capacity`` rows, written chunk by chunk."""

    def __init__(self, capacity: int, codes: bool = False) -> None:
        self.capacity = capacity
        self.rows = 0
        self.missing = 0  # missing cells before mixed_at
        self.missing_rows: list[int] = []  # the first few of them
        self.problems = 0  # inf literals and too-large numbers before mixed_at
        self.first_problem: tuple[int, str] | None = None
        self.first_big: tuple[int, str] | None = None  # finite, beyond float32
        self.values: np.ndarray | None = None if codes else np.empty(capacity, dtype=np.float64)
        self.mixed_at: int | None = 0 if codes else None
        self.index: dict[str, int] = {}
        self.uniques: list[str] = []
        self.codes: np.ndarray | None = np.empty(capacity, dtype=np.int32) if codes else None
        self.kinds: np.ndarray | None = None
        self.counts: np.ndarray | None = None

    @property
    def prefix_present(self) -> int:
        """Cells before ``mixed_at`` that are not missing (numbers: their text is not kept)."""
        return 0 if self.mixed_at is None else self.mixed_at - self.missing

    # -- reading

    def feed(self, cells: Sequence[str], offset: int) -> None:
        self.rows += len(cells)
        if self.mixed_at is not None:
            self._feed_codes(cells, offset)
            return
        values = _fast_numbers(cells)
        if values is None:
            self._feed_slow(cells, offset)
            return
        gaps = np.isnan(values)
        n_gaps = int(np.count_nonzero(gaps))
        if n_gaps:
            self.missing += n_gaps
            if len(self.missing_rows) < 5:
                self.missing_rows += (np.flatnonzero(gaps)[:5] + offset).tolist()
        if self.first_big is None:
            with np.errstate(invalid="ignore"):
                big = np.abs(values) > FLOAT32_MAX
            if big.any():
                i = int(np.argmax(big))
                self.first_big = (offset + i, cells[i])
        assert self.values is not None
        self.values[offset:offset + len(values)] = values

    def _feed_slow(self, cells: Sequence[str], offset: int) -> None:
        assert self.values is not None
        values = self.values[offset:offset + len(cells)]
        values[:] = np.nan
        for i, cell in enumerate(cells):
            kind, x = _classify(cell)
            if kind == _FINITE:
                values[i] = x
                if self.first_big is None and abs(x) > FLOAT32_MAX:
                    self.first_big = (offset + i, cell)
            elif kind == _MISSING:
                self.missing += 1
                if len(self.missing_rows) < 5:
                    self.missing_rows.append(offset + i)
            elif kind == _OTHER:
                # Text: the column is a string column or a numeric one with a mistake. Its
                # numbers are no longer needed; codes from here on.
                self.values = None
                self.mixed_at = offset + i
                self.codes = np.empty(self.capacity, dtype=np.int32)
                self.codes[: self.mixed_at] = -1  # numbers or missing: see prefix_codes
                self._feed_codes(cells[i:], offset + i)
                return
            else:
                self.problems += 1
                if self.first_problem is None:
                    self.first_problem = (offset + i, cell)

    def _code(self, cell: str) -> int:
        code = self.index.get(cell)
        if code is None:
            code = self.index[cell] = len(self.uniques)
            self.uniques.append(cell)
        return code

    def _feed_codes(self, cells: Sequence[str], offset: int) -> None:
        got = list(map(self.index.get, cells))
        if None in got:
            code = self._code
            got = [code(c) if g is None else g for c, g in zip(cells, got)]
        assert self.codes is not None
        self.codes[offset:offset + len(got)] = got

    def close(self, n_rows: int) -> None:
        """End of the file: trim to ``n_rows``; count the distinct values by kind."""
        assert self.rows == n_rows
        if self.values is not None:
            self.values = self.values[:n_rows]
        if self.mixed_at is None:
            return
        assert self.codes is not None
        codes = self.codes = self.codes[:n_rows]
        self.kinds = np.array([_classify(u)[0] for u in self.uniques], dtype=np.int8).reshape(-1)
        self.counts = np.bincount(codes[self.mixed_at:], minlength=len(self.uniques))

    def prefix_codes(self, offset: int, cells: list[str]) -> None:
        assert self.codes is not None and self.kinds is not None
        code = self._code
        known = len(self.uniques)
        self.codes[offset:offset + len(cells)] = [code(c) for c in cells]
        if len(self.uniques) > known:
            extra = [_classify(u)[0] for u in self.uniques[known:]]
            self.kinds = np.concatenate([self.kinds, np.array(extra, dtype=np.int8)])

    # -- after reading

    def _count(self, kinds: tuple[int, ...]) -> int:
        assert self.kinds is not None and self.counts is not None
        known = self.kinds[: len(self.counts)]  # values first met in a re-read prefix are not counted here
        return int(self.counts[np.isin(known, kinds)].sum()) if len(known) else 0

    def _first_row(self, kinds: tuple[int, ...]) -> int | None:
        """The first row from ``mixed_at`` on whose cell is of one of ``kinds``."""
        assert self.codes is not None and self.kinds is not None
        if not len(self.kinds):
            return None
        wanted = np.isin(self.kinds, kinds)
        if not wanted.any():
            return None
        tail = self.codes[self.mixed_at:]
        hits = np.flatnonzero(wanted[tail])
        return int(hits[0]) + int(self.mixed_at) if hits.size else None

    def _rows_of(self, kinds: tuple[int, ...], limit: int) -> list[int]:
        assert self.codes is not None and self.kinds is not None
        if not len(self.kinds):
            return []
        wanted = np.isin(self.kinds, kinds)
        return (np.flatnonzero(wanted[self.codes[self.mixed_at:]])[:limit] + int(self.mixed_at)).tolist()

    def _text(self, row: int) -> str:
        assert self.codes is not None
        return self.uniques[int(self.codes[row])]

    def tally(self) -> tuple[int, int, int, tuple[int, str] | None]:
        """``(present, numeric, problems, first problem (row, text))`` over the whole column."""
        if self.mixed_at is None:
            present = self.rows - self.missing
            return present, present, self.problems, self.first_problem
        bad = (_OVERFLOW, _INF, _OTHER)
        present = self.prefix_present + (self.rows - self.mixed_at) - self._count((_MISSING,))
        numeric = self.prefix_present + self._count((_FINITE, _OVERFLOW, _INF))
        problems = self.problems + self._count(bad)
        first = self.first_problem
        if first is None:
            row = self._first_row(bad)
            first = None if row is None else (row, self._text(row))
        return present, numeric, problems, first

    def decide(self) -> str:
        present, numeric, _, _ = self.tally()
        return NUMBER if present and numeric >= NUMERIC_SHARE * present else STRING

    def numbers(self) -> np.ndarray:
        assert self.values is not None
        values, self.values = self.values, None
        return values

    def strings(self) -> np.ndarray:
        """The object column: the shared ``str`` of each cell, ``None`` when missing."""
        assert self.codes is not None and self.kinds is not None
        table = np.empty(len(self.uniques) + 1, dtype=object)  # the last entry (code -1) is None
        for code, (value, kind) in enumerate(zip(self.uniques, self.kinds.tolist())):
            table[code] = None if kind == _MISSING else value
        return table[self.codes]

    def result(
        self, name: str, kind: str, line_of: np.ndarray, max_categories: int | None
    ) -> tuple[np.ndarray, dict[str, Any], int]:
        present, numeric, problems, first = self.tally()
        n_missing = self.rows - present
        if present == 0:
            raise DatasetError(
                f"column {name!r} has no values (every cell is empty); fill it in or remove the column"
            )
        if kind == NUMBER:
            # A numeric column: every non-missing cell must be a finite, float32-sized number.
            if problems:
                assert first is not None
                row, cell = first
                what_kind = _classify(cell)[0]
                if what_kind == _INF:
                    what, expected = "an infinite value", "a finite number"
                elif what_kind == _OVERFLOW:
                    what, expected = "a number too large to represent", "a finite number"
                else:
                    what, expected = "a value that is not a number", "a number"
                raise DatasetError(
                    f"column {name!r} is numeric ({present - problems} of {present} values are numbers) but line "
                    f"{line_of[row]} has {what}: {_short(cell)}; expected {expected}, or an empty cell for a "
                    f"missing value ({problems} such value{'s' if problems > 1 else ''} in the column)"
                )
            if self.first_big is not None:
                row, cell = self.first_big
                raise DatasetError(
                    f"column {name!r}: line {line_of[row]} has {_short(cell)}, which is out of range; "
                    f"expected a magnitude of at most {FLOAT32_MAX:.4g} (the model takes float32)"
                )
            return self.numbers(), {"name": name, "type": NUMBER}, n_missing

        assert self.codes is not None and self.kinds is not None
        counts = np.bincount(self.codes[self.codes >= 0], minlength=len(self.uniques))
        categories = sorted(
            u for u, k, c in zip(self.uniques, self.kinds.tolist(), counts.tolist()) if c and k != _MISSING
        )
        if max_categories is not None and len(categories) > max_categories:
            raise DatasetError(
                f"column {name!r} is a string column with {len(categories):,} distinct values, more than the "
                f"limit of {max_categories:,}; is it an identifier? Remove it, or bucket its values"
            )
        return self.strings(), {"name": name, "type": STRING, "categories": categories}, n_missing


# Rows without a target are dropped (and counted in lineage) while they are at most this share of
# the file: a few unlabelled rows are normal in real data (Palmer penguins has 2 of 344); more
# points to a broken export, which is refused.
MAX_MISSING_TARGET_SHARE = 0.1


def _rows_with_target(name: str, column: _Column, line_of: np.ndarray) -> np.ndarray | None:
    """A mask of the rows that have a target, or None when every row has one.

    Raises the "every row needs a target" error past MAX_MISSING_TARGET_SHARE, or when every row
    lacks one."""
    if column.mixed_at is None:  # numbers (a regression target so far)
        if column.problems:
            return None  # NaN also stands for an infinite or oversized value: _target reports it
        assert column.values is not None
        missing = np.isnan(column.values[: column.rows])
    elif column.mixed_at == 0:  # codes from the first row (a class label, or text)
        assert column.codes is not None and column.kinds is not None
        missing = column.kinds[column.codes] == _MISSING
    else:
        return None  # numbers then text: _target reports the text (and any gap)
    n_gaps = int(np.count_nonzero(missing))
    if not n_gaps:
        return None
    if n_gaps <= MAX_MISSING_TARGET_SHARE * column.rows and n_gaps < column.rows:
        return ~missing
    gaps = [int(line_of[r]) for r in np.flatnonzero(missing)[:5]]
    shown = ", ".join(map(str, gaps)) + (f", ... ({n_gaps} in all)" if n_gaps > 5 else "")
    raise DatasetError(
        f"target column {name!r} has {n_gaps} missing value{'s' if n_gaps > 1 else ''} "
        f"(line{'s' if n_gaps > 1 else ''} {shown}); every row needs a target: "
        f"fill them in or remove those rows (up to {MAX_MISSING_TARGET_SHARE:.0%} of the rows may lack one: "
        "those rows are left out, and lineage counts them)"
    )


def _target(name: str, task: str, column: _Column, line_of: np.ndarray,
            keep: np.ndarray | None = None) -> tuple[np.ndarray, list | None]:
    if keep is not None:
        return _target_of_rows(name, task, column, keep)
    n = column.rows
    if column.mixed_at is None:
        gap_rows, n_gaps = column.missing_rows, column.missing
    else:
        gap_rows = sorted(column.missing_rows + column._rows_of((_MISSING,), 5))[:5]
        n_gaps = column.missing + column._count((_MISSING,))
    if n_gaps:
        gaps = [int(line_of[r]) for r in gap_rows]
        shown = ", ".join(map(str, gaps)) + (f", ... ({n_gaps} in all)" if n_gaps > 5 else "")
        raise DatasetError(
            f"target column {name!r} has {n_gaps} missing value{'s' if n_gaps > 1 else ''} "
            f"(line{'s' if n_gaps > 1 else ''} {shown}); every row needs a target: "
            "fill them in or remove those rows"
        )
    if task == "regression":
        _, _, problems, first = column.tally()
        if problems:
            assert first is not None
            row, cell = first
            raise DatasetError(
                f"regression target {name!r} must be numeric: {problems} of {n} values are not "
                f"finite numbers, the first on line {line_of[row]}: {_short(cell)}; expected a number on "
                "every row (or task 'classification')"
            )
        values = column.numbers()
        if np.all(values == values[0]):
            raise DatasetError(
                f"regression target {name!r} is constant ({values[0]:g} on every row); there is nothing to learn"
            )
        return values, None

    assert column.codes is not None
    labels: np.ndarray
    table: np.ndarray
    uniques = column.uniques
    if all(_INT_RE.match(u.strip()) for u in uniques):
        ints = [int(u.strip()) for u in uniques]
        if all(_INT64_MIN <= v <= _INT64_MAX for v in ints):
            table = np.asarray(ints, dtype=np.int64)
        else:
            table = _object_array(uniques)
    else:
        table = _object_array(uniques)
    labels = table[column.codes]
    classes = sorted(set(table.tolist()))
    if len(classes) < 2:
        raise DatasetError(
            f"classification needs at least 2 classes, but target column {name!r} has only one: "
            f"{classes[0]!r} on every row"
        )
    return labels, classes


def _target_of_rows(name: str, task: str, column: _Column, keep: np.ndarray) -> tuple[np.ndarray, list | None]:
    """The target of the rows in ``keep`` (the rows that have one; see _rows_with_target)."""
    if task == "regression":
        if column.mixed_at is not None:
            raise DatasetError(
                f"regression target {name!r} must be numeric: it holds text; expected a number on every row "
                "(or task 'classification')"
            )
        values = column.numbers()[keep]
        if np.all(values == values[0]):
            raise DatasetError(
                f"regression target {name!r} is constant ({values[0]:g} on every row); there is nothing to learn"
            )
        return values, None
    assert column.codes is not None
    codes = column.codes[keep]
    used = np.unique(codes)
    texts = [column.uniques[int(c)] for c in used]
    if all(_INT_RE.match(u.strip()) for u in texts) and all(_INT64_MIN <= int(u) <= _INT64_MAX for u in texts):
        values: list[Any] = [int(u.strip()) for u in texts]
        table = np.zeros(len(column.uniques), dtype=np.int64)
    else:
        values = texts
        table = np.empty(len(column.uniques), dtype=object)
    table[used] = values
    labels = table[codes]
    classes = sorted(set(values))
    if len(classes) < 2:
        raise DatasetError(
            f"classification needs at least 2 classes, but target column {name!r} has only one: "
            f"{classes[0]!r} on every row"
        )
    return labels, classes


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
