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
is wrapped so that an uncaught exception is reported as `FunctionError: Unhandled` (moto says
`Handled`), as Lambda does.
"""
from __future__ import annotations

import io
import json
import os
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


class _Worker:
    def __init__(self, spec: FunctionSpec, env: dict[str, str], on_line: Callable[[str], None]):
        self.spec = spec
        req_r, self._req_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-u", WORKER, str(spec.asset_dir), spec.handler, str(req_r), str(resp_w)],
            pass_fds=(req_r, resp_w), env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(spec.asset_dir),
        )
        os.close(req_r)
        os.close(resp_w)
        self._buf = b""
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

    def _read_response(self, deadline: float, memory_mb: int | None = None) -> dict | None:
        while b"\n" not in self._buf:
            remaining = deadline - time.time()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._resp_r], [], [], min(remaining, MEMORY_POLL) if memory_mb else remaining)
            if memory_mb and self.peak_mb() > memory_mb:
                raise _OutOfMemory()
            if not ready:
                continue
            chunk = os.read(self._resp_r, 65536)
            if not chunk:
                raise EOFError("worker exited")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def wait_ready(self) -> None:
        try:
            msg = self._read_response(time.time() + INIT_TIMEOUT)
        except EOFError:
            msg = None
        if msg is None:
            self.kill()
            raise RuntimeError(f"function {self.spec.name}: the worker did not start:\n" + "\n".join(self._lines[-20:]))
        self.init_logs = "\n".join(self._lines)
        self._lines.clear()

    def invoke(self, event: Any, request_id: str) -> Invocation:
        self._end.clear()
        self._end_marker = f"END RequestId: {request_id}"
        started = time.time()
        os.write(self._req_w, (json.dumps({"request_id": request_id, "event": event,
                                           "timeout": self.spec.timeout}) + "\n").encode())
        try:
            msg = self._read_response(started + self.spec.timeout, memory_mb=self.spec.memory)
            if msg is not None and self.peak_mb() > self.spec.memory:  # a peak between two looks
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
        return Invocation(request_id, msg["payload"].encode(), None, logs, duration)

    def peak_mb(self) -> float:
        """The worker's peak resident memory (Linux ``VmHWM``; 0 where /proc is not available)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except (OSError, ValueError):
            pass
        return 0.0

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


class LambdaRuntime:
    """Runs registered functions in warm worker subprocesses against the local cloud's endpoint."""

    def __init__(self, endpoint_url: str, region: str = "us-east-1",
                 on_log: Callable[[FunctionSpec, str], None] | None = None,
                 on_invoked: Callable[[FunctionSpec, Invocation], None] | None = None):
        self.endpoint_url = endpoint_url
        self.region = region
        self.functions: dict[str, FunctionSpec] = {}
        self._idle: dict[str, list[_Worker]] = {}
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
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
            if w.alive and self.functions.get(w.spec.name) is w.spec:
                self._idle.setdefault(w.spec.name, []).append(w)
            else:
                w.kill()

    def invoke(self, name: str, event: Any) -> Invocation:
        spec = self.functions.get(name)
        if spec is None:
            raise KeyError(f"function {name!r} is not registered with the local Lambda runtime")
        request_id = str(uuid.uuid4())
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
        if self._on_invoked:
            try:
                self._on_invoked(spec, inv)
            except Exception:
                pass
        return inv

    def stop(self) -> None:
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

def _patch(seam: Seam) -> None:
    """Route moto's Lambda executions to ``seam.current`` (a `LambdaRuntime`; the last installed wins)."""
    from moto.awslambda.models import LambdaFunction

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
        inv = rt.invoke(self.function_name, event)
        try:
            self.save_logs(inv.logs + f"\nREPORT RequestId: {inv.request_id}\tDuration: {inv.duration_ms} ms")
        except Exception:
            pass
        return inv.payload.decode("utf-8"), inv.failed, inv.logs

    def invoke(self, body: str, request_headers: Any, response_headers: Any) -> Any:
        result = seam["invoke"](self, body, request_headers, response_headers)
        if seam.current is None:  # no local cloud running: moto's own behaviour
            return result
        if response_headers.get("x-amz-function-error") == "Handled":
            response_headers["x-amz-function-error"] = "Unhandled"
        response_headers["x-amz-executed-version"] = "$LATEST"
        return result

    seam.replace(LambdaFunction, "_invoke_lambda", _invoke_lambda)
    seam.replace(LambdaFunction, "invoke", invoke)


SEAM = Seam(_patch)
