"""``shipyard runs MODEL`` and ``shipyard wait MODEL``: following the pipeline's work from the CLI.

A *run* is one Step Functions execution of the stack's pipeline (``PipelineArn``) whose input names
the model: an upload under ``datasets/<model>/``, ``shipyard train``, a drift retrain. What a run
made is read from the execution (input: dataset and trigger; output: the version Allocate took,
Validate's verdict) and from the registry (the version's status now and its reason).

``wait`` follows one run, printing each step as the execution history records it (on stderr), and
ends with one line on stdout saying how it ended; its exit status says the same:

    0  promoted (or the dataset version had already been handled: nothing to train)
    3  rejected by the gate (the version is ``rejected``, production unchanged)
    4  failed (the version is ``failed``; or the execution failed, timed out or was aborted)
    5  --timeout passed while the run was still going (the run goes on)
    1  no such model, version or run (the message says which exist)
"""
from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime

EXIT_PROMOTED, EXIT_REJECTED, EXIT_FAILED, EXIT_TIMED_OUT = 0, 3, 4, 5
POLL_SECONDS = 1.0
APPEAR_SECONDS = 30.0  # how long `wait` gives an upload's run to appear (S3 -> EventBridge -> Step Functions)
_ENDED = {"FAILED": "failed", "TIMED_OUT": "timed out", "ABORTED": "aborted"}


def _sleep(seconds: float) -> None:  # a seam for tests
    time.sleep(seconds)


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(text: str | None):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


class Runs:
    """The pipeline's executions of one model, newest first (each execution's input read once)."""

    def __init__(self, sfn, pipeline_arn: str, model: str):
        self.sfn, self.pipeline_arn, self.model = sfn, pipeline_arn, model
        self._inputs: dict[str, dict] = {}
        self._ended: dict[str, dict] = {}  # descriptions of ended executions (they change no more)

    def _input(self, arn: str) -> dict:
        if arn not in self._inputs:
            desc = self.sfn.describe_execution(executionArn=arn)
            self._inputs[arn] = _json(desc.get("input")) or {}
            if desc.get("status") != "RUNNING":
                self._ended[arn] = desc
        return self._inputs[arn]

    def describe(self, arn: str) -> dict:
        return self._ended.get(arn) or self.sfn.describe_execution(executionArn=arn)

    def __iter__(self):
        """List entries (executionArn, name, status, startDate, stopDate) of this model's runs, newest
        first, with ``input`` added."""
        for page in self.sfn.get_paginator("list_executions").paginate(stateMachineArn=self.pipeline_arn):
            for e in page.get("executions", []):
                doc = self._input(e["executionArn"])
                if doc.get("model") == self.model:
                    yield {**e, "input": doc}

    def newest(self) -> dict | None:
        return next(iter(self), None)


def summarize(desc: dict, version: dict | None) -> dict:
    """One run: execution, times, status, trigger, dataset, version, outcome and reason."""
    doc = _json(desc.get("input")) or desc.get("input") or {}
    out = _json(desc.get("output")) or {}
    run, validation = out.get("run") or {}, out.get("validation") or {}
    ds = doc.get("dataset") or {}
    status = desc["status"]
    number = run.get("version") or (version or {}).get("version")
    reason = (version or {}).get("reason")
    duplicate_of = None
    if status == "RUNNING":
        outcome = "running"
    elif status == "SUCCEEDED":
        if run.get("duplicate"):
            outcome = "duplicate"
            duplicate_of = (run.get("duplicate_of") or {}).get("execution_arn")
            reason = f"this dataset version was already handled by {duplicate_of}"
        elif validation.get("promote") or (out.get("failure") or {}).get("promoted") or \
                (version or {}).get("status") in ("production", "archived"):
            outcome = "promoted"
        else:
            outcome = "rejected"
        reason = reason or validation.get("reason")
    else:
        outcome = _ENDED.get(status, status.lower())
        reason = reason or desc.get("cause") or desc.get("error")
    return {
        "execution": desc.get("name"), "execution_arn": desc["executionArn"],
        "started": _iso(desc.get("startDate")), "stopped": _iso(desc.get("stopDate")), "status": status,
        "trigger": (doc.get("trigger") or {}).get("source"),
        "dataset": {k: ds.get(k) for k in ("bucket", "key", "version_id")} if ds else None,
        "version": number, "version_status": (version or {}).get("status"), "score": _score(version),
        "outcome": outcome, "reason": reason, "duplicate_of": duplicate_of,
    }


def _score(version: dict | None) -> dict | None:
    """The version's score on its metric (``{"r2": 0.93}``), once trained."""
    metrics = (version or {}).get("metrics") or {}
    metric = metrics.get("metric")
    value = metrics.get(metric) if metric else None
    return {metric: value} if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_VERSION_OUTCOME = {"production": "promoted", "archived": "promoted", "rejected": "rejected", "failed": "failed"}


def summarize_version(version: dict) -> dict:
    """A version whose execution is not listed (Step Functions keeps executions 90 days; a version made
    without the pipeline names none): what the registry says of it."""
    arn = version.get("execution_arn")
    ds = (version.get("lineage") or {}).get("dataset") or {}
    return {
        "execution": arn.rsplit(":", 1)[-1] if arn else None, "execution_arn": arn,
        "started": version.get("created_at"), "stopped": None, "status": None, "trigger": None,
        "dataset": {k: ds.get(k) for k in ("bucket", "key", "version_id")} if ds else None,
        "version": version["version"], "version_status": version.get("status"), "score": _score(version),
        "outcome": _VERSION_OUTCOME.get(version.get("status"), version.get("status")),
        "reason": version.get("reason"), "duplicate_of": None,
    }


def _versions_by_execution(registry, model: str) -> dict[str, dict]:
    return {v["execution_arn"]: v for v in registry.list_versions(model) if v.get("execution_arn")}


def _known_model(registry, model: str) -> None:
    from infra.commandline import CliError

    names = [m["name"] for m in registry.list_models()]
    if model not in names:
        raise CliError(f"unknown model {model!r}; known models: {', '.join(names) or 'none'}")


def _pipeline(args) -> tuple:
    import boto3

    from infra.commandline import _output, _stack_name, stack_outputs

    stack = _stack_name(args)
    outputs = stack_outputs(stack)
    return boto3.client("stepfunctions"), _output(outputs, "PipelineArn", stack), outputs


# --------------------------------------------------------------------------- runs


def _short(text: str | None, width: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_runs(args) -> int:
    from infra.commandline import EXIT_OK, _registry, _table

    registry = _registry(args)
    _known_model(registry, args.model)
    sfn, pipeline_arn, _ = _pipeline(args)
    all_versions = registry.list_versions(args.model)
    versions = {v["execution_arn"]: v for v in all_versions if v.get("execution_arn")}
    found = []
    runs = Runs(sfn, pipeline_arn, args.model)
    for entry in runs:
        desc = runs.describe(entry["executionArn"])
        found.append(summarize(desc, versions.get(entry["executionArn"])))
        if args.limit and len(found) >= args.limit:
            break
    else:  # then the versions no listed execution made, newest first
        listed = {r["execution_arn"] for r in found}
        rest = [summarize_version(v) for v in reversed(all_versions) if v.get("execution_arn") not in listed]
        found += rest[: args.limit - len(found)] if args.limit else rest
    if args.json:
        print(json.dumps({"model": args.model, "runs": found}, indent=2))
        return EXIT_OK
    if not found:
        print(f"no runs of model {args.model} yet: upload a CSV under datasets/{args.model}/ or run "
              f"`shipyard train {args.model}`")
        return EXIT_OK
    rows = []
    for r in found:
        ds = r["dataset"] or {}
        dataset = ds.get("key") and f"{ds['key']} @{_short(ds.get('version_id'), 12)}"
        version = r["version"] and f"v{r['version']}" + (f" {r['version_status']}" if r["version_status"] else "")
        score = " ".join(f"{k}={v:.4g}" for k, v in (r["score"] or {}).items()) or None
        rows.append([r["execution"], r["started"], r["stopped"], r["status"], r["trigger"], dataset, version,
                     score, r["outcome"], _short(r["reason"], 160)])
    print(_table(rows, ["execution", "started", "stopped", "status", "trigger", "dataset", "version", "score",
                        "outcome", "reason"]))
    return EXIT_OK


# --------------------------------------------------------------------------- wait


def _history(sfn, arn: str) -> list[dict]:
    events, kwargs = [], {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events += page.get("events", [])
        if not page.get("nextToken"):
            return sorted(events, key=lambda e: e["id"])
        kwargs["nextToken"] = page["nextToken"]


class Progress:
    """Execution history events as progress lines: each step's start and end (with what it decided)."""

    def __init__(self, out=None):
        self.out = out or sys.stderr
        self.last_id = 0
        self.entered: dict[str, float] = {}
        self.state: str | None = None  # the task state running now
        self.error = False  # its last attempt failed (a retry or a Catch follows)

    def _say(self, event: dict, text: str) -> None:
        when = event["timestamp"].astimezone(UTC).strftime("%H:%M:%S")
        print(f"  {when}  {text}", file=self.out, flush=True)

    def feed(self, events: list[dict]) -> None:
        for e in events:
            if e["id"] <= self.last_id:
                continue
            self.last_id = e["id"]
            kind = e["type"]
            if kind.endswith("StateEntered") and not kind.startswith("Choice"):
                name = e["stateEnteredEventDetails"]["name"]
                self.entered[name] = e["timestamp"].timestamp()
                self.state, self.error = name, False
                if kind.startswith("Task"):
                    self._say(e, f"{name} …")
                else:
                    self._say(e, f"-> {name}")
            elif kind in ("TaskScheduled", "LambdaFunctionScheduled") and self.error:
                self.error = False
                self._say(e, f"{self.state} retrying")
            elif kind in ("TaskSucceeded", "LambdaFunctionSucceeded"):
                self.error = False
            elif kind == "TaskStateExited":
                details = e["stateExitedEventDetails"]
                name = details["name"]
                took = e["timestamp"].timestamp() - self.entered.get(name, e["timestamp"].timestamp())
                if self.error:  # caught: the run goes to MarkFailed
                    self._say(e, f"{name} failed ({took:.1f} s)")
                else:
                    self._say(e, f"{name} done ({took:.1f} s){self._detail(name, _json(details.get('output')) or {})}")
                self.state, self.error = None, False
            elif kind in ("TaskFailed", "TaskTimedOut", "LambdaFunctionFailed", "LambdaFunctionTimedOut"):
                details = next((v for k, v in e.items() if k.endswith("EventDetails")), {}) or {}
                cause = _json(details.get("cause"))
                if isinstance(cause, dict):  # a Lambda's error, or a failed training job's description
                    cause = cause.get("errorMessage") or cause.get("FailureReason") or cause
                self.error = True
                self._say(e, f"  error {details.get('error', kind)}: {_short(str(cause or ''), 300)}")

    @staticmethod
    def _detail(name: str, state: dict) -> str:
        run, validation, failure = state.get("run") or {}, state.get("validation") or {}, state.get("failure") or {}
        if name == "Allocate" and run:
            if run.get("duplicate"):
                return f": already handled by {(run.get('duplicate_of') or {}).get('execution_arn')}"
            return f": version {run.get('version')}"
        train = state.get("train") or {}
        if name == "TrainOnSageMaker" and train.get("training_job_name"):
            return f": training job {train['training_job_name']} {str(train.get('status', '')).lower()}"
        if name == "Validate" and validation:
            verdict = "promote" if validation.get("promote") else "reject"
            return f": {verdict}" + (f" ({validation['reason']})" if validation.get("reason") else "")
        if name == "MarkFailed" and failure.get("reason"):
            return f": {_short(str(failure['reason']), 300)}"
        return ""


def outcome_line(model: str, summary: dict) -> str:
    v = f" v{summary['version']}" if summary.get("version") else ""
    if summary["outcome"] == "duplicate":
        return f"already handled by {summary['duplicate_of']} (use --force to train again)"
    if summary["outcome"] in ("promoted", "rejected", "failed") and v:
        return f"{model}{v} {summary['outcome']}: {summary.get('reason') or '-'}"
    return f"{model}: run {summary['outcome']}: {summary.get('reason') or '-'}"


def exit_status(summary: dict) -> int:
    return {"promoted": EXIT_PROMOTED, "duplicate": EXIT_PROMOTED, "rejected": EXIT_REJECTED,
            "running": EXIT_TIMED_OUT}.get(summary["outcome"], EXIT_FAILED)


def follow(sfn, execution_arn: str, model: str, registry, timeout: float | None = None, out=None,
           since: float | None = None) -> int:
    """Print a run's steps as they happen until it ends (or `timeout` seconds pass); the outcome line
    on stdout; returns the exit status (module docstring). `timeout` counts from `since` (default: now)."""
    progress = Progress(out)
    deadline = None if not timeout else (since or time.time()) + timeout
    desc = sfn.describe_execution(executionArn=execution_arn)
    print(f"{model}: run {desc['name']} ({execution_arn})", file=progress.out, flush=True)
    while True:
        progress.feed(_history(sfn, execution_arn))
        desc = sfn.describe_execution(executionArn=execution_arn)
        if desc["status"] != "RUNNING":
            progress.feed(_history(sfn, execution_arn))  # what happened since the last look
            break
        if deadline is not None and time.time() >= deadline:
            print(f"{model}: run {desc['name']} still running after {timeout:g} s (it goes on; "
                  f"`shipyard wait {model}` again to follow it)")
            return EXIT_TIMED_OUT
        _sleep(POLL_SECONDS)
    version = None
    number = (_json(desc.get("output")) or {}).get("run", {}).get("version")
    try:
        version = _versions_by_execution(registry, model).get(execution_arn)
    except Exception:  # noqa: BLE001 - the execution alone still says how it ended
        version = None
    if version is None and number:
        version = {"version": number}
    summary = summarize(desc, version)
    print(outcome_line(model, summary), flush=True)
    return exit_status(summary)


def _find_run(runs: Runs, s3, bucket: str | None, model: str, appear: float = APPEAR_SECONDS) -> str:
    """The newest run of the model, or the run the newest upload is starting (waited for briefly)."""
    from functions.pipeline.execution import latest_dataset
    from infra.commandline import CliError

    newest = runs.newest()
    upload = None
    if bucket:
        try:
            upload = latest_dataset(s3, bucket, model)
        except Exception:  # noqa: BLE001 - no listing right: the newest run it is
            upload = None
    if upload is not None:
        def started_by_upload(run: dict | None) -> bool:
            return run is not None and (run["input"].get("dataset") or {}).get("version_id") == upload["version_id"]

        uploaded = datetime.fromisoformat(upload["last_modified"]).timestamp()
        fresh = newest is None or uploaded > newest["startDate"].timestamp() - 1.0
        if fresh and not started_by_upload(newest):
            print(f"{model}: waiting for the run of s3://{bucket}/{upload['key']} (version {upload['version_id']}) "
                  "to start …", file=sys.stderr, flush=True)
            deadline = time.time() + appear
            while time.time() < deadline:
                _sleep(POLL_SECONDS)
                candidate = runs.newest()
                if candidate is not None and (started_by_upload(candidate) or newest is None
                                              or candidate["executionArn"] != newest["executionArn"]):
                    return candidate["executionArn"]
            raise CliError(f"the newest dataset of {model}, s3://{bucket}/{upload['key']} (version "
                           f"{upload['version_id']}), started no run in {appear:g} s (its upload event may "
                           "be in the pipeline's dead-letter queue); `shipyard runs "
                           f"{model}` lists the runs there are")
    if newest is None:
        raise CliError(f"model {model!r} has no runs yet: upload a CSV under datasets/{model}/ or run "
                       f"`shipyard train {model}`")
    return newest["executionArn"]


def cmd_wait(args) -> int:
    import boto3

    from infra.commandline import CliError, _registry

    registry = _registry(args)
    _known_model(registry, args.model)
    sfn, pipeline_arn, outputs = _pipeline(args)
    began = time.time()
    if args.version is not None:
        v = registry.get_version(args.model, args.version)
        if not v.get("execution_arn"):
            raise CliError(f"{args.model} v{args.version} was not made by a pipeline run (it names no execution)")
        arn = v["execution_arn"]
    else:
        arn = _find_run(Runs(sfn, pipeline_arn, args.model), boto3.client("s3"), outputs.get("DataBucketName"),
                        args.model, min(APPEAR_SECONDS, args.timeout or APPEAR_SECONDS))
    return follow(sfn, arn, args.model, registry, args.timeout, since=began)  # finding it counts too
