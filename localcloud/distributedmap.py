"""Step Functions Distributed Map states, run by the local cloud as AWS documents them.

moto's interpreter (an ANTLR copy of LocalStack's) parses a Map state with ``ProcessorConfig.Mode``
``DISTRIBUTED`` but its grammar has no ``ItemBatcher``, no ``"ExecutionType": "EXPRESS"`` and no
integer ``ToleratedFailurePercentage``, so such a definition cannot even be created; it reads CSV
only whole through getObject, and its ResultWriter writes an empty manifest. AWS docs followed here:
"Map state in Distributed mode", "ItemReader (Map)", "ItemBatcher (Map)", "ItemSelector (Map)",
"ResultWriter (Map)", "Examining Map Runs"; LocalStack's AWS-validated snapshots
(tests/aws/services/stepfunctions/v2/scenarios) for the exact events and reader errors.

How (`SEAM`): moto parses a definition when a state machine is created and again when each
execution starts (``AmazonStateLanguageParser.parse``). The seam rewrites the JSON first: each
DISTRIBUTED Map keeps what moto already applies as AWS does (``InputPath``, ``ResultSelector``,
``ResultPath``, ``OutputPath``, ``Retry``, ``Catch``, ``Next``/``End``, ``Assign``) and its
``ItemProcessor`` (parsed once per execution by moto, nested Distributed Maps rewritten too); the
fields this module runs (``ItemReader``, ``ItemsPath``, ``ItemSelector``/``Parameters``,
``ItemBatcher``, ``MaxConcurrency*``, ``ToleratedFailure*``, ``Label``, ``ResultWriter``, the
execution type) move into a registry keyed by a token put in the state's ``Comment``. The stored
definition is not touched: DescribeStateMachine returns the original. At run time moto's own
``StateMap`` evaluates the state (its events ``MapStateEntered``/``Failed``/``Exited``, retries,
catchers, the result path) and only its ``_eval_execution`` is replaced for these states by
`MapRun`: read the items, select and batch them, run each batch as a child execution of the
ItemProcessor's program with moto's interpreter (Lambda tasks reach the local Lambda runtime like
every other task), count failures against the threshold, write the results.

Cost: the child program is built from the states moto already parsed (no ANTLR parse per child);
a CSV is read once as a stream and batched lazily, at most `concurrency` + 1 batches in memory; a
batch's ``Items`` list is shared, not deep-copied, by moto's interpreter (it copies a state's input
at every step; the items are never written to, only read and serialized); children record no
event history (an express child has none to query in AWS either; a standard child's is not kept
locally), so their states do not serialize a batch for events nobody reads; a finished child
leaves only its output (or its result record). Two moto costs paid per child are cut for every
execution while the seam is installed: the boto3 client of a Lambda task is made once (moto made
one per invocation, ~5 ms), and jsonpath_ng's parses are cached. Children run on threads, at most
``MaxConcurrency`` and never more than the local cap (`LocalCloud.map_concurrency`, else the Lambda
runtime's per-function worker cap). Measured (2 shared cores, 1M-row 49 MB CSV, 2,000-row batches,
500 children): the runner alone (Pass children) 3.6-5.4 s; with a Lambda returning len(Items) 16 s
when each child's Lambda invoke of its 223 KiB input cost the parent ~25 ms; 12-13 s since the payload
is encoded once (localcloud/stepfunctions.py, lambda_runtime.py: ~11 ms an invoke).
"""
from __future__ import annotations

import codecs
import csv
import datetime
import functools
import hashlib
import io
import itertools
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from .patches import Seam

MARKER = "localcloud:distributed-map:"
# Fields this module evaluates; moto sees the Map without them.
OWN_FIELDS = ("ItemReader", "ItemsPath", "ItemSelector", "Parameters", "ItemBatcher", "MaxConcurrency",
              "MaxConcurrencyPath", "ToleratedFailureCount", "ToleratedFailureCountPath",
              "ToleratedFailurePercentage", "ToleratedFailurePercentagePath", "Label", "ResultWriter")
PAYLOAD_QUOTA = 262_144  # 256 KiB: a child's input, whatever MaxInputBytesPerBatch says
MAX_ITEMS_CAP = 100_000_000  # the reader stops there (AWS: "MaxItems", up to 100,000,000)
DEFAULT_CONCURRENCY_ENV = "LOCALCLOUD_MAP_CONCURRENCY"

_SPECS: dict[str, dict[str, Any]] = {}
_SPECS_LOCK = threading.Lock()


class MapError(Exception):
    """A Map run failure with AWS's error name and cause."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause


# ---------------------------------------------------------------------------------------- rewrite
def _register(spec: dict[str, Any]) -> str:
    token = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    with _SPECS_LOCK:
        _SPECS[token] = spec
    return token


def _rewrite_states(states: dict[str, Any], jsonata: bool) -> bool:
    changed = False
    for state in states.values():
        if not isinstance(state, dict):
            continue
        state_jsonata = state.get("QueryLanguage", "JSONata" if jsonata else "JSONPath") == "JSONata"
        if state.get("Type") == "Parallel":
            for branch in state.get("Branches") or []:
                changed |= _rewrite_states(branch.get("States") or {}, state_jsonata)
        if state.get("Type") != "Map":
            continue
        processor = state.get("ItemProcessor") or state.get("Iterator") or {}
        changed |= _rewrite_states(processor.get("States") or {}, state_jsonata)
        config = processor.get("ProcessorConfig") or {}
        if config.get("Mode") != "DISTRIBUTED" or state_jsonata:
            continue  # INLINE maps are moto's; JSONata Distributed Maps are not emulated (docs/local.md)
        spec = {k: state.pop(k) for k in OWN_FIELDS if k in state}
        spec["ExecutionType"] = config.get("ExecutionType", "STANDARD")
        spec["Comment"] = state.get("Comment")
        config["ExecutionType"] = "STANDARD"  # moto's grammar knows no EXPRESS; the child type is ours
        state["Comment"] = MARKER + _register(spec)
        changed = True
    return changed


def rewrite(definition: str) -> str:
    """The definition moto can parse: each JSONPath DISTRIBUTED Map without the fields run here."""
    if '"DISTRIBUTED"' not in definition:
        return definition
    try:
        document = json.loads(definition)
    except ValueError:
        return definition  # moto reports the syntax error
    if not isinstance(document, dict) or not isinstance(document.get("States"), dict):
        return definition
    if not _rewrite_states(document["States"], document.get("QueryLanguage") == "JSONata"):
        return definition
    return json.dumps(document)


# ---------------------------------------------------------------------------------------- reading
def _s3(region: str) -> Any:
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

    return boto_client_for(region=region, service="s3")


class _Items(list):
    """A batch's items: moto's interpreter deep-copies a state's input at every step; these are only
    read and serialized, so every copy shares them (a 2,000-row batch was copied ~8 times per child)."""

    def __deepcopy__(self, memo: dict) -> _Items:
        return self


def _lines(body: Any, chunk: int = 1 << 22) -> Iterator[str]:
    """The object's lines ("\\n"-terminated) decoded in 4 MB chunks: csv reads them 3x faster than
    from a codecs stream reader."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    rest = ""
    while True:
        data = body.read(chunk)
        text = rest + decoder.decode(data, final=not data)
        if not data:
            if text:
                yield text
            return
        cut = text.rfind("\n") + 1
        rest = text[cut:]
        yield from io.StringIO(text[:cut], newline="\n")


# A character that JSON escapes or that UTF-8 encodes in more than one byte: such a row is sized by
# json.dumps, every other one by arithmetic.
_SPECIAL = re.compile(r'["\\\x00-\x1f\x7f-\U0010ffff]')


def _csv_rows(lines: Iterator[str], config: dict[str, Any]) -> Iterator[tuple[dict[str, str], int]]:
    """Each row as AWS makes it an item (header -> string value), with its JSON size."""
    delimiter = {"COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "SPACE": " ", "TAB": "\t"}.get(
        config.get("CSVDelimiter", "COMMA"))
    if delimiter is None:
        raise MapError("States.ItemReaderFailed", f"Unknown CSVDelimiter {config.get('CSVDelimiter')!r}.")
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    location = config.get("CSVHeaderLocation", "FIRST_ROW")
    try:
        if location == "FIRST_ROW":
            headers = next(reader, None)
            if headers is None:
                return
        elif location == "GIVEN":
            headers = config.get("CSVHeaders")
            if not isinstance(headers, list) or not headers:
                raise MapError("States.ItemReaderFailed", "CSVHeaders must be given with CSVHeaderLocation GIVEN.")
        else:
            raise MapError("States.ItemReaderFailed", f"Unknown CSVHeaderLocation {location!r}.")
        if len(set(headers)) < len(headers):
            raise MapError("States.ItemReaderFailed", "CSV headers cannot contain duplicates.")
        width = len(headers)
        padding = [""] * width
        plain_keys = not _SPECIAL.search("".join(headers))
        # {"k":"v",...}: the keys, the values, 6 characters a field ("":"",) but one comma, 2 braces
        fixed = sum(map(len, headers)) + 6 * width + 1
        for row in reader:
            if not row:
                continue  # a blank line is no item (AWS: a line of spaces is one)
            if len(row) != width:
                row = row[:width] if len(row) > width else row + padding[len(row):]  # AWS: dropped / ""
            item = dict(zip(headers, row))
            values = "".join(row)
            yield item, (fixed + len(values) if plain_keys and not _SPECIAL.search(values) else _size(item))
    except csv.Error as exc:
        raise MapError("States.ItemReaderFailed", f"The CSV file could not be parsed at line "
                                                  f"{reader.line_num}: {exc}.") from None


def _json_items(body: bytes) -> list[Any]:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise MapError("States.ItemReaderFailed", f"The JSON file could not be parsed: {exc}.") from None
    if not isinstance(value, list):
        raise MapError("States.ItemReaderFailed", "Attempting to map over non-iterable node.")
    return value


def _jsonl_items(lines: Iterator[str]) -> Iterator[Any]:
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise MapError("States.ItemReaderFailed",
                               f"The JSONL file could not be parsed at line {number}: {exc}.") from None


def read_items(reader: dict[str, Any], parameters: dict[str, Any], config: dict[str, Any],
               region: str) -> Iterator[tuple[Any, int | None]]:
    """The items an ItemReader yields, streamed from S3 (``arn:aws:states:::s3:getObject``), each with
    its JSON size when the reader knows it cheaply (None: not computed)."""
    resource = reader.get("Resource", "")
    if not resource.endswith(":s3:getObject"):
        raise MapError("States.ItemReaderFailed", f"ItemReader Resource {resource!r} is not emulated locally "
                                                  "(arn:aws:states:::s3:getObject is).")
    request = {k: parameters[k] for k in ("Bucket", "Key", "VersionId") if k in parameters}
    if "Bucket" not in request or "Key" not in request:
        raise MapError("States.ItemReaderFailed", "ItemReader Parameters must give Bucket and Key.")
    input_type = config.get("InputType", "JSON")
    if input_type not in ("CSV", "JSON", "JSONL"):
        raise MapError("States.ItemReaderFailed", f"ReaderConfig InputType {input_type!r} is not emulated "
                                                  "locally (CSV, JSON and JSONL are).")
    from botocore.exceptions import ClientError

    try:
        body = _s3(region).get_object(**request)["Body"]
    except ClientError as exc:
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        raise MapError("States.ItemReaderFailed", f"{err.get('Message', str(exc))} (Service: S3, Status Code: "
                                                  f"{status}, Error Code: {err.get('Code')})") from None
    try:
        if input_type == "JSON":
            yield from ((item, None) for item in _json_items(body.read()))
        elif input_type == "CSV":
            yield from _csv_rows(_lines(body), config)  # streamed: the object is never held twice
        else:
            yield from ((item, None) for item in _jsonl_items(_lines(body)))
    finally:
        body.close()  # a run that stops early (failures, MaxItems) leaves the rest unread


# ---------------------------------------------------------------------------------------- batching
def _size(item: Any) -> int:
    """The item's size in a child's JSON input (UTF-8 bytes, compact JSON)."""
    text = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
    return len(text) if text.isascii() else len(text.encode())


def batches(items: Iterator[tuple[Any, int | None]], max_items: int | None, max_bytes: int,
            overhead: int) -> Iterator[list[Any]]:
    """Items (with their JSON size, None: unknown) grouped as ItemBatcher does: at most `max_items`
    each, and at most `max_bytes` for the whole child input (`overhead`: its size with no items). An
    item too large alone fails the run."""
    batch: list[Any] = _Items()
    size = overhead
    for item, known in items:
        item_size = (_size(item) if known is None else known) + 1  # its comma
        if overhead + item_size > max_bytes:
            raise MapError("States.ItemReaderFailed", f"An item of {item_size - 1} bytes does not fit in a batch "
                                                      f"of MaxInputBytesPerBatch {max_bytes} bytes.")
        if batch and (size + item_size > max_bytes or (max_items and len(batch) >= max_items)):
            yield batch
            batch, size = _Items(), overhead
        batch.append(item)
        size += item_size
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------- ItemSelector
class _Slow(Exception):
    """The fast ItemSelector cannot evaluate this: ask moto."""


def _simple_path(path: str) -> list[str] | None:
    """``$.a.b`` as ["a", "b"]; None if the path is anything else (filters, indexes, brackets)."""
    if path == "$":
        return []
    if not path.startswith("$.") or any(c in path for c in "[]*()?@ '\""):
        return None
    parts = path[2:].split(".")
    return parts if all(parts) else None


class _Selector:
    """An ItemSelector made only of constants and simple paths on the item (``$$.Map.Item.Value…``,
    ``$$.Map.Item.Index``), the state input or the context, evaluated per item without moto, and the
    selected item's JSON size by arithmetic when the item's own size is known."""

    def __init__(self, fields: list[tuple[str, str, Any]]) -> None:
        self.fields = fields  # (name, kind, data): const (value, size) | index | value (parts) | sub
        self.fixed = 1 + sum(_size(name) + 2 for name, _, _ in fields)  # braces, "name":, commas

    def __call__(self, index: int, value: Any) -> dict[str, Any]:
        out = {}
        for name, kind, data in self.fields:
            if kind == "const":
                out[name] = data[0]
            elif kind == "index":
                out[name] = index
            elif kind == "sub":
                out[name] = data(index, value)
            else:
                item = value
                for part in data:
                    if not isinstance(item, dict) or part not in item:
                        raise _Slow  # moto says what is missing
                    item = item[part]
                out[name] = item
        return out

    def size(self, index: int, value_size: int | None) -> int | None:
        total = self.fixed
        for _, kind, data in self.fields:
            if kind == "const":
                total += data[1]
            elif kind == "index":
                total += len(str(index))
            elif kind == "value" and not data and value_size is not None:
                total += value_size
            else:
                return None  # a part of the item, a nested selector: json.dumps it
        return total


def _compile_selector(template: Any, state_input: Any, context: dict[str, Any]) -> _Selector | None:
    """The fast `_Selector` for `template`, or None if moto must evaluate it."""
    from moto.stepfunctions.parser.asl.utils.json_path import extract_json

    if not isinstance(template, dict):
        return None
    fields: list[tuple[str, str, Any]] = []

    def const(name: str, value: Any) -> None:
        fields.append((name, "const", (value, _size(value))))

    for key, spec in template.items():
        if not key.endswith(".$"):
            if isinstance(spec, dict):
                sub = _compile_selector(spec, state_input, context)
                if sub is None:
                    return None
                fields.append((key, "sub", sub))
            else:
                const(key, spec)
            continue
        if not isinstance(spec, str):
            return None
        name = key[:-2]
        if spec == "$$.Map.Item.Index":
            fields.append((name, "index", None))
        elif spec == "$$.Map.Item.Value" or spec.startswith("$$.Map.Item.Value."):
            parts = _simple_path("$" + spec[len("$$.Map.Item.Value"):])
            if parts is None:
                return None
            fields.append((name, "value", parts))
        elif spec.startswith("$$.") and not spec.startswith("$$.Map") and _simple_path(spec[1:]) is not None:
            try:
                const(name, extract_json(spec[1:], context))
            except Exception:
                return None
        elif _simple_path(spec) is not None:
            try:
                const(name, extract_json(spec, state_input))
            except Exception:
                return None
        else:
            return None  # intrinsic functions, filters: moto evaluates them
    return _Selector(fields)


# ---------------------------------------------------------------------------------------- moto glue
def _error(env: Any, error: str, cause: str, entered: int | None = None) -> Exception:
    """A failure moto's StateMap handles like its own: Retry, Catch, then MapStateFailed; a
    ``States.Runtime`` error fails the execution at once (AWS: no MapStateFailed, not caught)."""
    from moto.stepfunctions.parser.api import (
        ExecutionFailedEventDetails,
        HistoryEventType,
        MapRunFailedEventDetails,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    typ = next((t for t in StatesErrorNameType if t.to_name() == error), None)
    name = StatesErrorName(typ=typ) if typ is not None else CustomErrorName(error_name=error)
    if error == "States.Runtime":
        event_type = HistoryEventType.ExecutionFailed
        details = EventDetails(executionFailedEventDetails=ExecutionFailedEventDetails(error=error, cause=cause))
    else:
        event_type = HistoryEventType.MapRunFailed
        details = EventDetails(mapRunFailedEventDetails=MapRunFailedEventDetails(error=error, cause=cause))
    failure = FailureEvent(env=env, error_name=name, event_type=event_type, event_details=details)
    if entered is not None:
        failure.source_event_id = entered  # "(entered at the event id #N)": the state's entered event
    return FailureEventException(failure_event=failure)


_TEMPLATES: dict[str, Any] = {}


def _template_component(template: dict[str, Any]) -> Any:
    """moto's payload template for `template` (a Pass state's Parameters), parsed once."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    key = json.dumps(template, sort_keys=True)
    component = _TEMPLATES.get(key)
    if component is None:
        definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": template, "End": True}}}
        program, _ = AmazonStateLanguageParser.parse(json.dumps(definition))
        component = _TEMPLATES[key] = program.states.states["P"].parameters
    return component


def evaluate(env: Any, template: Any, state_input: Any, item: tuple[int, Any] | None = None) -> Any:
    """`template` (JSONPath ``.$`` keys, intrinsic functions, ``$$``) evaluated by moto against
    `state_input`, with ``$$.Map.Item`` set to `item`."""
    if not isinstance(template, dict):
        return template
    from moto.stepfunctions.parser.asl.eval.states import ItemData, MapData

    frame = env.open_frame()
    try:
        frame.states.reset(input_value=state_input)
        frame.stack = [state_input]
        if item is not None:
            frame.states.context_object.context_object_data["Map"] = MapData(
                Item=ItemData(Index=item[0], Value=item[1]))
        _template_component(template).eval(frame)
        return frame.stack.pop()
    finally:
        env.delete_frame(frame)


def _path_value(path: str, state_input: Any, context: dict[str, Any]) -> Any:
    from moto.stepfunctions.parser.asl.utils.json_path import extract_json

    if path.startswith("$$"):
        return extract_json(path[1:], context)
    return extract_json(path, state_input)


def _integer(spec: dict[str, Any], field: str, state_input: Any, context: dict[str, Any],
             default: Any = None) -> Any:
    """`field` or `field`Path of `spec`, as AWS reads it (a path must name an integer)."""
    if field in spec:
        return spec[field]
    path = spec.get(field + "Path")
    if path is None:
        return default
    value = _path_value(path, state_input, context)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise MapError("States.Runtime", f"The {field}Path field refers to value \"{value}\" which is not a "
                                         f"valid integer: {path}")
    return int(value)


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _NoHistory:
    """A child's event manager: it records nothing (see the module docstring)."""

    def add_event(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def get_event_history(self) -> list:
        return []


# ---------------------------------------------------------------------------------------- the run
class MapRun:
    """One Distributed Map state's evaluation (moto's ``StateMap._eval_execution`` for it)."""

    def __init__(self, state: Any, env: Any, spec: dict[str, Any], concurrency: int) -> None:
        self.state, self.env, self.spec, self.cap = state, env, spec, concurrency
        self.context = env.states.context_object.context_object_data
        self.region = env.aws_execution_details.region
        self.express = spec.get("ExecutionType") == "EXPRESS"
        self.lock = threading.Lock()
        self.failed_items = 0
        self.total_items = 0
        self.stop = threading.Event()
        self.results: dict[int, tuple[str, list[Any]]] = {}  # child index -> `_retained`

    # -------------------------------------------------------------- settings
    def _settings(self, state_input: Any) -> None:
        spec, ctx = self.spec, self.context
        self.max_concurrency = _integer(spec, "MaxConcurrency", state_input, ctx, 0)
        count = _integer(spec, "ToleratedFailureCount", state_input, ctx, None)
        if count is not None and count < 0:
            raise MapError("States.Runtime", "ToleratedFailureCount cannot be negative.")
        percentage = spec.get("ToleratedFailurePercentage")
        if percentage is None and "ToleratedFailurePercentagePath" in spec:
            percentage = _path_value(spec["ToleratedFailurePercentagePath"], state_input, ctx)
            if isinstance(percentage, bool) or not isinstance(percentage, (int, float)):
                raise MapError("States.Runtime", f"The ToleratedFailurePercentagePath field refers to value "
                                                 f"\"{percentage}\" which is not a valid number: "
                                                 f"{spec['ToleratedFailurePercentagePath']}")
        if percentage is not None and not 0 <= percentage <= 100:
            raise MapError("States.Runtime", "ToleratedFailurePercentage must be between 0 and 100.")
        self.tolerated_count, self.tolerated_percentage = count, percentage
        config = (spec.get("ItemReader") or {}).get("ReaderConfig") or {}
        self.max_items = _integer(config, "MaxItems", state_input, ctx, 0)
        self.transformation, self.output_type = self._writer_config()

    def _exceeded(self, final: bool) -> bool:
        if self.tolerated_count is None and self.tolerated_percentage is None:
            return self.failed_items > 0
        if self.tolerated_count is not None and self.failed_items > self.tolerated_count:
            return True
        if self.tolerated_percentage is not None and final and self.total_items:
            return self.failed_items * 100 / self.total_items > self.tolerated_percentage
        return False

    # -------------------------------------------------------------- items
    def _input_items(self, state_input: Any) -> list[Any] | None:
        """The items ItemsPath selects from the input (None with an ItemReader, which ignores it)."""
        if "ItemReader" in self.spec:
            return None
        path = self.spec.get("ItemsPath", "$")
        items = _path_value(path, state_input, self.context)
        if not isinstance(items, list):
            raise MapError("States.Runtime", f"Map state input must be an array but was: {type(items).__name__}")
        return items

    def _items(self, state_input: Any) -> Iterator[tuple[Any, int | None]]:
        """(item, its JSON size or None) from the reader or the input."""
        if self.input_items is not None:
            return ((item, None) for item in self.input_items)
        reader = self.spec["ItemReader"]
        if self.max_items < 0:
            raise MapError("States.ItemReaderFailed", "field MaxItems must be positive")
        parameters = evaluate(self.env, reader.get("Parameters") or {}, state_input)
        items = read_items(reader, parameters, reader.get("ReaderConfig") or {}, self.region)
        return itertools.islice(items, min(self.max_items or MAX_ITEMS_CAP, MAX_ITEMS_CAP))

    def _selected(self, items: Iterator[tuple[Any, int | None]], state_input: Any) -> Iterator[tuple[Any, int | None]]:
        selector = self.spec.get("ItemSelector", self.spec.get("Parameters"))
        if selector is None:
            yield from items
            return
        fast = _compile_selector(selector, state_input, self.context)
        for index, (value, known) in enumerate(items):
            if fast is not None:
                try:
                    yield fast(index, value), fast.size(index, known)
                    continue
                except _Slow:
                    pass
            yield evaluate(self.env, selector, state_input, (index, value)), None

    def _counted(self, items: Iterator[tuple[Any, int | None]]) -> Iterator[tuple[Any, int | None]]:
        for pair in items:
            self.total_items += 1
            yield pair

    def _inputs(self, state_input: Any) -> Iterator[tuple[Any, int]]:
        """Each child's input and how many items it holds."""
        items = self._counted(self._selected(self._items(state_input), state_input))
        batcher = self.spec.get("ItemBatcher")
        if batcher is None:
            for item, _ in items:
                yield item, 1
            return
        max_items = _integer(batcher, "MaxItemsPerBatch", state_input, self.context, None)
        max_bytes = _integer(batcher, "MaxInputBytesPerBatch", state_input, self.context, None)
        if max_items is None and max_bytes is None:
            raise MapError("States.Runtime", "ItemBatcher needs MaxItemsPerBatch or MaxInputBytesPerBatch "
                                             "(or their Path).")
        for value, field in ((max_items, "MaxItemsPerBatch"), (max_bytes, "MaxInputBytesPerBatch")):
            if value is not None and value <= 0:
                raise MapError("States.Runtime", f"{field} must be positive.")
        max_bytes = min(max_bytes or PAYLOAD_QUOTA, PAYLOAD_QUOTA)
        batch_input = evaluate(self.env, batcher["BatchInput"], state_input) if "BatchInput" in batcher else None
        shell: dict[str, Any] = {} if batch_input is None else {"BatchInput": batch_input}
        overhead = _size({**shell, "Items": []})
        for batch in batches(items, max_items, max_bytes, overhead):
            yield {**shell, "Items": batch}, len(batch)

    # -------------------------------------------------------------- children
    def _child(self, index: int, child_input: Any, size: int, program: Any) -> None:
        from moto.stepfunctions.parser.api import StateMachineType
        from moto.stepfunctions.parser.asl.eval.environment import Environment
        from moto.stepfunctions.parser.asl.eval.event.event_manager import EventHistoryContext
        from moto.stepfunctions.parser.asl.eval.program_state import (
            ProgramEnded,
            ProgramError,
            ProgramStopped,
            ProgramTimedOut,
        )
        from moto.stepfunctions.parser.asl.eval.states import ContextObjectData, ExecutionData, StateMachineData

        record, parent = self.record, self.env
        name = str(uuid.uuid4())
        kind = ":express:" if self.express else ":execution:"
        arn = record.map_state_machine_arn.replace(":stateMachine:", kind, 1) + ":" + name
        started = _now()
        env = Environment(
            aws_execution_details=parent.aws_execution_details,
            execution_type=StateMachineType.EXPRESS if self.express else StateMachineType.STANDARD,
            context=ContextObjectData(
                Execution=ExecutionData(Id=arn, Input=child_input, Name=name,
                                        RoleArn=parent.aws_execution_details.role_arn,
                                        StartTime=started.isoformat()),
                StateMachine=StateMachineData(Id=record.map_state_machine_arn,
                                              Name=record.map_state_machine_arn.split(":")[-1])),
            event_history_context=EventHistoryContext.of_program_start(),
            cloud_watch_logging_session=None, activity_store=parent.activity_store,
            mock_test_case=parent.mock_test_case)
        env.event_manager = _NoHistory()
        with parent._state_mutex:  # a StopExecution of the parent stops the child too
            parent._frames.append(env)
        try:
            program.eval(env)
        finally:
            parent.delete_frame(env)
        end = env.program_state()
        result: dict[str, Any] = {"ExecutionArn": arn, "Name": name, "StartDate": started, "StopDate": _now(),
                                  "StateMachineArn": record.map_state_machine_arn, "Input": child_input}
        if isinstance(end, ProgramEnded):
            result.update(Status="SUCCEEDED", Output=env.states.get_input())
        elif isinstance(end, ProgramError):
            error = end.error or {}
            result.update(Status="FAILED", Error=error.get("error"), Cause=error.get("cause"))
        elif isinstance(end, ProgramStopped):
            result.update(Status="ABORTED", Error=end.error, Cause=end.cause)
        elif isinstance(end, ProgramTimedOut):
            result.update(Status="TIMED_OUT", Error="States.Timeout", Cause="The execution timed out.")
        else:
            result.update(Status="FAILED", Error="States.Runtime", Cause=f"The child execution ended {end!r}.")
        counters = {"SUCCEEDED": "succeeded", "FAILED": "failed", "ABORTED": "aborted", "TIMED_OUT": "timed_out"}
        retained = self._retained(result)  # the batch itself is not kept: memory stays bounded
        with self.lock:
            self.results[index] = retained
            for counter, n in ((record.item_counter, size), (record.execution_counter, 1)):
                counter.running.offset(-n)
                getattr(counter, counters[result["Status"]]).count(n)
            if result["Status"] != "SUCCEEDED":
                self.failed_items += size
                if self._exceeded(final=False):
                    self.stop.set()  # no more children are started; those running finish

    def _run_children(self, state_input: Any) -> None:
        program = self.state.iteration_component._get_iteration_program()  # moto's parsed states, no parse
        limit = self.cap if not self.max_concurrency else min(self.max_concurrency, self.cap)
        running: set[Future] = set()
        done: set[Future] = set()
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="local-map-run") as pool:
            try:
                for index, (child_input, size) in enumerate(self._inputs(state_input)):
                    while len(running) >= limit:
                        finished, running = wait(running, return_when=FIRST_COMPLETED)
                        done |= finished
                    if self.stop.is_set() or not self.env.is_running():
                        break
                    with self.lock:
                        for counter, n in ((self.record.item_counter, size), (self.record.execution_counter, 1)):
                            counter.total.count(n)
                            counter.running.count(n)
                    running.add(pool.submit(self._child, index, child_input, size, program))
            finally:
                done |= wait(running).done
        for future in done:
            future.result()  # an error of this module surfaces, not a lost child

    # -------------------------------------------------------------- results
    def _writer_config(self) -> tuple[str, str]:
        writer = self.spec.get("ResultWriter")
        config = (writer or {}).get("WriterConfig") or {}
        default = "NONE" if writer and "Resource" in writer else "COMPACT"
        transformation = config.get("Transformation", default)
        output_type = config.get("OutputType", "JSON")
        if transformation not in ("NONE", "COMPACT", "FLATTEN") or output_type not in ("JSON", "JSONL"):
            raise MapError("States.ResultWriterFailed", f"Unknown WriterConfig {config}.")
        return transformation, output_type

    def _record(self, result: dict[str, Any]) -> dict[str, Any]:
        """A child's entry as the ResultWriter writes it (Transformation NONE)."""
        entry = {"ExecutionArn": result["ExecutionArn"],
                 "Input": json.dumps(result["Input"], separators=(",", ":")),
                 "InputDetails": {"Included": True}, "Name": result["Name"]}
        if result["Status"] == "SUCCEEDED":
            entry["Output"] = json.dumps(result["Output"], separators=(",", ":"))
            entry["OutputDetails"] = {"Included": True}
        else:
            entry["Error"], entry["Cause"] = result.get("Error"), result.get("Cause")
        entry.update(RedriveCount=0, RedriveStatus="NOT_REDRIVABLE",
                     RedriveStatusReason=f"Execution is {result['Status']} and cannot be redriven",
                     StartDate=_iso(result["StartDate"]), StateMachineArn=result["StateMachineArn"],
                     Status=result["Status"], StopDate=_iso(result["StopDate"]))
        return entry

    def _retained(self, result: dict[str, Any]) -> tuple[str, list[Any]]:
        """What is kept of a finished child: its status ("SUCCEEDED" or "FAILED": the result file it
        goes to) and its entries for the output or that file, transformed as WriterConfig says (a
        failed child's result is left whole, AWS)."""
        if result["Status"] != "SUCCEEDED":
            return "FAILED", [self._record(result)]
        if self.transformation == "NONE":
            return "SUCCEEDED", [self._record(result)]
        if self.transformation == "FLATTEN" and isinstance(result["Output"], list):
            return "SUCCEEDED", result["Output"]
        return "SUCCEEDED", [result["Output"]]

    def _write(self, state_input: Any) -> Any:
        output_type = self.output_type
        writer = self.spec.get("ResultWriter") or {}
        if "Resource" not in writer:
            return [entry for i in sorted(self.results) for entry in self.results[i][1]]
        if not writer["Resource"].endswith(":s3:putObject"):
            raise MapError("States.ResultWriterFailed", f"ResultWriter Resource {writer['Resource']!r} is not "
                                                        "arn:aws:states:::s3:putObject.")
        parameters = evaluate(self.env, writer.get("Parameters") or {}, state_input)
        bucket, prefix = parameters.get("Bucket"), parameters.get("Prefix", "")
        if not bucket:
            raise MapError("States.ResultWriterFailed", "ResultWriter Parameters must give Bucket.")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        base = prefix + self.record.map_run_arn.split(":")[-1] + "/"
        extension = "json" if output_type == "JSON" else "jsonl"
        files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
        by_status: dict[str, list[Any]] = {}
        for i in sorted(self.results):
            status, entries = self.results[i]
            by_status.setdefault(status, []).extend(entries)
        from botocore.exceptions import ClientError

        s3 = _s3(self.region)
        try:
            for status, entries in by_status.items():
                if output_type == "JSON":
                    body = json.dumps(entries, separators=(",", ":")).encode()
                else:
                    body = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
                key = f"{base}{status}_0.{extension}"
                s3.put_object(Bucket=bucket, Key=key, Body=body)
                files[status].append({"Key": key, "Size": len(body)})
                self.record.item_counter.results_written.count(len(entries))
            manifest = {"DestinationBucket": bucket, "MapRunArn": self.record.map_run_arn, "ResultFiles": files}
            s3.put_object(Bucket=bucket, Key=base + "manifest.json", Body=json.dumps(manifest).encode())
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise MapError("States.ResultWriterFailed", f"{err.get('Message', str(exc))} (Service: S3, "
                                                        f"Error Code: {err.get('Code')})") from None
        return {"MapRunArn": self.record.map_run_arn,
                "ResultWriterDetails": {"Bucket": bucket, "Key": base + "manifest.json"}}

    # -------------------------------------------------------------- the state
    def eval(self) -> None:
        from moto.stepfunctions.parser.api import (
            HistoryEventType,
            MapRunFailedEventDetails,
            MapRunStartedEventDetails,
            MapRunStatus,
            MapStateStartedEventDetails,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.map_run_record import (  # noqa: E501
            MapRunRecord,
        )
        from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

        env, spec = self.env, self.spec
        state_input = env.stack[-1]  # the effective input (after InputPath)
        events = env.event_manager
        entered = env.event_history_context.source_event_id
        try:
            self.input_items = self._input_items(state_input)
        except MapError as exc:
            raise _error(env, exc.error, exc.cause) from None
        events.add_event(context=env.event_history_context, event_type=HistoryEventType.MapStateStarted,
                         event_details=EventDetails(mapStateStartedEventDetails=MapStateStartedEventDetails(
                             length=0 if self.input_items is None else len(self.input_items))))
        try:
            self._settings(state_input)
        except MapError as exc:
            raise _error(env, exc.error, exc.cause, entered) from None
        self.record = MapRunRecord(
            state_machine_arn=self.context["StateMachine"]["Id"], execution_arn=self.context["Execution"]["Id"],
            max_concurrency=self.max_concurrency, tolerated_failure_count=self.tolerated_count or 0,
            tolerated_failure_percentage=float(self.tolerated_percentage or 0), label=spec.get("Label"))
        env.map_run_record_pool_manager.add(self.record)
        events.add_event(context=env.event_history_context, event_type=HistoryEventType.MapRunStarted,
                         event_details=EventDetails(mapRunStartedEventDetails=MapRunStartedEventDetails(
                             mapRunArn=self.record.map_run_arn)))
        try:
            self._run_children(state_input)
            if not env.is_running():  # StopExecution: the children were stopped with the parent
                self.record.set_stop(MapRunStatus.ABORTED)
                return
            failed = self._exceeded(final=True)
            output = self._write(state_input)  # written on a failed run too, for its post-mortem
            if failed:
                raise MapError("States.ExceedToleratedFailureThreshold",
                               "The specified tolerated failure threshold was exceeded")
        except MapError as exc:
            self.record.set_stop(MapRunStatus.FAILED)
            events.add_event(context=env.event_history_context, event_type=HistoryEventType.MapRunFailed,
                             event_details=EventDetails(mapRunFailedEventDetails=MapRunFailedEventDetails(
                                 error=exc.error, cause=exc.cause)))
            raise _error(env, exc.error, exc.cause) from None
        except BaseException:
            self.record.set_stop(MapRunStatus.FAILED)
            events.add_event(context=env.event_history_context, event_type=HistoryEventType.MapRunFailed,
                             event_details=EventDetails(mapRunFailedEventDetails=MapRunFailedEventDetails()))
            raise
        self.record.set_stop(MapRunStatus.SUCCEEDED)
        events.add_event(context=env.event_history_context, event_type=HistoryEventType.MapRunSucceeded)
        events.add_event(context=env.event_history_context, event_type=HistoryEventType.MapStateSucceeded,
                         update_source_event_id=False)
        env.stack.append(output)


# ---------------------------------------------------------------------------------------- the seam
def concurrency_from_env() -> int | None:
    """``LOCALCLOUD_MAP_CONCURRENCY``: how many children a map run runs at once (unset: None)."""
    value = os.environ.get(DEFAULT_CONCURRENCY_ENV)
    return max(1, int(value)) if value else None


_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _cached_client(original: Any) -> Any:
    """moto's ``boto_client_for`` made once per region, service and endpoint: a map run's children
    invoke Lambda thousands of times, and each new client cost ~5 ms and a TCP connection (moto's
    interpreter passes the same fixed test keys every time; botocore clients are thread-safe)."""
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        import boto3
        from botocore.config import Config
        from moto.core.models import botocore_stubber
        from moto.settings import moto_server_port

        key = (region, service, moto_server_port(), botocore_stubber.enabled)
        client = _CLIENTS.get(key)
        if client is None:
            with _CLIENTS_LOCK:
                client = _CLIENTS.get(key)
                if client is None:
                    meta = original(region, service, state_credentials).meta  # moto's settings, and
                    client = _CLIENTS[key] = boto3.client(  # as many connections as children call at once
                        service, region_name=region, endpoint_url=meta.endpoint_url, aws_access_key_id="ak",
                        aws_secret_access_key="sk", config=meta.config.merge(Config(max_pool_connections=64)))
        return client
    return boto_client_for


def _patch(seam: Seam) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )
    from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    def parse(definition: str):
        return seam["parse"](rewrite(definition))

    def from_state_props(self, state_props):
        seam["from_state_props"](self, state_props)
        comment = getattr(self.comment, "comment", None)
        if isinstance(comment, str) and comment.startswith(MARKER):
            self.distributed_map = _SPECS[comment[len(MARKER):]]
            self.comment = None

    def _eval_execution(self, env):
        spec = getattr(self, "distributed_map", None)
        if spec is None:
            return seam["_eval_execution"](self, env)
        cap = seam.current if isinstance(seam.current, int) else concurrency_from_env() or 10
        MapRun(self, env, spec, cap).eval()

    def _get_state_entered_event_details(self, env):
        if isinstance(env.event_manager, _NoHistory):
            return {}  # not a copy and serialization of a whole batch for no event
        return seam["_get_state_entered_event_details"](self, env)

    def _get_state_exited_event_details(self, env):
        if isinstance(env.event_manager, _NoHistory):
            env.variable_store.reset_tracing()
            return {}
        return seam["_get_state_exited_event_details"](self, env)

    def _before_eval_execution(self, env, resource_runtime_part, raw_parameters, state_credentials):
        if isinstance(env.event_manager, _NoHistory):
            return  # it only records TaskScheduled (the parameters serialized) and TaskStarted
        return seam["_before_eval_execution"](self, env, resource_runtime_part, raw_parameters, state_credentials)

    seam.replace(AmazonStateLanguageParser, "parse", staticmethod(parse))
    seam.replace(CommonStateField, "_get_state_entered_event_details", _get_state_entered_event_details)
    seam.replace(CommonStateField, "_get_state_exited_event_details", _get_state_exited_event_details)
    seam.replace(StateTaskService, "_before_eval_execution", _before_eval_execution)
    seam.replace(lambda_eval_utils, "boto_client_for", _cached_client(lambda_eval_utils.boto_client_for))
    _PATHS.install()
    seam.replace(StateMap, "from_state_props", from_state_props)
    seam.replace(StateMap, "_eval_execution", _eval_execution)


def _patch_paths(seam: Seam) -> None:
    from moto.stepfunctions.parser.asl.utils import json_path

    # jsonpath_ng builds a new parser (and reads its LR tables) per parse: per path, per state, per child
    seam.replace(json_path, "parse", functools.lru_cache(maxsize=4096)(json_path.parse))


class _MapSeam(Seam):
    """`SEAM`, which also installs `_PATHS` (jsonpath_ng's ``parse``: a name the ASL parser's hook
    already holds in a `Seam`'s table) and uninstalls it with itself."""

    def uninstall(self) -> None:
        super().uninstall()
        _PATHS.uninstall()


_PATHS = Seam(_patch_paths)
SEAM = _MapSeam(_patch)
