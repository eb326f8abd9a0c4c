"""No failure is lost: every kind of error ends the version `failed` with a short reason and a
`Pipeline Failed` event, on the synthesized state machine run by the local cloud (its own cloud:
these tests change a function's memory, the Train state's timeout and the workers).

The kinds: a step's exception (with a 660 KB message, as a converter printing a whole tree), a result
over Step Functions' 256 KiB quota (States.DataLimitExceeded, which States.ALL does not catch), a
task timeout (States.Timeout), a crashed runtime (Runtime.ExitError), out of memory
(Runtime.OutOfMemory); then `shipyard train --force` on a failing dataset, and a version some earlier
execution left `training` past the execution timeout.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import threading
import time
from datetime import UTC, datetime

import pytest

from tests.pipeline import data
from tests.pipeline.conftest import events_of

pytestmark = pytest.mark.slow

TRAIN = "functions.pipeline.train.handler"


def _states(cloud, execution_arn: str) -> list[str]:
    sfn = cloud.client("stepfunctions")
    history = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]


def _failed(cloud, registry, r, reason_start: str) -> dict:
    """The run's execution failed through MarkFailed; its version is `failed` with a short reason, one event."""
    from functions.pipeline.errors import MAX_MESSAGE_CHARS

    execution = r.execution()
    assert execution["status"] == "FAILED", execution
    (rec,) = registry.versions_from_dataset(r.bucket, r.key, r.version_id)
    v = registry.get_version(r.model, rec["version"])
    assert v["status"] == "failed", v
    assert v["reason"].startswith(reason_start), v["reason"]
    assert len(v["reason"]) <= MAX_MESSAGE_CHARS + 100
    assert execution["cause"] == v["reason"] and execution["error"] == "PipelineFailed"
    assert _states(cloud, execution["executionArn"])[-2:] == ["StillPromoted?", "Failed"]
    failed = [e for e in events_of(cloud, "Pipeline Failed")
              if e["detail"]["execution_arn"] == execution["executionArn"]]
    assert len(failed) == 1 and failed[0]["detail"]["reason"] == v["reason"], failed
    assert failed[0]["detail"]["version"] == v["version"]
    return v


def _train_spec(cloud):
    """The "Train" function (the largest of the stack's Train functions, one per compute.memory)."""
    return max((s for s in cloud.runtime.functions.values() if s.handler == TRAIN), key=lambda s: s.memory)


def _is_train_of(cloud, name: str, event, key: str) -> bool:
    spec = cloud.runtime.functions.get(name)
    return (spec is not None and spec.handler == TRAIN and isinstance(event, dict)
            and ((event.get("input") or {}).get("dataset") or {}).get("key") == key)


TREE = "<node id='1' threshold='0.5'/>" * 22_000  # 660 KB, like the converter error of issue 9


def test_a_step_error_with_a_huge_message_fails_the_version_with_a_short_reason(cloud, run, registry):
    # S3 refuses the dataset with a 660 KB message: Train raises it (a ClientError, not retried).
    # Unbounded, it would not fit in the state (States.DataLimitExceeded) and MarkFailed would never run.
    key = "datasets/animals/huge-error.csv"
    cloud.faults.fail_gets(key, 1, status=403, code="InvalidObjectState", message=f"the tree: {TREE}")
    r = run("animals", data.animals(seed=5), "huge-error.csv")
    v = _failed(cloud, registry, r, "InvalidObjectState: An error occurred (InvalidObjectState) when calling the "
                                    "GetObject operation: the tree: <node id='1'")
    assert cloud.faults.hits[key] == 1
    note = re.search(r"\[cut: ([\d,]+) characters in all; the full text is in the function's log "
                     r"\((/aws/lambda/[^,]+), request ([0-9a-f-]+)\)\]$", v["reason"])
    assert note, v["reason"]
    # ... and there it is, whole, in parts that CloudWatch Logs does not cut (256 KB an event)
    parts = [json.loads(e["line"]) for e in cloud.error_logs if e["function"] == note.group(2).split("/")[-1]
             and "InvalidObjectState message in full, part" in e["line"]]
    parts = [p for p in parts if p.get("function_request_id") == note.group(3)]
    assert len(parts) == 17 and all(len(json.dumps(p)) < 256 * 1024 for p in parts)
    assert TREE in "".join(p["full_text"] for p in sorted(parts, key=lambda p: int(p["message"].split()[-3])))


def test_a_result_over_the_payload_quota_fails_the_version(cloud, run, registry, monkeypatch):
    from localcloud.lambda_runtime import Invocation

    real, key = cloud.runtime.invoke, "datasets/prices/oversized.csv"

    def invoke(name, event):
        inv = real(name, event)
        if _is_train_of(cloud, name, event, key) and not inv.failed:
            # Train did its work and returned more than Step Functions carries (a step without the bound)
            out = dict(json.loads(inv.payload), trees=["<node/>"] * 40_000)
            return Invocation(inv.request_id, json.dumps(out).encode(), None, inv.logs, inv.duration_ms)
        return inv

    monkeypatch.setattr(cloud.runtime, "invoke", invoke)
    r = run("prices", data.prices(seed=5), "oversized.csv")
    v = _failed(cloud, registry, r, "States.DataLimitExceeded: The state/task 'arn:aws:lambda:")
    assert "returned a result with a size exceeding the maximum number of bytes service limit" in v["reason"]


def test_a_task_timeout_fails_the_version(cloud, run, registry, monkeypatch):
    sfn, arn = cloud.client("stepfunctions"), cloud.outputs["PipelineArn"]
    definition = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
    doc = json.loads(definition)
    assert doc["States"]["Train"]["TimeoutSeconds"] > 900  # the function's 15 min + 30 s
    doc["States"]["Train"]["TimeoutSeconds"] = 2  # so that the test need not wait 15 min
    key = "datasets/prices/hangs.csv"
    real = cloud.runtime.invoke

    def invoke(name, event):
        if _is_train_of(cloud, name, event, key):
            time.sleep(5)  # a Lambda that hangs past the state's timeout
            from localcloud.lambda_runtime import Invocation

            error = {"errorType": "Hung", "errorMessage": "never seen: the state timed out first"}
            return Invocation("hung", json.dumps(error).encode(), error, "", 5000.0)
        return real(name, event)

    monkeypatch.setattr(cloud.runtime, "invoke", invoke)
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(doc))
    try:
        r = run("prices", data.prices(seed=6), "hangs.csv")
        v = _failed(cloud, registry, r, "States.Timeout")
    finally:
        sfn.update_state_machine(stateMachineArn=arn, definition=definition)
    assert v["reason"] == "States.Timeout"


def test_a_crashed_runtime_fails_the_version(cloud, run, registry, monkeypatch):
    from localcloud import lambda_runtime

    real, key, killed = lambda_runtime._Worker.invoke, "datasets/prices/crash.csv", []

    def invoke(worker, event, request_id):
        if worker.spec.handler == TRAIN and ((event.get("input") or {}).get("dataset") or {}).get("key") == key:
            def crash():  # as a segfault in a native library would, once the invocation has started
                while not any(line.startswith(f"START RequestId: {request_id}") for line in list(worker._lines)):
                    time.sleep(0.002)
                os.kill(worker.proc.pid, signal.SIGKILL)
                killed.append(request_id)

            threading.Thread(target=crash, daemon=True).start()
        return real(worker, event, request_id)

    monkeypatch.setattr(lambda_runtime._Worker, "invoke", invoke)
    r = run("prices", data.prices(seed=7), "crash.csv")
    v = _failed(cloud, registry, r, "Runtime.ExitError: RequestId: ")
    assert killed and v["reason"] == (f"Runtime.ExitError: RequestId: {killed[0]} "
                                      "Error: Runtime exited with error: signal: killed")


def test_running_out_of_memory_fails_the_version(cloud, run, registry):
    spec = _train_spec(cloud)
    # Train at Lambda's smallest memory: scikit-learn, skl2onnx and onnxruntime alone need more
    cloud.runtime.register(dataclasses.replace(spec, memory=128))
    try:
        r = run("prices", data.prices(seed=8), "oom.csv")
        v = _failed(cloud, registry, r, "Runtime.OutOfMemory: RequestId: ")
    finally:
        cloud.runtime.register(spec)
    assert v["reason"].endswith(" Error: Runtime exited with error: signal: killed")


def test_train_force_twice_on_a_failing_dataset_leaves_every_version_failed(cloud, run, registry, monkeypatch,
                                                                           tmp_path, capsys):
    from infra import cli
    from tests.pipeline.conftest import CONFIG

    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"shipyard": CONFIG}}))
    monkeypatch.chdir(tmp_path)
    for k, v in cloud.environment().items():
        monkeypatch.setenv(k, v)
    key = "datasets/animals/always-fails.csv"
    cloud.faults.fail_gets(key, 3, status=403, code="InvalidObjectState", message=f"the tree: {TREE}")
    r = run("animals", data.animals(seed=9), "always-fails.csv")
    r.execution()
    for _ in range(2):
        # `shipyard wait`'s exit status: 4 failed
        assert cli.main(["train", "animals", "--dataset", f"s3://{r.bucket}/{r.key}", "--force", "--wait"]) == 4
        arn, verdict = capsys.readouterr().out.splitlines()
        assert re.match(r"animals v\d+ failed: InvalidObjectState: An error occurred \(InvalidObjectState\)", verdict)
        assert len(verdict) < 1200
    versions = [registry.get_version("animals", rec["version"])
                for rec in registry.versions_from_dataset(r.bucket, r.key, r.version_id)]
    assert len(versions) == 3 and cloud.faults.hits[key] == 3
    assert [v["status"] for v in versions] == ["failed"] * 3
    assert all(len(v["reason"]) <= 1100 and "[cut: " in v["reason"] for v in versions)


def test_a_version_left_training_past_the_execution_timeout_is_marked_failed_by_the_next_run(cloud, run, registry):
    from functions.core.registry import _vsk, utc_iso

    gone = "arn:aws:states:us-east-1:123456789012:execution:gone:1"
    dataset = {"bucket": cloud.outputs["DataBucketName"], "key": "datasets/strict/lost.csv", "version_id": "v0"}
    stuck = registry.allocate_version("strict", execution_arn=gone, dataset=dataset)["version"]
    three_hours_ago = utc_iso(datetime.fromtimestamp(time.time() - 3 * 3600, UTC))
    cloud.client("dynamodb").update_item(
        TableName=cloud.outputs["RegistryTableName"], Key={"pk": {"S": "MODEL#strict"}, "sk": {"S": _vsk(stuck)}},
        UpdateExpression="SET created_at = :t", ExpressionAttributeValues={":t": {"S": three_hours_ago}})
    r = run("strict", data.animals(seed=10), "next.csv")
    execution = r.execution()
    assert execution["status"] == "SUCCEEDED"  # the new run goes on (strict rejects it)
    v = registry.get_version("strict", stuck)
    assert v["status"] == "failed"
    assert v["reason"].startswith("StaleTraining: still training 3.0 h after it was allocated")
    assert f"past the pipeline's execution timeout of 2.0 h: execution {gone} ended without recording" in v["reason"]
    assert v["reason"].endswith(f"found by {execution['executionArn']}")
    (event,) = [e for e in events_of(cloud, "Pipeline Failed") if e["detail"]["version"] == stuck
                and e["detail"]["model"] == "strict"]
    assert event["detail"]["reason"] == v["reason"] and event["detail"]["execution_arn"] == gone
    assert event["resources"] == [execution["executionArn"]]
