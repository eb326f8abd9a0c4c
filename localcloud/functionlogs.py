"""Function logs into CloudWatch Logs, as Lambda delivers them: ``/aws/lambda/<name>``, one stream per
execution environment (worker) named ``YYYY/MM/DD/[$LATEST]<hex>``, with the START / END / REPORT
lines of each invocation.

The local cloud hands every line a worker prints to `FunctionLogs.line` (from the worker's log
reader thread) and every finished invocation to `FunctionLogs.invoked`. Lines are buffered and
written in batches straight into moto's Logs backend in this process (no HTTP call per line): a
flusher thread writes what is buffered every ``interval`` seconds, so ``--follow`` sees a long
invocation's lines as they come, and the end of an invocation writes its stream at once, so its
lines are in CloudWatch Logs by the time the invoke returns. The log group is created on the first
line when missing (Lambda needs it to exist in AWS; locally, as with a function's first run, it is
made for you). moto writes no copy of its own (``LambdaFunction.save_logs``, a stream per
invocation): only its Docker path calls it, which the local Lambda runtime replaces.
"""
from __future__ import annotations

import threading
import time
import uuid
import weakref

# What a killed execution environment leaves for the log (Lambda writes these lines itself).
_FATAL = ("Sandbox.Timedout", "Runtime.OutOfMemory", "Runtime.ExitError")


def lambda_log_group(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"


def _stream_name() -> str:
    return f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{uuid.uuid4().hex}"


def _worker_stream_name() -> str | None:
    """The stream name the current log reader thread's worker was given (its environment's
    ``AWS_LAMBDA_LOG_STREAM_NAME``, what ``context.log_stream_name`` says), where it can be read."""
    worker = getattr(getattr(threading.current_thread(), "_target", None), "__self__", None)
    pid = getattr(getattr(worker, "proc", None), "pid", None)
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"AWS_LAMBDA_LOG_STREAM_NAME="):
                    return item.split(b"=", 1)[1].decode("utf-8", "replace") or None
    except OSError:
        pass
    return None


class FunctionLogs:
    """Buffers function log lines per (log group, stream) and writes them to moto's Logs backend."""

    def __init__(self, account_id: str, region: str, interval: float = 0.25):
        self.account_id, self.region, self.interval = account_id, region, interval
        self._lock = threading.Lock()  # buffers and stream maps
        self._write_lock = threading.Lock()  # one writer at a time: batches stay in order
        self._buffers: dict[tuple[str, str], list[dict]] = {}
        self._streams: weakref.WeakKeyDictionary[threading.Thread, str] = weakref.WeakKeyDictionary()
        self._by_request: dict[str, tuple[str, str]] = {}  # request id -> (group, stream) of its worker
        self._last_ms: dict[tuple[str, str], int] = {}
        self._groups: set[str] = set()
        self._flusher: threading.Thread | None = None
        self._stopped = threading.Event()

    # ------------------------------------------------------------------ input
    def line(self, function_name: str, line: str) -> None:
        """A line a function's worker printed (called from that worker's log reader thread)."""
        group = lambda_log_group(function_name)
        thread = threading.current_thread()
        with self._lock:
            stream = self._streams.get(thread)
        if stream is None:
            stream = _worker_stream_name() or _stream_name()
            with self._lock:
                self._streams[thread] = stream
        if line.startswith("START RequestId: "):
            request_id = line[len("START RequestId: "):].split(" ", 1)[0]
            with self._lock:
                self._by_request[request_id] = (group, stream)
        self._append(group, stream, [line])
        self._start_flusher()

    def invoked(self, function_name: str, request_id: str, duration_ms: float, memory_mb: int,
                error: dict | None = None) -> None:
        """An invocation ended: its REPORT line (and, for a killed environment, Lambda's own lines),
        then its stream is written at once."""
        with self._lock:
            where = self._by_request.pop(request_id, None)
        if where is None:  # it never reached a worker (the environment did not start)
            return
        lines = []
        if error and error.get("errorType") in _FATAL:
            lines += [str(error.get("errorMessage") or error["errorType"]), f"END RequestId: {request_id}"]
        billed = max(1, int(-(-float(duration_ms) // 1)))
        lines.append(f"REPORT RequestId: {request_id}\tDuration: {float(duration_ms):.2f} ms\t"
                     f"Billed Duration: {billed} ms\tMemory Size: {memory_mb} MB")
        self._append(*where, lines)
        self.flush(where)

    def _append(self, group: str, stream: str, lines: list[str]) -> None:
        now = int(time.time() * 1000)
        key = (group, stream)
        with self._lock:
            ts = max(now, self._last_ms.get(key, 0))  # chronological within a stream
            self._last_ms[key] = ts
            self._buffers.setdefault(key, []).extend({"timestamp": ts, "message": line or " "} for line in lines)

    # ------------------------------------------------------------------ output
    def _backend(self):
        from moto.logs.models import logs_backends

        return logs_backends[self.account_id][self.region]

    def flush(self, only: tuple[str, str] | None = None) -> None:
        """Write what is buffered (of one stream, or all) into CloudWatch Logs."""
        with self._write_lock:
            with self._lock:
                if only is None:
                    batches, self._buffers = self._buffers, {}
                else:
                    batches = {only: self._buffers.pop(only)} if only in self._buffers else {}
            if not batches:
                return
            backend = self._backend()
            for (group, stream), events in batches.items():
                try:
                    if group not in backend.groups:
                        backend.create_log_group(group, {})
                    if stream not in backend.groups[group].streams:
                        backend.create_log_stream(group, stream)
                    for i in range(0, len(events), 10_000):  # PutLogEvents takes 10,000 events a call
                        backend.put_log_events(group, stream, events[i:i + 10_000])
                except Exception:  # noqa: BLE001 - a log sink must never break a function
                    continue

    def _start_flusher(self) -> None:
        if self._flusher is not None:
            return
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(target=self._flush_loop, daemon=True, name="lambda-logs-flush")
        self._flusher.start()

    def _flush_loop(self) -> None:
        # until stopped (the local cloud's stop())
        while not self._stopped.wait(self.interval):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - keep flushing
                pass

    def stop(self) -> None:
        """Write what is left and stop the flusher."""
        self._stopped.set()
        try:
            self.flush()
        except Exception:  # noqa: BLE001
            pass

