"""A state directory: what a local cloud keeps across restarts (`LocalCloud(state_dir=…)`,
`shipyard local up --state-dir DIR`).

The approach: **provision afresh, with the saved names; then put the saved data back.**

Every start deploys the template exactly as a start without a state directory does (the same
provisioners, the same API calls against moto), except that the physical names CloudFormation
would generate (`DeployContext.name`: buckets, tables, functions, roles, state machines, queues,
topics, log groups, alarms…) are the ones saved in the directory on the first start. So
everything that only *configures* — IAM roles and policies, Lambda functions and their workers,
rules, schedules, API Gateway, alarms, KMS keys — is created as the template says, consistent with
itself by construction, and every name, ARN and stack output that derives from a name is the same
as before the restart. Then the *data* is put back into those freshly created resources, found by
logical id:

- S3: every bucket's objects with all their versions and delete markers (moto's `FakeKey`s,
  pickled as moto itself supports, so version ids, ETags, metadata, last-modified dates and
  encryption settings are the same) and object tags;
- DynamoDB: every table's items (moto keeps no separate index storage: GSIs and LSIs are
  computed from the items);
- Step Functions: every execution with its input, output, error, dates and event history
  (`GetExecutionHistory`), as a finished execution (see below);
- SQS: every queue's messages (dead letters), visible again at restart;
- CloudWatch Logs: every log group's streams and events (the functions' `/aws/lambda/<name>`
  groups, created at their first invocation, come back too).

Why not pickle whole moto backends? Their objects hold what is only good for one process: Step
Functions executions hold their interpreter's worker threads and locks, Lambda functions a
registry of worker subprocesses, the IAM authorizer the sessions issued to each function, API
Gateway the routes the local API server serves, EventBridge the local schedules. Restoring them
would mean a second, partial way of deploying. Re-provisioning keeps one way; what is restored is
data only, into containers that have the same names and configuration as before. Exporting the
data through the public APIs instead (PutObject, PutItem) would lose what the registry depends
on: S3 assigns new version ids on every PutObject, and the registry records the version id of
every dataset and artifact (the inference function reads the model by it).

Not kept (a restart starts them afresh, as after a deploy): CloudWatch metric data and alarm
states (alarms start in INSUFFICIENT_DATA), the local schedules' clocks (`rate()` counts from
the start), in-progress multipart uploads, warm Lambda workers, SNS e-mails printed
(`cloud.notifications`), anything created at run time outside the template (a queue or rule made
with the AWS CLI: not in the template, not re-created), IAM users and access keys created at run
time, DynamoDB stream records. Without a state directory nothing survives a stop.

**Running executions at shutdown end ABORTED**, as after a region failure: an execution still
running when the state is saved is restored with status `ABORTED`, its stop date the time of the
save, and an `ExecutionAborted` history event with error `LocalCloud.Stopped`; nothing resumes
it. Once everything is back, each gets the `Step Functions Execution Status Change` event (status
`ABORTED`, that error and cause) AWS sends for an execution that ended (localcloud/stepfunctions.py):
the pipeline's rule on it closes what the run left open (a canary release, an approval). Start the
pipeline again (upload the dataset again, `shipyard train`) to redo its work.

When it is saved: at `stop()` (so Ctrl-C and SIGTERM, which `shipyard local up` turns into a
stop, save it), right after the first start (the names), and every `interval` seconds while
the cloud ran requests that may change something. The file is written to a temporary file in
the same directory and renamed over the old one (atomic on POSIX): a crash while saving leaves
the previous state.

The file (`DIR/localcloud-state.pickle`) is a pickle of moto's own objects, so it is tied to the
moto version (pinned exactly) and to this format's version; it records both, with the stack's
name and every logical id and type of the template. At start:

- no file: a fresh start (the names are generated, then saved);
- a file of another moto version or format, or one that does not unpickle: `StateError` saying
  why and how to start fresh (delete the directory or use another one);
- a file of another stack or region, or of a template whose resources (logical ids and types) differ:
  `StateError` naming the differences. Nothing is restored halfway: the cloud does not start.

A state directory is trusted as code is (unpickling runs code): point `--state-dir` only at
directories you made.
"""
from __future__ import annotations

import copy
import datetime
import json
import os
import pickle
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import stepfunctions
from .template import ACCOUNT_ID, Template

if TYPE_CHECKING:  # pragma: no cover
    from .cloud import LocalCloud

FORMAT = 1
FILE_NAME = "localcloud-state.pickle"
_READ_PREFIXES = ("Get", "List", "Describe", "Query", "Scan", "BatchGet", "Head")


class StateError(Exception):
    """The state directory cannot be used (another stack or template, corrupt, another version)."""


def _moto_version() -> str:
    import moto

    return moto.__version__


def fingerprint(template: Template) -> dict[str, str]:
    """Logical id -> type of every resource: what a state directory belongs to."""
    return {lid: res.get("Type", "?") for lid, res in sorted(template.resources.items())}


@dataclass
class Saved:
    """A state file's contents."""

    stack: str
    resources: dict[str, str]
    names: dict[str, str]
    data: dict[str, Any] = field(default_factory=dict)
    saved_at: float = 0.0
    region: str | None = None


class StateDir:
    """One state directory: load (with its checks), capture + save (atomically), restore."""

    def __init__(self, path: str | Path, interval: float = 30.0):
        self.path = Path(path)
        self.interval = interval
        self.file = self.path / FILE_NAME
        self.names: dict[str, str] = {}
        self.restored: dict[str, int] = {}  # what the last restore put back (counts), for the console
        self.last_save_seconds: float | None = None
        self._save_lock = threading.Lock()
        self._dirty = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ loading
    def load(self, template: Template, region: str | None = None) -> Saved | None:
        """The saved state for this template (in `region`), or None for a fresh start; `StateError` if unusable."""
        if self.path.exists() and not self.path.is_dir():
            raise StateError(f"--state-dir {self.path} is not a directory")
        if not self.file.exists():
            return None
        fresh = f"to start fresh, delete {self.path} (or use another --state-dir)"
        try:
            with self.file.open("rb") as f:
                header = pickle.load(f)
                if not isinstance(header, dict) or header.get("magic") != "localcloud-state":
                    raise StateError(f"{self.file} is not a local cloud state file; {fresh}")
                if header.get("format") != FORMAT or header.get("moto") != _moto_version():
                    raise StateError(
                        f"{self.file} was saved by another version of the local cloud (state format "
                        f"{header.get('format')}, moto {header.get('moto')}; this one: format {FORMAT}, moto "
                        f"{_moto_version()}); it cannot be restored: {fresh}")
                saved = Saved(stack=header["stack"], resources=header["resources"], names=header["names"],
                              saved_at=header.get("saved_at", 0.0), region=header.get("region"))
                saved.data = pickle.load(f)
        except StateError:
            raise
        except Exception as err:  # noqa: BLE001 - truncated, corrupt, unpicklable: all say the same
            raise StateError(f"{self.file} cannot be read ({type(err).__name__}: {err}); {fresh}") from err
        if saved.stack != template.stack_name:
            raise StateError(f"{self.path} holds the state of stack {saved.stack!r}, not {template.stack_name!r}; "
                             f"{fresh}")
        if region and saved.region and saved.region != region:
            raise StateError(f"{self.path} holds the state of stack {saved.stack!r} in {saved.region}, not {region}; "
                             f"start in {saved.region} (AWS_REGION), or {fresh}")
        now = fingerprint(template)
        if saved.resources != now:
            added = sorted(set(now) - set(saved.resources))
            removed = sorted(set(saved.resources) - set(now))
            changed = sorted(k for k in set(now) & set(saved.resources) if now[k] != saved.resources[k])
            parts = [f"{label}: {', '.join(ids[:8])}{' …' if len(ids) > 8 else ''}"
                     for label, ids in (("new", added), ("gone", removed), ("other type", changed)) if ids]
            raise StateError(f"{self.path} holds the state of another template of stack {saved.stack!r} "
                             f"(resources {'; '.join(parts)}); nothing was restored: {fresh}")
        self.names = dict(saved.names)
        return saved

    # ------------------------------------------------------------------ saving
    def mark_dirty(self, request: Any) -> None:
        """An interceptor on the AWS endpoint: a request that may change something makes the state dirty."""
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        target = request.headers.get("X-Amz-Target", "")
        if target and target.rsplit(".", 1)[-1].startswith(_READ_PREFIXES):
            return None
        self._dirty = True
        return None

    def save(self, cloud: LocalCloud) -> float:
        """Capture the cloud's state and write it atomically; returns the seconds it took."""
        started = time.time()
        with self._save_lock:
            self._dirty = False
            data = capture(cloud)
            header = {"magic": "localcloud-state", "format": FORMAT, "moto": _moto_version(),
                      "stack": cloud.template.stack_name, "region": cloud.region,
                      "resources": fingerprint(cloud.template),
                      "names": dict(self.names), "saved_at": time.time()}
            self.path.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=self.path)
            try:
                with os.fdopen(fd, "wb") as f:
                    pickle.dump(header, f, protocol=pickle.HIGHEST_PROTOCOL)
                    pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.file)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        self.last_save_seconds = time.time() - started
        return self.last_save_seconds

    def start_saver(self, cloud: LocalCloud) -> None:
        """Save every `interval` seconds while requests may have changed something."""
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.interval):
                if not self._dirty:
                    continue
                try:
                    self.save(cloud)
                except Exception as err:  # noqa: BLE001 - the next save may work; stop() saves again
                    cloud.say(f"[state] saving {self.file} failed: {err!r}")

        self._thread = threading.Thread(target=loop, daemon=True, name="local-state-saver")
        self._thread.start()

    def stop_saver(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)
            self._thread = None


# --------------------------------------------------------------------------- capture


def _backends(region: str) -> dict[str, Any]:
    from moto.dynamodb.models import dynamodb_backends
    from moto.logs.models import logs_backends
    from moto.s3.models import s3_backends
    from moto.sqs.models import sqs_backends
    from moto.stepfunctions.responses import get_backend

    return {"s3": s3_backends[ACCOUNT_ID]["aws"], "dynamodb": dynamodb_backends[ACCOUNT_ID][region],
            "stepfunctions": get_backend(ACCOUNT_ID, region), "sqs": sqs_backends[ACCOUNT_ID][region],
            "logs": logs_backends[ACCOUNT_ID][region]}


class _Changed(RuntimeError):
    """What a capture read changed under it (e.g. an object replaced while it was pickled)."""


def _retrying(fn: Any) -> Any:
    """Run a capture while other threads may change the same dicts: retry if one changed under it."""
    for attempt in range(20):
        try:
            return fn()
        except RuntimeError as err:  # dictionary/set changed size during iteration; _Changed
            if not (isinstance(err, _Changed) or "changed size" in str(err)) or attempt == 19:
                raise
            time.sleep(0.01)
    return None


def _disposed(version: Any) -> bool:
    """An S3 object version whose content moto has let go (replaced in an unversioned bucket, or
    deleted): moto pickles it with an empty body, which must not be saved as its content."""
    buffer = getattr(version, "_value_buffer", None)
    return buffer is not None and buffer.closed


def _by_type(cloud: LocalCloud, *types: str) -> dict[str, str]:
    """Logical id -> physical id of the template's deployed resources of these types."""
    tpl = cloud.template
    return {lid: cloud.physical_ids[lid] for lid, res in tpl.resources.items()
            if res.get("Type") in types and lid in cloud.physical_ids}


def capture(cloud: LocalCloud) -> dict[str, Any]:
    """The data of the template's resources, as pickled bytes per section (taken one section at a time)."""
    from .server import _DYNAMODB_LOCK

    b = _backends(cloud.region)
    out: dict[str, Any] = {}

    # S3: objects (every version, delete markers) and object tags, per bucket
    buckets = {}
    for lid, name in _by_type(cloud, "AWS::S3::Bucket").items():
        bucket = b["s3"].buckets.get(name)
        if bucket is None:
            continue

        def snap(bucket: Any = bucket) -> bytes:
            store = bucket.keys
            versions = {k: list(store.getlist(k, [])) for k in list(dict.keys(store))}
            tags = {}
            for vs in versions.values():
                for v in vs:
                    arn = getattr(v, "arn", None)
                    if arn and b["s3"].tagger.has_tags(arn):
                        tags[arn] = b["s3"].tagger.list_tags_for_resource(arn)["Tags"]
            blob = pickle.dumps({"versions": versions, "tags": tags}, protocol=pickle.HIGHEST_PROTOCOL)
            if any(_disposed(v) for vs in versions.values() for v in vs):
                raise _Changed("an object was replaced or deleted while it was saved")
            return blob

        buckets[lid] = _retrying(snap)
    out["s3"] = buckets

    # DynamoDB: items, per table (under the endpoint's DynamoDB lock: no write is half-way)
    tables = {}
    for lid, name in _by_type(cloud, "AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable").items():
        table = b["dynamodb"].tables.get(name)
        if table is not None:
            with _DYNAMODB_LOCK:
                tables[lid] = pickle.dumps(dict(table.items), protocol=pickle.HIGHEST_PROTOCOL)
    out["dynamodb"] = tables

    # Step Functions: executions as records (their interpreter state is not kept)
    machines = {}
    for lid, arn in _by_type(cloud, "AWS::StepFunctions::StateMachine").items():
        try:
            sm = b["stepfunctions"].describe_state_machine(arn)
        except Exception:  # noqa: BLE001 - deleted at run time: nothing to keep
            continue
        machines[lid] = [_execution_record(e) for e in list(sm.executions)]
    out["stepfunctions"] = machines

    # SQS: messages, per queue
    queues = {}
    for lid, url in _by_type(cloud, "AWS::SQS::Queue").items():
        queue = b["sqs"].queues.get(url.rstrip("/").rsplit("/", 1)[-1])
        if queue is not None:
            with queue._messages_lock:
                queues[lid] = pickle.dumps({"messages": list(queue._messages)}, protocol=pickle.HIGHEST_PROTOCOL)
    out["sqs"] = queues

    # CloudWatch Logs: every group's streams (template groups and the functions' own)
    def snap_logs() -> bytes:
        groups = {}
        for name, group in list(b["logs"].groups.items()):
            groups[name] = {"streams": dict(group.streams), "retention": group.retention_in_days}
        return pickle.dumps(groups, protocol=pickle.HIGHEST_PROTOCOL)

    out["logs"] = _retrying(snap_logs)
    return out


def _execution_record(e: Any) -> dict[str, Any]:
    history: list = []
    try:
        history = copy.deepcopy(e.to_history_output().get("events", []))
    except Exception:  # noqa: BLE001 - no worker (restored) or no environment yet
        history = list(getattr(e, "_history", []))
    status = e.exec_status.value if getattr(e, "exec_status", None) is not None else "RUNNING"
    return {"name": e.name, "arn": e.exec_arn, "status": status, "input": e.execution_input,
            "output": getattr(e, "output", None), "error": getattr(e, "error", None),
            "cause": getattr(e, "cause", None), "start_date": e.start_date, "stop_date": e.stop_date,
            "trace_header": getattr(e, "trace_header", None), "history": history}


# --------------------------------------------------------------------------- restore


def restore(cloud: LocalCloud, saved: Saved) -> dict[str, int]:
    """Put the saved data back into the freshly deployed resources (same logical ids, same names)."""
    b = _backends(cloud.region)
    data = saved.data
    counts = {"objects": 0, "items": 0, "executions": 0, "messages": 0, "log_events": 0}
    ids = cloud.physical_ids

    for lid, blob in (data.get("s3") or {}).items():
        bucket = b["s3"].buckets[ids[lid]]
        snap = pickle.loads(blob)
        for key, versions in snap["versions"].items():
            bucket.keys.setlist(key, versions)
            counts["objects"] += len(versions)
        for arn, tags in snap["tags"].items():
            b["s3"].tagger.tag_resource(arn, tags)

    for lid, blob in (data.get("dynamodb") or {}).items():
        table = b["dynamodb"].tables[ids[lid]]
        items = pickle.loads(blob)
        table.items.clear()
        table.items.update(items)
        counts["items"] += sum(len(v) if isinstance(v, dict) else 1 for v in items.values())

    aborted = []  # running at the save: restored ABORTED, and their status change event is due
    for lid, records in (data.get("stepfunctions") or {}).items():
        sm = b["stepfunctions"].describe_state_machine(ids[lid])
        for record in records:
            execution = _restored_execution(record, sm, saved.saved_at)
            sm.executions.append(execution)
            cloud.cloudwatch._seen_executions.add(record["arn"])  # not "finished since the last look"
            counts["executions"] += 1
            if record["status"] == "RUNNING":
                aborted.append(execution)

    for lid, blob in (data.get("sqs") or {}).items():
        queue = b["sqs"].queues[ids[lid].rstrip("/").rsplit("/", 1)[-1]]
        messages = pickle.loads(blob)["messages"]
        for m in messages:  # received but not deleted before the stop: visible again
            m.visible_at = 0.0
        with queue._messages_lock:
            queue._messages = messages
            queue._pending_messages = set()
        counts["messages"] += len(messages)

    if data.get("logs"):
        from moto.logs.models import LogEvent, LogGroup

        top = -1
        for name, group in pickle.loads(data["logs"]).items():
            live = b["logs"].groups.get(name)
            if live is None:
                live = b["logs"].groups[name] = LogGroup(ACCOUNT_ID, cloud.region, name)
                live.retention_in_days = group["retention"]
            for stream_name, stream in group["streams"].items():
                stream.log_group = live
                live.streams[stream_name] = stream
                counts["log_events"] += len(stream.events)
                top = max([top, *(e.event_id for e in stream.events)])
        LogEvent._event_id = max(LogEvent._event_id, top + 1)  # moto numbers events per process: no duplicates
    if aborted and cloud.bus is not None:
        # Their `Step Functions Execution Status Change` (ABORTED), as AWS sends for an execution that
        # ended: a rule on it (the pipeline's execution_ended) closes what the run left open. Sent on the
        # bus's workers once everything is back; delivered as every event is, asynchronously.
        def announce() -> None:
            for execution in aborted:
                stepfunctions.put_status_change(cloud.bus, execution, error=_STOPPED_ERROR, cause=_STOPPED_CAUSE)

        cloud.bus.submit(announce)
    return counts


# An execution running when the state was saved: restored ABORTED with this error and cause.
_STOPPED_ERROR = "LocalCloud.Stopped"
_STOPPED_CAUSE = "the local cloud stopped while the execution ran"


def _restored_execution(record: dict[str, Any], sm: Any, saved_at: float) -> Any:
    """A finished execution as moto's Step Functions answers for it (describe, list, history)."""
    from moto.stepfunctions.parser.api import CloudWatchEventsExecutionDataDetails, ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import Execution

    class RestoredExecution(Execution):
        def __init__(self) -> None:  # no interpreter: the execution is over
            pass

        def to_history_output(self) -> dict:
            return {"events": copy.deepcopy(self._history)}

        def stop(self, *args: Any, **kwargs: Any) -> None:
            pass

    record = dict(record)
    history = list(record["history"])
    if record["status"] == "RUNNING":  # running when the cloud stopped: aborted, as after a region failure
        stopped = datetime.datetime.fromtimestamp(saved_at or time.time(), tz=datetime.UTC)
        record.update(status="ABORTED", stop_date=stopped)
        last = history[-1]["id"] if history else 0
        history.append({"timestamp": stopped, "type": "ExecutionAborted", "id": last + 1, "previousEventId": last,
                        "executionAbortedEventDetails": {"error": _STOPPED_ERROR, "cause": _STOPPED_CAUSE}})
    e = RestoredExecution()
    e.name = record["name"]
    e.exec_arn = e.execution_arn = record["arn"]
    e.sm_type, e.role_arn = sm.sm_type, sm.roleArn
    e.account_id, e.region_name = ACCOUNT_ID, sm.arn.split(":")[3]
    e.state_machine, e.state_machine_arn = sm, sm.arn
    e._cloud_watch_logging_session = None
    e.execution_input = record["input"]
    e.input_data = json.loads(record["input"]) if isinstance(record["input"], str) else record["input"]
    e.input_details = CloudWatchEventsExecutionDataDetails(included=True)
    e.output_details = CloudWatchEventsExecutionDataDetails(included=True)
    e.trace_header = record.get("trace_header")
    e.exec_status = ExecutionStatus(record["status"])
    e.start_date, e.stop_date = record["start_date"], record["stop_date"]
    e.output, e.error, e.cause = record["output"], record["error"], record["cause"]
    e.exec_worker = None
    e._activity_store = {}
    e._history = history
    return e
