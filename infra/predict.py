"""``shipyard predict``: a file of any length through the API, in requests the API accepts.

Reading
    A CSV (``.csv``, ``.csv.gz``) is read by the training data's reader
    (``functions.core.dataset.read_table``: UTF-8 with or without a BOM, comma/semicolon/tab/pipe,
    the header checks); cells become JSON values with ``cell_value`` (numbers, text, missing ->
    null). A JSON file is a list of instances or ``{"instances": [...]}``. Every row keeps where it
    came from: its file line (CSV) or its index (JSON), for messages and the output.

Requests
    At most ``--batch-size`` rows per request (default ``API_MAX_INSTANCES``, the inference
    function's ``MAX_INSTANCES`` default). A stack deployed with a lower limit answers 413 "at
    most N": the rest is sent N at a time (a 413 without a number, API Gateway's payload limit,
    halves the size). The first answer's version pins every later request (``?version=V``), so a
    promotion during a long file never splits it across two versions. Progress goes to stderr when
    there is more than one request.

Refused rows
    The API refuses a whole request for its first bad instance (400 "instance 17: ..."). That row
    is reported (request index -> file line, and the API's reason), left out, and the rest of the
    request is sent again; at most ``MAX_REFUSED_PER_REQUEST`` rows per request (more means the
    file is wrong, not a row). A refusal that is about the columns (unknown or missing features
    of a CSV: every row has them) and any other error (403, 404, 409, 5xx, ...) stop at once;
    the rows not sent are reported. Either way what succeeded is printed / written and the exit
    status is 1 (``PredictResult.complete`` is False).

``--id-column NAME``
    A column that names each row (a customer id, ...): not sent to the model, printed and
    written beside each prediction, as the text written in the file (``007`` stays ``007``). It
    is an error if the file has no such column, or if the model itself has a feature of that
    name (its values are the model's input, not a label for the row: use another column).

``--ids-from NAME``
    The same, and the column's values are also sent as the caller's inference ids (``"ids"``
    beside ``"instances"``): the API answers and captures them, so ground-truth labels written
    later with the same ids join the captured predictions. Checked before anything is sent: each
    1 to 128 printable characters, unique in the file. ``--id-column`` alone sends no ids (a
    column of any values keeps working as it did); the API's generated ids are written either way.

Output
    Every predicted row carries its ``inference_id`` (the CSV's last column, ``inference_ids`` in
    JSON): the caller's id with ``--ids-from``, else the one the API generated.
"""
from __future__ import annotations

import csv
import json
import re
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functions.core.layout import DEFAULT_MAX_INSTANCES
from infra.apiclient import json_answer, signed_request

# the most instances one predict request may carry (docs/api.md "413")
API_MAX_INSTANCES = DEFAULT_MAX_INSTANCES
# A request of which more rows than this are refused one by one: the file is wrong, stop.
MAX_REFUSED_PER_REQUEST = 10
# 429 (API-key throttling): retried this many times, waiting 1, 2, 4 … s.
THROTTLE_RETRIES = 5

_INSTANCE_RE = re.compile(r"^instances? \[?(\d+(?:, \d+)*)\]?:? ?")
_AT_MOST_RE = re.compile(r"at most (\d+) are accepted")


class PredictError(Exception):
    """A failure the user can act on (``shipyard`` prints it as one line, exit 1)."""


# --------------------------------------------------------------------------- reading


@dataclass
class Table:
    """The rows of an input file: ``instances`` (what the API is sent, one per row), ``columns``
    (the CSV header, or the keys of JSON records; None for JSON arrays), ``lines`` (each CSV row's
    file line; None for JSON), and ``cells`` (each CSV row's cells as written)."""

    path: str
    instances: list
    columns: list[str] | None = None
    lines: list[int] | None = None
    cells: list[list[str]] | None = None

    def where(self, row: int) -> str:
        """Where row ``row`` is in the file: ``line 17`` (CSV) or ``instance 16`` (JSON)."""
        return f"line {self.lines[row]}" if self.lines is not None else f"instance {row}"

    def column_text(self, name: str) -> list[str]:
        """Column ``name`` of every row as written in the file (JSON: the record's value)."""
        if self.cells is not None and self.columns is not None:
            j = self.columns.index(name)
            return [row[j] for row in self.cells]
        return ["" if i.get(name) is None else str(i.get(name)) for i in self.instances]

    def without(self, name: str) -> None:
        """Leave column ``name`` out of the instances (not out of ``columns``/``cells``)."""
        self.instances = [{k: v for k, v in i.items() if k != name} if isinstance(i, dict) else i
                          for i in self.instances]


def read_table(path: Path) -> Table:
    """An input file as a :class:`Table`; :class:`PredictError` naming the file on any problem."""
    name = path.name.lower()
    if not name.endswith((".json", ".csv", ".csv.gz")):
        raise PredictError(f"{path}: expected a .csv or .json file (or a gzip-compressed .csv.gz)")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PredictError(f"cannot read {path}: {err.strerror}") from err
    if name.endswith(".json"):
        try:
            parsed = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise PredictError(f"{path} is not valid JSON: {err}") from err
        instances = parsed.get("instances") if isinstance(parsed, dict) else parsed
        if not isinstance(instances, list):
            raise PredictError(f"{path}: expected a JSON list of instances or an object with an 'instances' list")
        columns = None
        if instances and all(isinstance(i, dict) for i in instances):
            columns = list(dict.fromkeys(k for i in instances for k in i))
        return Table(str(path), instances, columns)
    from functions.core.dataset import DatasetError, cell_value
    from functions.core.dataset import read_table as read_csv

    try:
        names, records = read_csv(data)
    except DatasetError as err:
        raise PredictError(f"{path}: {err}") from err
    if not records:
        raise PredictError(f"{path}: expected a header row and at least one data row")
    instances = [{k: cell_value(v) for k, v in zip(names, row)} for _, row in records]
    return Table(str(path), instances, list(names), [line for line, _ in records], [row for _, row in records])


# --------------------------------------------------------------------------- the API


@dataclass
class Api:
    """The stack's HTTP API, with the auth ``shipyard predict`` was given. ``send`` is
    :func:`infra.apiclient.signed_request` (a stand-in in unit tests)."""

    base_url: str
    auth: str
    api_key: str | None = None
    send: Callable[..., tuple[int, dict, bytes]] = signed_request
    sleep: Callable[[float], None] = time.sleep

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict]:
        url = self.base_url.rstrip("/") + path
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(THROTTLE_RETRIES + 1):
            status, _headers, raw = self.send(method, url, data, self.auth, api_key=self.api_key)
            if status != 429 or attempt == THROTTLE_RETRIES:
                break
            self.sleep(2 ** attempt)
        answer = json_answer(raw)
        return status, answer if isinstance(answer, dict) else {"message": str(answer)}

    @staticmethod
    def model_path(model: str) -> str:
        return f"/models/{urllib.parse.quote(model, safe='')}"

    def version_record(self, model: str, version: int | None) -> dict:
        """The record of ``version`` (production's when None) via ``GET /models/{name}[/versions/{v}]``."""
        if version is None:
            status, answer = self.call("GET", self.model_path(model))
            if status != 200:
                raise PredictError(f"the API answered {status}: {answer.get('message', answer)}")
            version = (answer.get("aliases") or {}).get("production")
            if version is None:
                raise PredictError(f"model {model!r} has no production version yet; name one with --version N")
        status, answer = self.call("GET", f"{self.model_path(model)}/versions/{int(version)}")
        if status == 404:
            known = self._versions(model)
            listed = f" (its versions: {', '.join(map(str, known))})" if known else ""
            raise PredictError(f"model {model!r} has no version {version}{listed}: {answer.get('message', answer)}")
        if status != 200:
            raise PredictError(f"the API answered {status}: {answer.get('message', answer)}")
        return answer

    def _versions(self, model: str) -> list[int]:
        status, answer = self.call("GET", self.model_path(model))
        if status != 200:
            return []
        return [v.get("version") for v in answer.get("versions") or [] if v.get("version") is not None]


# --------------------------------------------------------------------------- requests


def batches(n: int, size: int) -> list[range]:
    """Rows ``0..n-1`` in consecutive requests of at most ``size`` rows."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def refused_instances(message: str, n: int) -> list[int] | None:
    """The request's instance indices a 400 message names (``instance 17: …``, ``instances [3, 5]
    gave …``), or None when it names none (or one outside the request)."""
    m = _INSTANCE_RE.match(message or "")
    if not m:
        return None
    found = sorted({int(x) for x in m.group(1).split(", ")})
    return found if found and found[-1] < n else None


def reason_of(message: str) -> str:
    """The API's message without its leading ``instance 17:``."""
    return _INSTANCE_RE.sub("", message or "", count=1) or message


def _about_columns(message: str) -> bool:
    return "unknown features" in message or "missing features" in message


@dataclass
class Refusal:
    row: int          # index in the table
    request: int      # 1-based request number
    where: str        # "line 1019" / "instance 16"
    message: str


@dataclass
class Stop:
    request: int      # 1-based request number
    span: str         # "lines 1002-2001"
    status: int
    message: str

    def __str__(self) -> str:
        return f"request {self.request} ({self.span}): the API answered {self.status}: {self.message}"


@dataclass
class PredictResult:
    """One prediction per row (None where the API did not give one)."""

    model: str
    rows: int
    version: int | None = None
    classes: list | None = None
    predictions: list = field(default_factory=list)
    probabilities: list | None = None
    inference_ids: list = field(default_factory=list)  # the API's inference_id of each row (None: not predicted)
    requests: int = 0
    refused: list[Refusal] = field(default_factory=list)
    stopped: Stop | None = None     # why the run stopped early
    unsent: list[int] = field(default_factory=list)  # rows never predicted because it stopped

    @property
    def predicted(self) -> list[int]:
        return [r for r, p in enumerate(self.predictions) if p is not None]

    @property
    def complete(self) -> bool:
        return not self.refused and not self.unsent and self.stopped is None


def predict_rows(api: Api, model: str, table: Table, *, version: int | None = None,
                 batch_size: int = API_MAX_INSTANCES,
                 progress: Callable[[str], None] | None = None,
                 ids: Sequence[str] | None = None) -> PredictResult:
    """Predict every row of ``table`` (see the module's docstring for the request rules); ``ids``
    (one per row), when given, are sent as the caller's inference ids."""
    instances = table.instances
    n = len(instances)
    result = PredictResult(model, n, version=version, predictions=[None] * n, inference_ids=[None] * n)
    size = max(1, batch_size)
    pos = request = 0
    while pos < n:
        request += 1
        rows = list(range(pos, min(pos + size, n)))
        refused_here = 0
        resplit = False
        while rows:
            path = f"{Api.model_path(model)}/predict"
            if result.version is not None:
                path += f"?version={result.version}"
            body: dict[str, Any] = {"instances": [instances[r] for r in rows]}
            if ids is not None:
                body["ids"] = [ids[r] for r in rows]
            status, answer = api.call("POST", path, body)
            result.requests += 1
            if status == 200:
                _store(result, rows, answer)
                break
            message = str(answer.get("message", answer))
            if status == 413 and len(rows) > 1:
                m = _AT_MOST_RE.search(message)
                size = max(1, min(int(m.group(1)), len(rows) - 1) if m else len(rows) // 2)
                resplit = True
                if progress:
                    progress(f"the API takes at most {size} rows per request; sending {size} at a time")
                break
            indices = refused_instances(message, len(rows)) if status == 400 else None
            file_level = indices is not None and table.cells is not None and _about_columns(message)
            if indices is None or file_level or refused_here + len(indices) > MAX_REFUSED_PER_REQUEST:
                if indices is not None and not file_level:
                    message = (f"more than {MAX_REFUSED_PER_REQUEST} rows of one request refused, the last: "
                               f"{table.where(rows[indices[0]])}: {reason_of(message)}")
                result.stopped = Stop(request, _span(table, rows), status, message)
                refused = {x.row for x in result.refused}
                result.unsent = [r for r in range(rows[0], n) if result.predictions[r] is None and r not in refused]
                return result
            for i in indices:
                result.refused.append(Refusal(rows[i], request, table.where(rows[i]), reason_of(message)))
            refused_here += len(indices)
            gone = {rows[i] for i in indices}
            rows = [r for r in rows if r not in gone]
        if resplit:  # the same rows again, `size` at a time
            request -= 1
            continue
        pos = min(pos + size, n)
        if progress and n > size:
            done = sum(p is not None for p in result.predictions)
            progress(f"request {request}/{request - (-(n - pos) // size)}: {done:,} of {n:,} rows predicted")
    return result


def _store(result: PredictResult, rows: list[int], answer: dict) -> None:
    predictions = answer.get("predictions") or []
    if len(predictions) != len(rows):
        raise PredictError(f"the API answered {len(predictions)} predictions for {len(rows)} instances")
    if result.version is None:
        result.version = answer.get("version")
    if answer.get("classes") is not None and result.classes is None:
        result.classes = list(answer["classes"])
    probabilities = answer.get("probabilities")
    if probabilities is not None and result.probabilities is None:
        result.probabilities = [None] * result.rows
    inference_ids = answer.get("inference_ids")
    if not isinstance(inference_ids, list) or len(inference_ids) != len(rows):
        inference_ids = None  # an API deployed before inference ids
    for k, r in enumerate(rows):
        result.predictions[r] = predictions[k]
        if inference_ids is not None:
            result.inference_ids[r] = inference_ids[k]
        if probabilities is not None:
            result.probabilities[r] = probabilities[k]


def _span(table: Table, rows: Sequence[int]) -> str:
    if table.lines is not None:
        first, last = table.lines[rows[0]], table.lines[rows[-1]]
        return f"line {first}" if first == last else f"lines {first}-{last}"
    return f"instance {rows[0]}" if len(rows) == 1 else f"instances {rows[0]}-{rows[-1]}"


def _lines_short(table: Table, rows: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(table.where(r).split(" ", 1)[1] for r in rows[:limit])
    return shown + (f", … ({len(rows)} in all)" if len(rows) > limit else "")


def report_problems(table: Table, result: PredictResult, err=None) -> None:
    """What was refused or not sent, on stderr: which rows and why."""
    err = err or sys.stderr
    for x in result.refused:
        print(f"shipyard: request {x.request}: {x.where} refused: {x.message}", file=err)
    if result.stopped:
        print(f"shipyard: stopped at {result.stopped}", file=err)
    if result.unsent:
        kind = "lines" if table.lines is not None else "instances"
        print(f"shipyard: {len(result.unsent)} row{'s' if len(result.unsent) != 1 else ''} not predicted "
              f"({kind} {_lines_short(table, result.unsent)})", file=err)


# --------------------------------------------------------------------------- id column and target


def split_id_column(table: Table, id_column: str, features: Sequence[str] | None, model: str,
                    flag: str = "--id-column") -> list[str]:
    """The id of every row (the column's text), left out of what is sent.

    PredictError when the file has no such column, or the model has a feature of that name."""
    if table.columns is None:
        raise PredictError(f"{table.path}: {flag} needs named columns (a CSV, or JSON records), "
                           "not arrays")
    if id_column not in table.columns:
        hint = [c for c in table.columns if c.strip().lower() == id_column.strip().lower()]
        did_you_mean = f" (did you mean {hint[0]!r}? names are case-sensitive)" if hint else ""
        raise PredictError(f"{table.path}: no column {id_column!r} for {flag}{did_you_mean}; "
                           f"the columns are {table.columns}")
    if features is not None and id_column in features:
        raise PredictError(f"{flag} {id_column!r} is a feature of model {model!r}: its values are the "
                           "model's input, not a label for the row; name a column the model does not take")
    ids = table.column_text(id_column)
    table.without(id_column)
    return ids


MAX_ID_LENGTH = 128  # the API's limit on an inference id (docs/api.md, "Predict")


def check_ids(table: Table, ids: Sequence[str], column: str) -> None:
    """``--ids-from``: every id is what the API accepts (1 to 128 printable characters) and unique in the
    file (the API refuses a repeat within a request; labels join on them across requests), else
    PredictError naming the row, before anything is sent."""
    first: dict[str, int] = {}
    for r, one in enumerate(ids):
        if not (0 < len(one) <= MAX_ID_LENGTH and one.isprintable()):
            raise PredictError(f"{table.path}: {table.where(r)}: --ids-from {column!r} value {one[:40]!r} is not an "
                               f"inference id; expected 1 to {MAX_ID_LENGTH} printable characters")
        if one in first:
            raise PredictError(f"{table.path}: {table.where(r)}: --ids-from {column!r} value {one[:40]!r} repeats "
                               f"{table.where(first[one])}; inference ids must be unique (use --id-column to "
                               "keep a column that is not)")
        first[one] = r


def drop_target(table: Table, target: str | None, model: str, err=None) -> None:
    """A file shaped like the training data carries the target column: the model does not take it."""
    err = err or sys.stderr
    if not target or not any(isinstance(i, dict) and target in i for i in table.instances):
        return
    print(f"shipyard: leaving out column {target!r} (the target of {model!r})", file=err)
    table.without(target)


# --------------------------------------------------------------------------- output


def output_header(result: PredictResult, table: Table, id_column: str | None) -> list[str]:
    head = [id_column] if id_column else []
    head.append("line" if table.lines is not None else "instance")
    head.append("prediction")
    head += [f"probability_{c}" for c in (result.classes or [])] if result.probabilities else []
    head.append("version")
    head.append("inference_id")
    return head


def output_rows(result: PredictResult, table: Table, ids: list[str] | None) -> list[list[Any]]:
    """One row per predicted input row, in file order."""
    rows = []
    for r in result.predicted:
        row: list[Any] = [ids[r]] if ids is not None else []
        row.append(table.lines[r] if table.lines is not None else r)
        row.append(result.predictions[r])
        if result.probabilities:
            row += list(result.probabilities[r] or [])
        row.append(result.version)
        row.append(result.inference_ids[r] if result.inference_ids else None)
        rows.append(row)
    return rows


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    try:
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
    except OSError as err:
        raise PredictError(f"cannot write {path}: {err.strerror}") from err


def progress_printer(err=None) -> Callable[[str], None]:
    """Progress lines on stderr (rewritten in place on a terminal)."""
    err = err or sys.stderr
    tty = hasattr(err, "isatty") and err.isatty()

    def show(text: str) -> None:
        if tty:
            print(f"\rshipyard: {text}\x1b[K", end="", file=err, flush=True)
        else:
            print(f"shipyard: {text}", file=err, flush=True)
    show.tty = tty  # type: ignore[attr-defined]
    return show


# --------------------------------------------------------------------------- the command


def run_predict(args, api: Api, target: str | None) -> int:
    """``shipyard predict``: returns the exit status (0: every row predicted)."""
    from infra.commandline import _table

    if args.output and Path(args.output).resolve() == Path(args.file).resolve():
        raise PredictError(f"--output {args.output} is the input file: writing the predictions would replace "
                           "the data; name another file")
    table = read_table(Path(args.file))
    version = args.version
    ids = None
    ids_from = getattr(args, "ids_from", None)
    if ids_from and args.id_column and ids_from != args.id_column:
        raise PredictError(f"--id-column {args.id_column!r} and --ids-from {ids_from!r} name two columns; "
                           "--ids-from keeps its column beside each prediction too: give it alone")
    id_column = ids_from or args.id_column
    if id_column:
        record = api.version_record(args.model, version)
        version = int(record["version"]) if record.get("version") is not None else version
        schema = record.get("schema") or {}
        features = [f.get("name") for f in schema.get("features") or []]
        target = schema.get("target") or target
        ids = split_id_column(table, id_column, features, args.model, "--ids-from" if ids_from else "--id-column")
        if ids_from:
            check_ids(table, ids, ids_from)
    drop_target(table, target, args.model)
    progress = progress_printer()
    result = predict_rows(api, args.model, table, version=version, batch_size=args.batch_size, progress=progress,
                          ids=ids if ids_from else None)
    if getattr(progress, "tty", False) and result.requests > 1:
        print(file=sys.stderr)
    if not result.predicted and result.stopped and not result.refused:  # nothing to show: one line
        stop = result.stopped
        raise PredictError(f"the API answered {stop.status}: {stop.message}" if stop.request == 1 else str(stop))
    header = output_header(result, table, id_column)
    rows = output_rows(result, table, ids)
    if args.output:
        write_csv(Path(args.output), header, rows)
        print(f"model {args.model} v{result.version}: {len(rows):,} of {len(table.instances):,} rows predicted "
              f"in {result.requests} request{'s' if result.requests != 1 else ''}, written to {args.output}")
    elif args.json:
        answer: dict[str, Any] = {"model": args.model, "version": result.version,
                                  "predictions": [result.predictions[r] for r in result.predicted]}
        if result.probabilities:
            answer["probabilities"] = [result.probabilities[r] for r in result.predicted]
            answer["classes"] = result.classes
        if ids is not None:
            answer["ids"] = [ids[r] for r in result.predicted]
        answer["inference_ids"] = [result.inference_ids[r] for r in result.predicted]
        if table.lines is not None:
            answer["lines"] = [table.lines[r] for r in result.predicted]
        if not result.complete:
            answer["refused"] = [{"request": x.request, "where": x.where, "message": x.message}
                                 for x in result.refused]
            answer["not_predicted"] = [table.where(r) for r in result.unsent]
            if result.stopped:
                answer["stopped"] = str(result.stopped)
        print(json.dumps(answer, indent=2))
    else:
        print(f"model {args.model} v{result.version}")
        k = 3 if ids is not None else 2  # [id,] line/instance, prediction
        has_p = bool(result.probabilities)
        printed = [row[:k] + ([f"{max(result.probabilities[r]):.3f}"] if has_p else [])
                   for row, r in zip(rows, result.predicted)]
        print(_table(printed, header[:k] + (["probability"] if has_p else [])))
    report_problems(table, result)
    return 0 if result.complete else 1
