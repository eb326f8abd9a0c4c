"""Following the work from the CLI, on the local cloud, driven as a user would: upload a dataset,
``shipyard wait``, ``shipyard runs``, ``shipyard logs`` (and function logs in CloudWatch Logs).

The module's local cloud (tests/pipeline/conftest.py) is its own: the models here start with no
versions.
"""
from __future__ import annotations

import json
import re
import time

import pytest

from tests.pipeline import data

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:.*WaitConditionHandle")]

STREAM = re.compile(r"^\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}$")


@pytest.fixture
def cli(cloud, monkeypatch, tmp_path, capsys):
    """``shipyard …`` in a project directory of the test models, pointed at the local cloud:
    returns (exit status, stdout, stderr)."""
    from infra import cli as shipyard
    from tests.pipeline.conftest import CONFIG

    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"shipyard": CONFIG}}))
    monkeypatch.chdir(tmp_path)
    for k, v in cloud.environment().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr("infra.runs.POLL_SECONDS", 0.2)

    def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = shipyard.main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return call


def test_wait_follows_an_upload_to_promotion_and_runs_lists_it(cloud, run, registry, cli):
    r = run("prices", data.prices(seed=31), "first.csv")
    status, out, err = cli("wait", "prices")  # right after the upload: finds the run it started
    assert status == 0, (out, err)
    (line,) = out.splitlines()
    assert line.startswith("prices v1 promoted: ")
    steps = re.findall(r"^\s+\d\d:\d\d:\d\d\s+(\w+) done", err, re.M)
    assert steps == ["Allocate", "Train", "Validate", "Promote"], err
    assert "Allocate done" in err and ": version 1" in err and "-> Promoted" in err
    execution = r.execution()
    assert execution["name"] in err

    status, out, err = cli("runs", "prices")
    assert status == 0, err
    header, _, row = out.splitlines()[:3]
    assert header.split()[:4] == ["execution", "started", "stopped", "status"]
    assert row.startswith(execution["name"]) and "SUCCEEDED" in row and "v1 production" in row
    assert "promoted" in row and "datasets/prices/first.csv @" in row and " s3 " in row and " r2=0." in row

    status, out, _ = cli("runs", "prices", "--json")
    (mine,) = json.loads(out)["runs"]
    assert mine["execution_arn"] == execution["executionArn"] and mine["outcome"] == "promoted"
    assert mine["dataset"] == {"bucket": r.bucket, "key": r.key, "version_id": r.version_id}
    assert (mine["version"], mine["version_status"], mine["trigger"]) == (1, "production", "s3")
    assert mine["started"].endswith("Z") and mine["stopped"] >= mine["started"]
    assert mine["score"]["r2"] > 0.9 and mine["reason"]

    # the same run again, by its version: already over, the same outcome
    status, out, _ = cli("wait", "prices", "--version", "1")
    assert status == 0 and out.startswith("prices v1 promoted: ")

    # a second run, by hand with --wait: newest first in `runs`, --limit
    status, out, err = cli("train", "prices", "--dataset", f"s3://{r.bucket}/{r.key}", "--force", "--wait")
    arn, verdict = out.splitlines()
    assert verdict.startswith("prices v2 ") and status == (0 if " promoted: " in verdict else 3), (out, err)
    assert "Validate done" in err
    status, out, _ = cli("runs", "prices", "--json", "--limit", "1")
    (newest,) = json.loads(out)["runs"]
    assert (newest["execution_arn"], newest["version"], newest["trigger"]) == (arn, 2, "cli")


def test_runs_and_wait_name_the_known_models_for_an_unknown_one(cli):
    for argv in (("runs", "nosuch"), ("wait", "nosuch")):
        status, out, err = cli(*argv)
        assert status == 1 and out == ""
        assert err.startswith("shipyard: unknown model 'nosuch'; known models: ") and "prices" in err, err
    status, _, err = cli("wait", "prices", "--version", "99")
    assert status == 1 and "has no version 99" in err


def test_runs_shows_versions_no_listed_execution_made(registry, cli):
    v = registry.allocate_version("deadline")["version"]  # made without the pipeline
    registry.record_failure("deadline", v, "made by hand")
    status, out, _ = cli("runs", "deadline", "--json")
    (row,) = json.loads(out)["runs"]
    assert (row["execution"], row["version"], row["outcome"], row["reason"]) == (None, v, "failed", "made by hand")
    status, out, _ = cli("runs", "prices", "--limit", "0")
    assert status == 0 and len(out.splitlines()) >= 4


def test_wait_on_a_failing_upload_exits_4_with_the_reason(cloud, run, registry, cli):
    r = run("animals", b"x1,x2,colour\n" + b"1,2,red\n" * 30, "no-target.csv")
    status, out, err = cli("wait", "animals")
    assert status == 4, (out, err)
    (line,) = out.splitlines()
    (v,) = registry.versions_from_dataset(r.bucket, r.key, r.version_id)
    assert line == f"animals v{v['version']} failed: {registry.get_version('animals', v['version'])['reason']}"
    assert "target column 'species' not found" in line
    assert "Train …" in err and "error DatasetError" in err and "Train failed (" in err and "-> Failed" in err, err
    status, out, _ = cli("runs", "animals", "--json")
    (mine,) = json.loads(out)["runs"]
    assert (mine["status"], mine["outcome"], mine["version_status"]) == ("FAILED", "failed", "failed")
    assert "target column 'species' not found" in mine["reason"]


def test_wait_on_a_rejected_run_exits_3(run, cli):
    run("strict", data.animals(seed=33), "strict.csv")
    status, out, err = cli("wait", "strict")
    assert status == 3, (out, err)
    assert out.startswith("strict v1 rejected: accuracy ") and "below min_score 0.999" in out
    assert "Validate done" in err and ": reject" in err and "-> Rejected" in err


def test_wait_timeout_exits_5_while_the_run_goes_on(cloud, run, cli):
    key = "datasets/prices/slow.csv"

    def slow_read(req):  # Train's read of the dataset takes 3 s: the run outlasts --timeout
        if req.method == "GET" and req.path.endswith("/" + key):
            time.sleep(3)

    remove = cloud.intercept(slow_read)
    try:
        run("prices", data.prices(seed=35), "slow.csv")
        status, out, err = cli("wait", "prices", "--timeout", "0.5")
        assert status == 5, (out, err)
        assert re.match(r"^prices: run \S+ still running after 0.5 s \(it goes on; `shipyard wait prices` again",
                        out)
        status, out, _ = cli("wait", "prices")  # the same run, to its end
        assert status in (0, 3) and re.match(r"^prices v\d+ (promoted|rejected): ", out), out
    finally:
        remove()


# --------------------------------------------------------------------------- logs


def _functions(cloud, monkeypatch):
    from infra.logs import stack_functions

    for k, v in cloud.environment().items():
        monkeypatch.setenv(k, v)
    return stack_functions("Shipyard")


def test_function_logs_reach_cloudwatch_logs_a_stream_per_worker_without_copies(cloud, run, cli, monkeypatch):
    functions = _functions(cloud, monkeypatch)
    assert {"allocate", "train", "validate", "record", "inference", "drift"} <= set(functions)  # no retrain here
    assert functions["train2048"]["memory"] == 2048 and functions["train"]["memory"] > 2048
    r = run("prices", data.prices(seed=32), "logs.csv")
    assert r.execution()["status"] == "SUCCEEDED"
    logs = cloud.client("logs")
    group = f"/aws/lambda/{functions['train']['function']}"
    assert functions["train"]["log_group"] == group
    events = [e for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group)
              for e in page["events"]]
    messages = [e["message"] for e in events]
    starts = [m for m in messages if m.startswith("START RequestId: ")]
    assert starts, messages
    for start in starts:  # each invocation once: START, END and REPORT, in its worker's stream
        rid = start.split()[2]
        assert messages.count(start) == 1
        assert messages.count(f"END RequestId: {rid}") == 1
        (report,) = [m for m in messages if m.startswith(f"REPORT RequestId: {rid}\t")]
        assert re.search(r"\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\tMemory Size: \d+ MB$", report)
    # the handler's own (JSON) lines are there too, between its invocation's START and END
    own = [json.loads(m) for m in messages if m.startswith("{")]
    assert any(o["message"] == "pipeline step done" and f"START RequestId: {o['function_request_id']} Version: "
               f"$LATEST" in starts for o in own), messages[:20]
    streams = [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]]
    assert streams and all(STREAM.match(s) for s in streams), streams
    assert {e["logStreamName"] for e in events} <= set(streams)


def test_logs_prints_a_functions_lines_by_the_name_users_know(cloud, run, cli, monkeypatch):
    functions = _functions(cloud, monkeypatch)
    run("prices", data.prices(seed=34), "logs2.csv").execution()
    status, out, err = cli("logs", "validate", "--since", "1h")
    assert status == 0, err
    assert f"function {functions['validate']['function']}" in err
    lines = out.splitlines()
    assert any("START RequestId: " in line for line in lines) and any("REPORT RequestId: " in line for line in lines)
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [0-9a-f]{8} ", line) for line in lines), lines[:5]
    # a physical name works as well
    status, out2, _ = cli("logs", functions["validate"]["function"], "--since", "1h")
    assert status == 0 and out2.count("START RequestId: ") == out.count("START RequestId: ")


def test_logs_follow_prints_new_lines_until_interrupted(cloud, cli, monkeypatch):
    import infra.logs

    functions = _functions(cloud, monkeypatch)
    name = functions["inference"]["function"]
    calls = []

    def sleep(_seconds):
        calls.append(1)
        if len(calls) == 1:  # a request arrives while following
            cloud.client("lambda").invoke(FunctionName=name, Payload=json.dumps(
                {"httpMethod": "GET", "path": "/models", "resource": "/models", "headers": {},
                 "requestContext": {"stage": "prod"}}).encode())
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(infra.logs, "_sleep", sleep)
    status, out, _ = cli("logs", "inference", "--follow", "--since", "1s")
    assert status == 0 and len(calls) == 2
    assert out.count("START RequestId: ") >= 1 and out.count("REPORT RequestId: ") >= 1, out


def test_logs_of_an_unknown_function_lists_the_known_ones(cli):
    status, out, err = cli("logs", "nosuch")
    assert status == 1 and out == ""
    assert err.startswith("shipyard: unknown function 'nosuch' in stack 'Shipyard'; its functions: ")
    for name in ("allocate (", "train (", "validate (", "inference (", "drift (Shipyard-drift)"):
        assert name in err, err
    status, _, err = cli("logs", "train", "--since", "yesterday")
    assert status == 1 and "expected a duration" in err


# --------------------------------------------------------------------------- the parts, without a cloud


def test_since_takes_durations_and_iso_times():
    from infra.commandline import CliError
    from infra.logs import parse_since

    now = 1_700_000_000.0
    assert parse_since("10m", now) == parse_since("10", now) == int((now - 600) * 1000)
    assert parse_since("90s", now) == int((now - 90) * 1000) and parse_since("1d", now) == int((now - 86400) * 1000)
    assert parse_since("2026-01-31T12:00:00Z") == parse_since("2026-01-31T12:00:00") == 1769860800000
    with pytest.raises(CliError, match="expected a duration"):
        parse_since("yesterday")


def test_logs_in_a_stack_that_does_not_exist_says_so_and_takes_no_other_stacks_functions():
    """A missing stack is not the local cloud's outputs-only stack: no functions taken by name prefix
    (``Shipyard`` would take ``Shipyard-dev``'s); a physical function name still works."""
    from botocore.exceptions import ClientError

    from infra.commandline import CliError
    from infra.logs import resolve_function

    other = {"FunctionName": "Shipyard-dev-PipelineTrain1234", "Handler": "functions.pipeline.train.handler",
             "MemorySize": 3008}
    drift = {"FunctionName": "Shipyard-drift", "Handler": "functions.drift.handler.handler", "MemorySize": 512}

    class Pages:
        def __init__(self, pages=None, error=None):
            self.pages, self.error = pages, error

        def paginate(self, **_):
            if self.error:
                raise self.error
            return self.pages

    class CloudFormation:
        def get_paginator(self, _):
            return Pages(error=ClientError({"Error": {"Code": "ValidationError",
                                                      "Message": "Stack with id Shipyard does not exist"}},
                                           "ListStackResources"))

    class Lambda:
        def get_paginator(self, _):
            return Pages([{"Functions": [other, drift]}])

        def get_function_configuration(self, FunctionName):
            if FunctionName == drift["FunctionName"]:
                return drift
            raise ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no"}},
                              "GetFunctionConfiguration")

    class Session:
        def client(self, name):
            return CloudFormation() if name == "cloudformation" else Lambda()

    with pytest.raises(CliError, match=r"stack 'Shipyard' not found \(Stack with id Shipyard does not exist\)"):
        resolve_function("Shipyard", "train", Session())
    assert resolve_function("Shipyard", "Shipyard-drift", Session())["function"] == "Shipyard-drift"


def test_functions_are_known_by_their_handlers_module():
    from infra.logs import logical_name

    assert [logical_name(h) for h in (
        "functions.pipeline.train.handler", "functions.pipeline.record.handler", "functions.inference.handler.handler",
        "functions.drift.handler.handler", "functions.drift.retrain.handler", "index.handler")] == [
        "train", "record", "inference", "drift", "retrain", "index"]


def test_function_logs_are_batched_per_worker_stream(monkeypatch):
    """Lines go into a buffer per worker (log reader thread); the invocation's end writes them with
    its REPORT line, in one PutLogEvents per stream; a killed worker's message is written for it."""
    import threading

    from localcloud import functionlogs

    calls = []

    class Backend:
        groups: dict = {}

        def create_log_group(self, name, tags):
            self.groups[name] = type("G", (), {"streams": set()})()

        def create_log_stream(self, group, stream):
            self.groups[group].streams.add(stream)

        def put_log_events(self, group, stream, events):
            calls.append((group, stream, [e["message"] for e in events]))

    logs = functionlogs.FunctionLogs("123456789012", "us-east-1", interval=60)
    monkeypatch.setattr(logs, "_backend", lambda: Backend())

    def worker(rid):
        for line in (f"START RequestId: {rid} Version: $LATEST", "hello", f"END RequestId: {rid}"):
            logs.line("fn", line)

    threads = [threading.Thread(target=worker, args=(rid,)) for rid in ("r1", "r2")]
    for t in threads:
        t.start()
        t.join()
    assert calls == []  # buffered
    logs.invoked("fn", "r1", 12.3, 256)
    logs.invoked("fn", "r2", 1.0, 256, {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 3.00 s"})
    (g1, s1, m1), (g2, s2, m2) = calls
    assert g1 == g2 == "/aws/lambda/fn" and s1 != s2 and STREAM.match(s1) and STREAM.match(s2)
    assert m1 == ["START RequestId: r1 Version: $LATEST", "hello", "END RequestId: r1",
                  "REPORT RequestId: r1\tDuration: 12.30 ms\tBilled Duration: 13 ms\tMemory Size: 256 MB"]
    assert m2[-3:] == ["Task timed out after 3.00 s", "END RequestId: r2",
                       "REPORT RequestId: r2\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 256 MB"]
