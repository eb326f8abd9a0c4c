"""`LocalCloud(state_dir=…)` / `shipyard local up --state-dir DIR`: names and data survive a restart.

The real stack: upload a dataset, the pipeline trains and promotes a model, stop; start again with
the same directory: the same names and outputs, the registry's production version, the dataset's
object version, and a signed predict answered by that version (the inference function reads the
artifact by the S3 version id the registry recorded). A start without a state directory is empty.
On a small template: a run still going at the stop ends ABORTED, queued messages and table items
come back, and a state directory that cannot be used (another template, another stack, a corrupt
file, another version) is an error saying how to start fresh, with nothing started.
"""
import json
import pickle
import time

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.local.conftest import TEMPLATE
from tests.support import local_up_kwargs

FEATURES = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _signed(method, url, body=None):
    req = AWSRequest(method=method, url=url, data=body,
                     headers={"Content-Type": "application/json"} if body else {})
    SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(req)
    return requests.request(method, url, data=body, headers=dict(req.headers), timeout=120)


def _iris() -> bytes:
    from tests import realdata

    iris = realdata.sklearn_csv("iris").decode()
    for part in ("sepal_length", "sepal_width", "petal_length", "petal_width"):
        iris = iris.replace(f"{part}_(cm)", part)
    return iris.replace(",target\n", ",species\n", 1).encode()


def _start(template, log, **kwargs):
    from localcloud import LocalCloud

    cloud = LocalCloud(template, clock=False, log=log.append, **kwargs)
    cloud.start()
    return cloud


def test_the_real_stack_keeps_names_registry_data_and_serves_the_promoted_model_after_a_restart(
        shipyard_assembly, tmp_path):
    from localcloud import Template

    template = Template.load(shipyard_assembly)
    state, log = tmp_path / "state", []
    cloud = _start(template, log, aws_port=0, api_port=0, state_dir=state)
    try:
        first_start = cloud.startup_seconds
        ports = {"aws_port": cloud.aws_port, "api_port": cloud.api_port}
        outputs, names = dict(cloud.outputs), dict(cloud.physical_ids)
        bucket, key = outputs["DataBucketName"], "datasets/iris/iris.csv"
        version_id = cloud.client("s3").put_object(Bucket=bucket, Key=key, Body=_iris())["VersionId"]
        executions = cloud.wait_for_executions(outputs["PipelineArn"], timeout=240)
        assert [e["status"] for e in executions] == ["SUCCEEDED"], executions
        model = _signed("GET", outputs["ApiUrl"] + "models/iris").json()
        production = model["aliases"]["production"]
        assert production is not None, model
    finally:
        cloud.stop()
    assert (state / "localcloud-state.pickle").is_file()
    saved = f"{(state / 'localcloud-state.pickle').stat().st_size / 1e6:.1f} MB in {cloud.state.last_save_seconds:.2f}s"

    log.clear()
    cloud = _start(template, log, state_dir=state, **ports)
    try:
        restart = cloud.startup_seconds
        assert cloud.outputs == outputs  # bucket and table names, ARNs, the API URL (same ports)
        assert cloud.physical_ids["RegistryDataDCB4E45E"] == names["RegistryDataDCB4E45E"] == bucket
        assert any(line.startswith(f"state restored from {state}") for line in log), log
        stack = cloud.client("cloudformation").describe_stacks(StackName="Shipyard")["Stacks"][0]
        assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]} == outputs

        # the registry (DynamoDB) and the dataset's version (S3, the same version id)
        assert _signed("GET", outputs["ApiUrl"] + "models/iris").json()["aliases"]["production"] == production
        versions = cloud.client("s3").list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
        assert [v["VersionId"] for v in versions] == [version_id]
        # the finished execution and its history
        restored = cloud.client("stepfunctions").list_executions(stateMachineArn=outputs["PipelineArn"])
        assert [e["executionArn"] for e in restored["executions"]] == [e["executionArn"] for e in executions]
        assert restored["executions"][0]["status"] == "SUCCEEDED"
        history = cloud.client("stepfunctions").get_execution_history(
            executionArn=executions[0]["executionArn"])["events"]
        assert history[0]["type"] == "ExecutionStarted" and history[-1]["type"] == "ExecutionSucceeded"
        cloud.evaluate_alarms()  # restored executions are not counted again as finished just now
        assert [c for c in cloud.alarm_changes if c["to"] == "ALARM"] == []

        # a cold inference function reads the model artifact by the version id the registry recorded
        answer = _signed("POST", outputs["ApiUrl"] + "models/iris/predict",
                         json.dumps({"instances": [FEATURES]}).encode())
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == production
        assert answer.json()["predictions"] == ["setosa"]

        # the cloud goes on from there: the next upload trains the next version, numbered after vN
        more = b"\n".join(_iris().rstrip(b"\n").split(b"\n")[:-1]) + b"\n"  # other data (one row less)
        cloud.client("s3").put_object(Bucket=bucket, Key="datasets/iris/iris-2.csv", Body=more)
        after = cloud.wait_for_executions(outputs["PipelineArn"], timeout=240)
        assert sorted(e["status"] for e in after) == ["SUCCEEDED", "SUCCEEDED"], after
        versions = _signed("GET", outputs["ApiUrl"] + "models/iris").json()["versions"]
        assert sorted(v["version"] for v in versions) == [production, production + 1]
    finally:
        cloud.stop()
    # without a state directory: new names, nothing in them
    fresh = _start(template, [], aws_port=0, api_port=0)
    print(f"start-up: first with a state dir {first_start:.2f}s, restart with the state {restart:.2f}s, "
          f"without a state dir {fresh.startup_seconds:.2f}s; saved at the stop: {saved}")
    try:
        assert fresh.outputs["DataBucketName"] != bucket
        s3 = fresh.client("s3")
        assert "Versions" not in s3.list_object_versions(Bucket=fresh.outputs["DataBucketName"])
        assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert fresh.client("dynamodb").scan(TableName=fresh.outputs["RegistryTableName"])["Items"] == []
        assert _signed("GET", fresh.outputs["ApiUrl"] + "models/iris").json()["aliases"]["production"] is None
    finally:
        fresh.stop()


# --------------------------------------------------------------------------- a small template


def _small(asset_dir, extra=None, stack_name="LocalTest"):
    from localcloud import Template

    body = json.loads(json.dumps(TEMPLATE))
    body["Resources"].pop("Unknown")
    body["Resources"]["DeadLetters"] = {"Type": "AWS::SQS::Queue"}
    body["Resources"]["Waiting"] = {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
        "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
        "DefinitionString": json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 600,
                                                                               "End": True}}})}}
    body["Resources"].update(extra or {})
    return Template.from_dict(body, stack_name=stack_name, assets={"app.zip": asset_dir})


def test_a_running_execution_ends_aborted_and_messages_items_and_logs_come_back(asset_dir, tmp_path):
    state, log = tmp_path / "state", []
    cloud = _start(_small(asset_dir), log, aws_port=0, api_port=0, state_dir=state)
    try:
        ids = dict(cloud.physical_ids)
        sfn, sqs = cloud.client("stepfunctions"), cloud.client("sqs")
        running = sfn.start_execution(stateMachineArn=ids["Waiting"], name="before-the-stop",
                                      input='{"n": 1}')["executionArn"]
        sqs.send_message(QueueUrl=ids["DeadLetters"], MessageBody="dead letter")
        received = sqs.receive_message(QueueUrl=ids["DeadLetters"])["Messages"]  # in flight at the stop
        assert [m["Body"] for m in received] == ["dead letter"]
        cloud.client("lambda").invoke(FunctionName=ids["Record"], Payload=b'{"pk": "kept"}')
        items = cloud.client("dynamodb").scan(TableName=ids["Table"])["Items"]
        assert [i["pk"]["S"] for i in items] == ["kept"]
        before = sfn.describe_execution(executionArn=running)
        assert before["status"] == "RUNNING"
    finally:
        cloud.stop()

    cloud = _start(_small(asset_dir), log, aws_port=0, api_port=0, state_dir=state)
    try:
        assert {k: cloud.physical_ids[k] for k in ("Table", "Record", "DeadLetters", "Waiting", "Bucket")} == \
            {k: ids[k] for k in ("Table", "Record", "DeadLetters", "Waiting", "Bucket")}
        sfn = cloud.client("stepfunctions")
        aborted = sfn.describe_execution(executionArn=running)
        assert aborted["status"] == "ABORTED" and aborted["input"] == before["input"] == '{"n": 1}'
        assert aborted["startDate"] == before["startDate"] and aborted["stopDate"] >= before["startDate"]
        events = sfn.get_execution_history(executionArn=running)["events"]
        assert events[-1]["type"] == "ExecutionAborted"
        assert events[-1]["executionAbortedEventDetails"]["error"] == "LocalCloud.Stopped"
        assert sfn.list_executions(stateMachineArn=ids["Waiting"], statusFilter="ABORTED")["executions"]
        messages = cloud.client("sqs").receive_message(QueueUrl=ids["DeadLetters"])["Messages"]
        assert [m["Body"] for m in messages] == ["dead letter"]
        assert cloud.client("dynamodb").scan(TableName=ids["Table"])["Items"] == items
        logs = cloud.client("logs").filter_log_events(logGroupName=f"/aws/lambda/{ids['Record']}")["events"]
        assert logs, "the function's log events come back"
        # the cloud goes on: a new execution of the same state machine starts and runs
        again = sfn.start_execution(stateMachineArn=ids["Waiting"], name="after-the-restart")["executionArn"]
        assert sfn.describe_execution(executionArn=again)["status"] == "RUNNING"
    finally:
        cloud.stop()


def test_a_state_dir_that_cannot_be_used_is_an_error_saying_how_to_start_fresh(asset_dir, tmp_path):
    from localcloud import LocalCloud
    from localcloud import cloud as cloud_mod
    from localcloud.state import FILE_NAME, StateError

    state = tmp_path / "state"
    cloud = _start(_small(asset_dir), [], aws_port=0, api_port=0, state_dir=state)
    cloud.stop()
    saved = (state / FILE_NAME).read_bytes()

    def refused(template, match):
        c = LocalCloud(template, aws_port=0, api_port=0, clock=False, log=lambda m: None, state_dir=state)
        with pytest.raises(StateError, match=match) as err:
            c.start()
        assert f"delete {state}" in str(err.value)
        assert cloud_mod._active is None and c._server is None  # nothing left running
        assert (state / FILE_NAME).read_bytes() == saved  # and the file as it was

    extra = {"Other": {"Type": "AWS::SQS::Queue"}}
    refused(_small(asset_dir, extra), r"another template of stack 'LocalTest' \(resources new: Other\)")
    refused(_small(asset_dir, stack_name="Elsewhere"), "holds the state of stack 'LocalTest', not 'Elsewhere'")

    elsewhere = LocalCloud(_small(asset_dir), aws_port=0, api_port=0, clock=False, log=lambda m: None,
                           state_dir=state, region="eu-west-1")
    with pytest.raises(StateError, match="in us-east-1, not eu-west-1"):
        elsewhere.start()

    header = pickle.loads(saved)  # the first pickle in the file: its header
    (state / FILE_NAME).write_bytes(pickle.dumps(dict(header, moto="0.0.1")) + saved[len(pickle.dumps(header)):])
    with pytest.raises(StateError, match=r"saved by another version of the local cloud .*moto 0\.0\.1"):
        LocalCloud(_small(asset_dir), aws_port=0, api_port=0, clock=False, log=lambda m: None,
                   state_dir=state).start()
    (state / FILE_NAME).write_bytes(saved[: len(saved) // 2])  # cut short (a disk full, a copy interrupted)
    with pytest.raises(StateError, match="cannot be read .*to start fresh, delete"):
        LocalCloud(_small(asset_dir), aws_port=0, api_port=0, clock=False, log=lambda m: None,
                   state_dir=state).start()


def test_saves_are_atomic_and_periodic_while_something_changes(asset_dir, tmp_path):
    from localcloud.state import FILE_NAME

    state = tmp_path / "state"
    cloud = _start(_small(asset_dir), [], aws_port=0, api_port=0, state_dir=state, state_interval=0.2)
    try:
        first = (state / FILE_NAME).stat().st_mtime_ns  # the names, saved at the first start
        time.sleep(0.6)
        assert (state / FILE_NAME).stat().st_mtime_ns == first  # nothing changed: not saved again
        cloud.client("s3").put_object(Bucket=cloud.physical_ids["Bucket"], Key="k", Body=b"v")
        deadline = time.time() + 10
        while (state / FILE_NAME).stat().st_mtime_ns == first and time.time() < deadline:
            time.sleep(0.1)
        assert (state / FILE_NAME).stat().st_mtime_ns != first
        assert [p.name for p in state.iterdir()] == [FILE_NAME]  # no temporary file left behind
    finally:
        cloud.stop()


@pytest.mark.parametrize(("flag", "state_dir"), [([], None), (["--state-dir", "some/dir"], "some/dir")])
def test_local_up_passes_the_state_dir_to_the_local_cloud(monkeypatch, flag, state_dir):
    assert local_up_kwargs(monkeypatch, *flag)["state_dir"] == state_dir


def test_local_up_saves_the_state_when_interrupted(shipyard_assembly, tmp_path):
    """Ctrl-C on `shipyard local up --state-dir DIR` stops it cleanly, and the stop saves: the object
    put just before is in DIR with its version id."""
    import os
    import re
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import boto3

    from localcloud import Template
    from localcloud.state import StateDir
    from tests.local.test_up import ROOT, _lines

    state, stderr_path = tmp_path / "state", tmp_path / "local-up.stderr"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "local", "up", "--aws-port", "0",
                                 "--api-port", "0", "--assembly", str(shipyard_assembly), "--state-dir", str(state)],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                # started with SIGINT ignored, as a script's background job is (and as a
                                # test worker was): Ctrl-C must stop it all the same. It hung for ever before.
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        lines, stdout = [], _lines(proc.stdout)
        while not lines or lines[-1] != "ready":
            line = stdout.get(timeout=180)
            assert line is not None, stderr_path.read_text()[-2000:]
            lines.append(line.strip())
        aws = re.fullmatch(r"aws: (http://127\.0\.0\.1:\d+)", lines[0]).group(1)
        cfn = boto3.client("cloudformation", endpoint_url=aws, region_name="us-east-1")
        stack = cfn.describe_stacks(StackName="Shipyard")["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        version = s3.put_object(Bucket=outputs["DataBucketName"], Key="notes/kept.txt", Body=b"kept")["VersionId"]
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        code = proc.wait(60)
        proc.stdout.close()
    assert code == 0, stderr_path.read_text()[-2000:]
    assert f"state: kept in {state}" in stderr_path.read_text()
    saved = StateDir(state).load(Template.load(shipyard_assembly))
    assert saved.names["RegistryDataDCB4E45E"] == outputs["DataBucketName"]
    objects = pickle.loads(saved.data["s3"]["RegistryDataDCB4E45E"])["versions"]
    assert [(v.version_id, v.value) for v in objects["notes/kept.txt"]] == [(version, b"kept")]


def test_function_log_lines_still_buffered_at_the_stop_are_saved(asset_dir, tmp_path):
    state = tmp_path / "state"
    cloud = _start(_small(asset_dir), [], aws_port=0, api_port=0, state_dir=state)
    try:
        function = cloud.physical_ids["Record"]
        cloud.function_logs.interval = 60  # no periodic flush before the stop
        cloud.function_logs.line(function, "the last line before the stop")
    finally:
        cloud.stop()
    cloud = _start(_small(asset_dir), [], aws_port=0, api_port=0, state_dir=state)
    try:
        events = cloud.client("logs").filter_log_events(logGroupName=f"/aws/lambda/{function}")["events"]
        assert [e["message"] for e in events] == ["the last line before the stop"]
    finally:
        cloud.stop()


def test_an_execution_restored_aborted_sends_its_status_change_event(asset_dir, tmp_path):
    """A restart ends a running execution ABORTED; a rule on Step Functions' status changes gets its
    event once the restored cloud is up (the pipeline's ExecutionEnded rule ends its release so)."""
    extra = {
        "Seen": {"Type": "AWS::SQS::Queue"},
        "Ended": {"Type": "AWS::Events::Rule", "Properties": {
            "EventPattern": {"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
                             "detail": {"status": ["ABORTED"]}},
            "Targets": [{"Id": "Seen", "Arn": {"Fn::GetAtt": ["Seen", "Arn"]}}]}},
    }
    state = tmp_path / "state"
    cloud = _start(_small(asset_dir, extra), [], aws_port=0, api_port=0, state_dir=state, iam=False)
    try:
        ids = dict(cloud.physical_ids)
        running = cloud.client("stepfunctions").start_execution(
            stateMachineArn=ids["Waiting"], name="cut-short", input='{"model": "iris"}')["executionArn"]
        cloud.wait_idle()
        assert "Messages" not in cloud.client("sqs").receive_message(QueueUrl=ids["Seen"])  # RUNNING: not matched
    finally:
        cloud.stop()

    cloud = _start(_small(asset_dir, extra), [], aws_port=0, api_port=0, state_dir=state, iam=False)
    try:
        cloud.wait_idle()
        sqs = cloud.client("sqs")
        deadline, bodies = time.time() + 10, []
        while not bodies and time.time() < deadline:
            bodies = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=ids["Seen"]).get("Messages", [])]
        (event,) = bodies
        assert event["source"] == "aws.states" and event["resources"] == [running]
        detail = event["detail"]
        assert detail["executionArn"] == running and detail["stateMachineArn"] == ids["Waiting"]
        assert detail["status"] == "ABORTED" and detail["name"] == "cut-short"
        assert detail["input"] == '{"model": "iris"}'
        assert detail["error"] == "LocalCloud.Stopped" and isinstance(detail["stopDate"], int)
    finally:
        cloud.stop()
