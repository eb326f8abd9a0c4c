"""Lambda execution environments: one worker subprocess per concurrent invocation of a function.

Each worker is started from the function's asset directory with its declared handler, environment
variables and timeout, like a Lambda execution environment: its own process (own env vars, own
module state), reused warm between invocations, killed and reported as a timeout error when an
invocation runs past the function's timeout, and as `Runtime.OutOfMemory` when its peak resident
memory passes the function's memory setting (Linux). A worker that dies mid-invocation is
`Runtime.ExitError` with Lambda's words for how it ended. Its boto3 talks to the local cloud through
`AWS_ENDPOINT_URL`.

`SEAM.install(runtime)` hooks the runtime into moto at `LambdaFunction._invoke_lambda`, which moto's
Invoke API, Step Functions Task states, SNS and S3 notifications all reach; `LambdaFunction.invoke`
is served so that an uncaught exception is reported as `FunctionError: Unhandled` (moto says
`Handled`), as Lambda does.

A payload is never decoded in this process only to be encoded again: an Invoke request's body that
is a JSON object goes to the worker as its bytes (`RawEvent`; the worker decodes it), the worker
answers with its result's JSON bytes after a header line (no JSON string inside JSON), and moto's
Invoke handler is not left to decode the whole body for a ``qualifier`` key it does not have. One
invoke of a 230 KiB batch from a Step Functions task used to decode it twice and encode it once
more here.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .patches import Seam

WORKER = str(Path(__file__).with_name("_worker.py"))
MEMORY_POLL = 0.05  # seconds between looks at a running invocation's peak memory
INIT_TIMEOUT = 60.0  # seconds a worker may take to import its handler (heavier than Lambda's 10 s: shared CPUs)
# Concurrent workers (execution environments) of one function: Lambda's account default is 1000 for
# all functions; a laptop runs at most this many per function (a smaller ReservedConcurrentExecutions
# is the cap instead), and an invocation beyond it waits for a free worker. A synchronous invocation
# beyond the function's reserved concurrency (invocations in flight, waiting ones included) is
# throttled, as Lambda does. Environment: LOCALCLOUD_LAMBDA_CONCURRENCY.
DEFAULT_CONCURRENCY = 10
# Seconds an idle worker is kept warm before it is stopped (Lambda recycles idle environments after
# minutes). Environment: LOCALCLOUD_LAMBDA_IDLE_SECONDS.
IDLE_TIMEOUT = 300.0
# Lambda's synchronous payload quotas (6 MB each way): what Lambda's errors say.
MAX_REQUEST_BYTES = 6_291_456
MAX_RESPONSE_BYTES = 6_291_556

# Variables of this process that a worker inherits (everything else comes from the function).
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS", "SYSTEMROOT", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")


@dataclass
class FunctionSpec:
    name: str
    handler: str
    asset_dir: Path
    environment: dict[str, str] = field(default_factory=dict)
    timeout: float = 3.0
    memory: int = 128
    arn: str = ""
    logical_id: str = ""
    role_arn: str = ""  # the execution role: the function calls AWS as a session of it
    credentials: dict[str, str] = field(default_factory=dict, compare=False)  # that session's (set by register)
    # ReservedConcurrentExecutions (None: unreserved), read from moto's function at each invocation
    reserved_concurrency: int | None = field(default=None, compare=False)


class Throttled(Exception):
    """Lambda's TooManyRequestsException: the function is at its reserved concurrency."""


@dataclass
class Invocation:
    request_id: str
    payload: bytes
    error: dict | None
    logs: str
    duration_ms: float

    @property
    def failed(self) -> bool:
        return self.error is not None


_UNREAD = object()  # the one key of a RawEvent not yet decoded (so that C code does not take it for {})


class RawEvent(dict):
    """An event that is a JSON object, kept as the Invoke request's bytes: the worker decodes them,
    so a large payload is not decoded here only to be encoded again for the worker.

    To anything in this process that looks at it (a test's stand-in for `LambdaRuntime.invoke` or
    `_Worker.invoke`) it is the decoded dict: the first look decodes the bytes, and from then on it is
    an ordinary dict, sent to the worker as JSON again (so a change made to it is what the function
    gets). Invalid JSON fails that look as moto's decoding would (`json.JSONDecodeError`)."""

    __slots__ = ("raw",)
    _lock = threading.Lock()

    def __init__(self, raw: bytes) -> None:
        super().__init__()
        dict.__setitem__(self, _UNREAD, None)
        self.raw: bytes | None = raw

    def loaded(self) -> RawEvent:
        """Itself, decoded."""
        if getattr(self, "raw", None) is not None:
            with RawEvent._lock:
                raw = getattr(self, "raw", None)
                if raw is not None:
                    value = json.loads(raw.decode("utf-8"))
                    dict.clear(self)
                    dict.update(self, value)
                    self.raw = None
        return self

    def __eq__(self, other: object) -> bool:
        return dict.__eq__(self.loaded(), other.loaded() if isinstance(other, RawEvent) else other)

    def __ne__(self, other: object) -> bool:
        return dict.__ne__(self.loaded(), other.loaded() if isinstance(other, RawEvent) else other)

    __hash__ = None  # type: ignore[assignment]


def _looks(name: str) -> Callable[..., Any]:
    method = getattr(dict, name)

    def look(self: RawEvent, *args: Any, **kwargs: Any) -> Any:
        return method(self.loaded(), *args, **kwargs)

    look.__name__ = look.__qualname__ = name
    return look


for _name in ("__getitem__", "__contains__", "__iter__", "__reversed__", "__len__", "__repr__", "__or__", "__ror__",
              "__ior__", "__setitem__", "__delitem__", "__reduce_ex__", "__sizeof__", "get", "keys", "values", "items",
              "copy", "pop", "popitem", "setdefault", "update", "clear"):
    setattr(RawEvent, _name, _looks(_name))
del _name

_JSON_OBJECT = re.compile(r"[ \t\n\r]*\{")  # a body that can only decode to a JSON object


def _event_bytes(event: Any) -> bytes:
    """The event as JSON for the worker: a request's body as it came, unless something here looked."""
    if type(event) is RawEvent:
        raw = event.raw
        if raw is not None:
            return raw
    return json.dumps(event).encode()


def _bad_event(report: dict, body: bytes) -> Exception:
    """The error moto's decoding of the body raised (the worker found it is not JSON)."""
    if report.get("type") == "JSONDecodeError":
        return json.JSONDecodeError(report["msg"], body.decode("utf-8"), report["pos"])
    if report.get("type") == "RecursionError":
        return RecursionError(report.get("text", ""))
    return ValueError(report.get("text", ""))


class _Worker:
    def __init__(self, spec: FunctionSpec, env: dict[str, str], on_line: Callable[[str], None]):
        self.spec = spec
        self.last_used = time.time()
        asset_dir = str(Path(spec.asset_dir).resolve())  # the worker runs from it: never relative
        req_r, self._req_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        # Its own process group: the processes the function starts are part of its sandbox (memory,
        # and they are stopped with it).
        self.proc = subprocess.Popen(
            [sys.executable, "-u", WORKER, asset_dir, spec.handler, str(req_r), str(resp_w)],
            pass_fds=(req_r, resp_w), env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=asset_dir, start_new_session=True,
        )
        os.close(req_r)
        os.close(resp_w)
        self._buf = bytearray()
        self._lines: list[str] = []
        self._end = threading.Event()
        self._end_marker = ""
        self._on_line = on_line
        self._reader = threading.Thread(target=self._read_output, daemon=True,
                                        name=f"lambda-log-{spec.name}")
        self._reader.start()
        self.init_logs = ""

    def _read_output(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._lines.append(line)
            try:
                self._on_line(line)
            except Exception:  # a log consumer must never break the function
                pass
            if self._end_marker and line == self._end_marker:
                self._end.set()
        self._end.set()

    def _read_frame(self, deadline: float, memory_mb: int | None = None) -> tuple[dict, bytes] | None:
        """The worker's next frame: its header and the bytes after it (None past the deadline).
        With ``memory_mb``, the sandbox's memory is looked at while waiting (every `MEMORY_POLL`)."""
        buf, header, looked = self._buf, None, 0.0
        while True:
            if header is None and (nl := buf.find(b"\n")) >= 0:
                header, start = json.loads(bytes(buf[:nl])), nl + 1
            if header is not None and len(buf) >= start + header.get("size", 0):
                end = start + header.get("size", 0)
                body = bytes(memoryview(buf)[start:end])
                del buf[:end]
                return header, body
            remaining = deadline - time.time()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._resp_r], [], [], min(remaining, MEMORY_POLL) if memory_mb else remaining)
            if memory_mb and time.time() - looked >= MEMORY_POLL:  # not at every chunk of a large result
                looked = time.time()
                if self.peak_mb() > memory_mb:
                    raise _OutOfMemory()
            if not ready:
                continue
            chunk = os.read(self._resp_r, 1 << 20)
            if not chunk:
                raise EOFError("worker exited")
            buf += chunk

    def _send(self, header: dict, body: bytes) -> None:
        header["size"] = len(body)
        data = memoryview(json.dumps(header).encode() + b"\n" + body)
        while data:
            data = data[os.write(self._req_w, data):]

    def wait_ready(self) -> None:
        try:
            frame = self._read_frame(time.time() + INIT_TIMEOUT)
        except EOFError:
            frame = None
        msg = frame[0] if frame is not None else None
        if msg is None:
            self.kill()
            raise RuntimeError(f"function {self.spec.name}: the worker did not start:\n" + "\n".join(self._lines[-20:]))
        self.init_logs = "\n".join(self._lines)
        self._lines.clear()

    def invoke(self, event: Any, request_id: str) -> Invocation:
        body = _event_bytes(event)
        self._end.clear()
        self._end_marker = f"END RequestId: {request_id}"
        started = time.time()
        self._send({"request_id": request_id, "timeout": self.spec.timeout}, body)
        payload = b""
        try:
            frame = self._read_frame(started + self.spec.timeout, memory_mb=self.spec.memory)
            msg = None
            if frame is not None:
                msg, payload = frame
                if "bad_event" in msg:  # nothing ran: the body is not JSON
                    raise _bad_event(msg["bad_event"], body)
            # a peak between two looks; a child process the function ran and waited for (its peak,
            # which the worker reports)
            if msg is not None and max(self.peak_mb(), msg.get("children_peak_kb", 0) / 1024) > self.spec.memory:
                raise _OutOfMemory()
        except _OutOfMemory:
            # Lambda stops a sandbox the moment it uses more than its memory setting.
            self.kill()
            text = f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
            msg = {"error": {"errorType": "Runtime.OutOfMemory", "errorMessage": text}, "fatal": True}
            self._lines += [text, "Runtime.OutOfMemory"]
        except EOFError:
            msg = {"error": {"errorType": "Runtime.ExitError",
                             "errorMessage": f"RequestId: {request_id} Error: {self._exit_reason()}"},
                   "fatal": True}
            self._lines.append(msg["error"]["errorMessage"])
        if msg is None:
            self.kill()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            msg = {"error": {"errorType": "Sandbox.Timedout",
                             "errorMessage": f"{stamp}Z {request_id} Task timed out after "
                                             f"{self.spec.timeout:.2f} seconds"},
                   "fatal": True}
            self._lines.append(f"{stamp}Z {request_id} Task timed out after {self.spec.timeout:.2f} seconds")
        else:
            self._end.wait(2.0)  # the log lines of this invocation
        logs = "\n".join(self._lines)
        self._lines.clear()
        duration = msg.get("duration_ms", round((time.time() - started) * 1000, 2))
        if "error" in msg:
            payload = json.dumps(msg["error"]).encode()
            if msg.get("fatal"):
                self.kill()
            return Invocation(request_id, payload, msg["error"], logs, duration)
        return Invocation(request_id, payload, None, logs, duration)

    def peak_mb(self) -> float:
        """The sandbox's memory as Lambda counts it (the whole process tree): the worker's peak
        resident memory (Linux ``VmHWM``) or, while it has child processes, the proportional resident
        memory (``Pss``: shared pages counted once) of the worker and all its descendants, whichever
        is larger. 0 where /proc is not available."""
        own = _status_kb(self.proc.pid, "VmHWM")
        children = _descendants(self.proc.pid)
        if not children:
            return own / 1024
        tree = sum(_pss_kb(pid) for pid in [self.proc.pid, *children])
        return max(own, tree) / 1024

    def _exit_reason(self) -> str:
        """Lambda's words for a runtime process that ended mid-invocation."""
        try:
            code = self.proc.wait(2)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and code < 0:
            names = {signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted",
                     signal.SIGTERM: "terminated"}
            return f"Runtime exited with error: signal: {names.get(-code, signal.Signals(-code).name)}"
        if code:
            return f"Runtime exited with error: exit status {code}"
        return "Runtime exited without providing a reason"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:  # the worker and whatever it started (its process group)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        fds, self._req_w, self._resp_r = (self._req_w, self._resp_r), -1, -1  # closed once: fd numbers get reused
        for fd in fds:
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass


class _OutOfMemory(Exception):
    pass


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    """Proportional set size (kB): resident memory with pages shared between processes split among them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return _status_kb(pid, "VmRSS")


def _descendants(pid: int) -> list[int]:
    """Every live descendant process of ``pid`` (Linux /proc; [] elsewhere)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        kids: list[int] = []
        try:
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids += [int(k) for k in f.read().split()]
        except (OSError, ValueError):
            continue
        found += kids
        todo += kids
    return found


class LambdaRuntime:
    """Runs registered functions in warm worker subprocesses against the local cloud's endpoint."""

    def __init__(self, endpoint_url: str, region: str = "us-east-1",
                 on_log: Callable[[FunctionSpec, str], None] | None = None,
                 on_invoked: Callable[[FunctionSpec, Invocation], None] | None = None,
                 concurrency: int | None = None, idle_timeout: float | None = None):
        """`concurrency`: workers per function without reserved concurrency (default
        `DEFAULT_CONCURRENCY` or $LOCALCLOUD_LAMBDA_CONCURRENCY); `idle_timeout`: seconds before an
        idle worker is stopped (default `IDLE_TIMEOUT` or $LOCALCLOUD_LAMBDA_IDLE_SECONDS)."""
        self.endpoint_url = endpoint_url
        self.region = region
        self.functions: dict[str, FunctionSpec] = {}
        self._idle: dict[str, list[_Worker]] = {}
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)  # a worker slot became free
        self._running: dict[str, int] = {}  # function -> invocations holding a worker slot
        self._inflight: dict[str, int] = {}  # function -> invocations holding or waiting for one
        self.concurrency = max(1, int(concurrency if concurrency is not None
                                      else os.environ.get("LOCALCLOUD_LAMBDA_CONCURRENCY", DEFAULT_CONCURRENCY)))
        self.idle_timeout = float(idle_timeout if idle_timeout is not None
                                  else os.environ.get("LOCALCLOUD_LAMBDA_IDLE_SECONDS", IDLE_TIMEOUT))
        self.peak_workers: dict[str, int] = {}  # function -> most workers it had at once
        self._stopping = threading.Event()
        self._reaper: threading.Thread | None = None
        self._on_log = on_log
        self._on_invoked = on_invoked
        self._extracted: list[tempfile.TemporaryDirectory] = []
        # role ARN, session name -> the session's AWS_* variables (None: the process's credentials)
        self.credentials: Callable[[str, str], dict[str, str] | None] | None = None

    def register(self, spec: FunctionSpec) -> None:
        """Make ``spec`` invocable; its calls to AWS are signed with a session of its role, as Lambda
        does (raises when the role's trust policy does not let Lambda assume it)."""
        if self.credentials is not None and spec.role_arn and not spec.credentials:
            spec.credentials = self.credentials(spec.role_arn, spec.name) or {}
        with self._lock:
            old = self.functions.get(spec.name)
            self.functions[spec.name] = spec
            if old is not None and old != spec:  # new code or configuration: cold start next time
                for w in self._idle.pop(spec.name, []):
                    w.kill()

    def cold(self, name: str) -> None:
        """Stop the function's idle workers: its next invocation starts a cold container (nothing
        the warm ones cached survives), as after a scale-in or a new deployment."""
        with self._lock:
            workers = self._idle.pop(name, [])
        for w in workers:
            w.kill()

    def environment(self, spec: FunctionSpec) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update({
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "AWS_SESSION_TOKEN": os.environ.get("AWS_SESSION_TOKEN", "testing"),
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}",
            "LAMBDA_TASK_ROOT": str(spec.asset_dir),
            "_HANDLER": spec.handler,
            "LOCALCLOUD_FUNCTION_ARN": spec.arn,
            # no X-Ray daemon locally
            "POWERTOOLS_TRACE_DISABLED": "true",
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        env.update(spec.credentials)
        env.update({k: str(v) for k, v in spec.environment.items()})
        return env

    def spec_for_moto_function(self, fn: Any) -> FunctionSpec:
        """A function created through the Lambda API (not the template): run its uploaded zip."""
        code = getattr(fn, "code_bytes", b"") or b""
        tmp = tempfile.TemporaryDirectory(prefix=f"lambda-{fn.function_name}-")
        self._extracted.append(tmp)
        if code:
            zipfile.ZipFile(io.BytesIO(code)).extractall(tmp.name)
        spec = FunctionSpec(name=fn.function_name, handler=fn.handler, asset_dir=Path(tmp.name),
                            environment=dict(fn.environment_vars or {}), timeout=float(fn.timeout or 3),
                            memory=int(fn.memory_size or 128), arn=fn.function_arn, role_arn=fn.role or "")
        self.register(spec)
        return spec

    def limit(self, spec: FunctionSpec) -> int:
        """How many workers the function may run at once: the local cap, or its reserved concurrency if lower."""
        if spec.reserved_concurrency is not None:
            return max(1, min(spec.reserved_concurrency, self.concurrency))
        return self.concurrency

    def workers(self, name: str) -> int:
        """The function's live workers (idle and busy)."""
        with self._lock:
            return (sum(1 for w in self._idle.get(name, []) if w.alive)
                    + sum(1 for w in self._busy if w.spec.name == name))

    def _acquire(self, spec: FunctionSpec, wait: bool) -> None:
        """A worker slot of the function, waiting for one at the cap. With the function's reserved
        concurrency in flight already, raises `Throttled` (unless `wait`: an asynchronous invocation,
        which Lambda queues; a reserved concurrency of 0 throttles every invocation)."""
        name, reserved = spec.name, spec.reserved_concurrency
        with self._lock:
            inflight = self._inflight.get(name, 0)
            if reserved is not None and (reserved == 0 or (not wait and inflight >= reserved)):
                raise Throttled(name)
            self._inflight[name] = inflight + 1
            while self._running.get(name, 0) >= self.limit(spec):
                self._freed.wait(1.0)
            self._running[name] = self._running.get(name, 0) + 1

    def _release(self, spec: FunctionSpec) -> None:
        with self._lock:
            self._running[spec.name] = max(0, self._running.get(spec.name, 0) - 1)
            self._inflight[spec.name] = max(0, self._inflight.get(spec.name, 0) - 1)
            self._freed.notify_all()

    def _checkout(self, spec: FunctionSpec) -> _Worker:
        with self._lock:
            idle = self._idle.setdefault(spec.name, [])
            while idle:
                w = idle.pop()
                if w.alive:
                    self._busy.add(w)
                    return w
        w = _Worker(spec, self.environment(spec), lambda line: self._on_log and self._on_log(spec, line))
        with self._lock:
            self._busy.add(w)
            count = len(self._idle.get(spec.name, [])) + sum(1 for b in self._busy if b.spec.name == spec.name)
            self.peak_workers[spec.name] = max(self.peak_workers.get(spec.name, 0), count)
            self._start_reaper()
        try:
            w.wait_ready()
        except Exception:
            with self._lock:
                self._busy.discard(w)
            raise
        return w

    def _checkin(self, w: _Worker) -> None:
        with self._lock:
            self._busy.discard(w)
            w.last_used = time.time()
            if w.alive and self.functions.get(w.spec.name) is w.spec and not self._stopping.is_set():
                self._idle.setdefault(w.spec.name, []).append(w)
            else:
                w.kill()

    def _start_reaper(self) -> None:  # under self._lock
        if self._reaper is None and self.idle_timeout > 0:
            self._reaper = threading.Thread(target=self._reap_loop, daemon=True, name="lambda-reaper")
            self._reaper.start()

    def _reap_loop(self) -> None:
        while not self._stopping.wait(min(30.0, max(0.05, self.idle_timeout / 4))):
            self.reap()

    def reap(self, now: float | None = None) -> int:
        """Stop the workers idle for longer than `idle_timeout` (as Lambda recycles idle
        environments); returns how many."""
        now = time.time() if now is None else now
        stale: list[_Worker] = []
        with self._lock:
            for name, idle in self._idle.items():
                keep = [w for w in idle if w.alive and now - w.last_used < self.idle_timeout]
                stale += [w for w in idle if w not in keep]
                self._idle[name] = keep
        for w in stale:
            w.kill()
        return len(stale)

    def invoke(self, name: str, event: Any, sync: bool | None = None) -> Invocation:
        """Run one invocation in a warm (or new) worker. At the function's worker cap it waits for a
        free one; at its reserved concurrency a synchronous invocation raises `Throttled`. `sync`:
        None is what the moto seam says of the call being served (else synchronous)."""
        if sync is None:
            sync = getattr(_calls, "runtime_sync", None)
            sync = True if sync is None else sync
        spec = self.functions.get(name)
        if spec is None:
            raise KeyError(f"function {name!r} is not registered with the local Lambda runtime")
        request_id = str(uuid.uuid4())
        self._acquire(spec, wait=not sync)  # raises Throttled at a reserved concurrency
        try:
            try:
                w = self._checkout(spec)
            except Exception as err:
                error = {"errorType": "Runtime.Unknown", "errorMessage": str(err)}
                inv = Invocation(request_id, json.dumps(error).encode(), error, str(err), 0.0)
            else:
                try:
                    inv = w.invoke(event, request_id)
                    if w.init_logs:
                        inv.logs = w.init_logs + "\n" + inv.logs
                        w.init_logs = ""
                finally:
                    self._checkin(w)
        finally:
            self._release(spec)
        if not inv.failed and sync and len(inv.payload) > MAX_RESPONSE_BYTES:
            # Lambda's 6 MB synchronous response quota: the function ran, its answer is an error
            error = {"errorMessage": f"Response payload size exceeded maximum allowed payload size "
                                     f"({MAX_RESPONSE_BYTES} bytes).", "errorType": "Function.ResponseSizeTooLarge"}
            inv = Invocation(request_id, json.dumps(error).encode(), error, inv.logs, inv.duration_ms)
        if self._on_invoked:
            try:
                self._on_invoked(spec, inv)
            except Exception:
                pass
        return inv

    def stop(self) -> None:
        self._stopping.set()
        if self._reaper is not None:
            self._reaper.join(5)
        with self._lock:
            workers = [w for ws in self._idle.values() for w in ws] + list(self._busy)
            self._idle.clear()
            self._busy.clear()
        for w in workers:
            w.kill()
        for tmp in self._extracted:
            tmp.cleanup()
        self._extracted.clear()


# --------------------------------------------------------------------------- the moto seam

_calls = threading.local()  # .sync: serving a RequestResponse Invoke API call; .runtime_sync: what invoke() is told


def _lambda_error(status: int, error_type: str, message: str, **fields: Any) -> Exception:
    """A Lambda API error as moto renders it (JSON body, x-amzn-ErrorType, the status)."""
    from moto.core.exceptions import JsonRESTError

    err = JsonRESTError(error_type, message)
    err.code = status
    err.description = json.dumps({"Type": "User", "message": message, **fields})
    return err


def _patch(seam: Seam) -> None:
    """Route moto's Lambda executions to ``seam.current`` (a `LambdaRuntime`; the last installed wins)."""
    from moto.awslambda.models import LambdaFunction
    from moto.awslambda.responses import LambdaResponse

    def _invoke_lambda(self, event: Any = None) -> tuple[str, bool, str]:
        rt = seam.current
        if rt is None:
            return seam["_invoke_lambda"](self, event)
        if isinstance(event, (str, bytes)):
            try:
                event = json.loads(event)
            except ValueError:
                pass
        if event is None:
            event = {}
        if self.function_name not in rt.functions:
            rt.spec_for_moto_function(self)
        reserved = getattr(self, "reserved_concurrency", None)
        rt.functions[self.function_name].reserved_concurrency = None if reserved in (None, "") else int(reserved)
        # synchronous only when serving a RequestResponse Invoke API call (not SNS, S3 → Lambda, Event)
        _calls.runtime_sync = bool(getattr(_calls, "sync", False))
        try:
            inv = rt.invoke(self.function_name, event)
        except Throttled:
            raise _lambda_error(429, "TooManyRequestsException", "Rate Exceeded.",
                                Reason="ReservedFunctionConcurrentInvocationLimitExceeded") from None
        finally:
            _calls.runtime_sync = None
        # no per-invocation copy of the logs (moto's save_logs): the local cloud's FunctionLogs
        # delivers the lines to CloudWatch Logs as they are printed, a stream per worker
        return inv.payload.decode("utf-8"), inv.failed, inv.logs

    def invoke(self, body: str, request_headers: Any, response_headers: Any) -> Any:
        """moto's ``LambdaFunction.invoke``, but a body that is a JSON object reaches the worker as
        its bytes (`RawEvent`: moto decoded it here), and an error is ``Unhandled``."""
        if seam.current is None:  # no local cloud running: moto's own behaviour
            return seam["invoke"](self, body, request_headers, response_headers)
        # an Invoke API call names its type (RequestResponse when it does not); moto's own deliveries
        # (SNS -> Lambda, S3 -> Lambda) call with no request headers at all: asynchronous, as in AWS
        inv_type = (request_headers.get("x-amz-invocation-type") or request_headers.get("X-Amz-Invocation-Type")
                    or ("RequestResponse" if request_headers else "Event"))
        data = body.encode() if isinstance(body, str) else (body or b"")
        if inv_type == "RequestResponse" and len(data) > MAX_REQUEST_BYTES:  # Lambda's 6 MB request quota
            raise _lambda_error(413, "RequestEntityTooLargeException",
                                f"Request must be smaller than {MAX_REQUEST_BYTES} bytes for the InvokeFunction "
                                "operation")
        _calls.sync = inv_type == "RequestResponse"
        try:
            if isinstance(body, str) and _JSON_OBJECT.match(body):
                event: Any = RawEvent(data)
            elif body:
                event = json.loads(body)
            else:
                event = "{}"
            res, errored, logs = self._invoke_lambda(event=event)
        except (json.JSONDecodeError, RecursionError) as err:  # the body (the worker decodes an object's)
            raise _lambda_error(400, "InvalidRequestContentException", "Could not parse request body into json: "
                                f"Could not parse payload into json: {err}") from None
        finally:
            _calls.sync = False
        if errored:  # moto says Handled; an uncaught exception is Unhandled in Lambda
            response_headers["x-amz-function-error"] = "Unhandled"
        response_headers["x-amz-executed-version"] = "$LATEST"
        if request_headers.get("x-amz-invocation-type", "RequestResponse") == "RequestResponse":  # as moto
            response_headers["x-amz-log-result"] = base64.b64encode(logs.encode("utf-8")).decode("utf-8")
            return res.encode("utf-8")
        return res

    def _get_param(self, param_name: str, if_none: Any = None) -> Any:
        # moto's Invoke handler looks for a "qualifier" in the query string, then as a key of the
        # JSON body (the function's payload, decoded whole), then in the URL. Lambda takes it from
        # the query string only (`?Qualifier=`, as boto3 sends it): a payload's "qualifier" key is
        # the function's business, and is not decoded here
        if param_name == "qualifier" and not self.automated_parameter_parsing and seam.current is not None:
            val = self.querystring.get("Qualifier") or self.querystring.get(param_name)
            if val is not None:
                return val[0]
            if self.uri_match and param_name in self.uri_match:
                return self.uri_match[param_name]
            return if_none
        return seam["_get_param"](self, param_name, if_none)

    seam.replace(LambdaFunction, "_invoke_lambda", _invoke_lambda)
    seam.replace(LambdaFunction, "invoke", invoke)
    seam.replace(LambdaResponse, "_get_param", _get_param)


SEAM = Seam(_patch)
