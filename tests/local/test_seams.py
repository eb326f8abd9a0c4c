"""Each seam of the local cloud, driven through its real entry points (S3 puts, HTTP, ticks, invokes)."""
import json
import time

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def _records(cloud, pk, n=1, timeout=30):
    table = cloud.outputs["TableName"]
    ddb = cloud.client("dynamodb")
    deadline = time.time() + timeout
    while True:
        cloud.wait_idle()
        items = ddb.query(TableName=table, KeyConditionExpression="pk = :p",
                          ExpressionAttributeValues={":p": {"S": pk}})["Items"]
        if len(items) >= n or time.time() > deadline:
            return [json.loads(i["event"]["S"]) for i in items]
        time.sleep(0.2)


def _signed(method, url, body=b"", key="testing", secret="testing", region="us-east-1"):
    req = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(key, secret), "execute-api", region).add_auth(req)
    return requests.request(method, url, data=body, headers=dict(req.headers), timeout=60)


def test_outputs_via_describe_stacks(cloud):
    stack = cloud.client("cloudformation").describe_stacks(StackName="LocalTest")["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs == cloud.outputs
    assert outputs["ApiUrl"] == f"{cloud.api_url}/prod/"
    assert outputs["FirstAz"] == "us-east-1a"
    assert outputs["PipelineArn"].startswith("arn:aws:states:us-east-1:123456789012:stateMachine:")
    s3 = cloud.client("s3")
    assert s3.get_bucket_versioning(Bucket=outputs["BucketName"])["Status"] == "Enabled"
    assert s3.get_public_access_block(Bucket=outputs["BucketName"])["PublicAccessBlockConfiguration"]["BlockPublicAcls"]


def test_unemulated_types_are_listed_at_startup(cloud):
    assert any("AWS::Foo::Bar (Unknown)" in w for w in cloud.warnings)
    assert any("AWS::Foo::Bar" in line for line in cloud.log_lines)
    assert not any("CDK::Metadata" in w or "Custom::S3BucketNotifications" in w for w in cloud.warnings)


def test_function_runs_its_asset_with_its_own_environment(cloud):
    lam = cloud.client("lambda")
    name = cloud.physical_ids["Emf"]
    out = json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
    assert out == {"env": cloud.outputs["TableName"], "other": "east"}
    # another function's worker does not see ONLY_IN_EMF
    rec = json.loads(lam.invoke(FunctionName=cloud.physical_ids["Record"],
                                Payload=json.dumps({"pk": "direct"}).encode())["Payload"].read())
    again = json.loads(lam.invoke(FunctionName=cloud.physical_ids["Record"],
                                  Payload=json.dumps({"pk": "direct"}).encode())["Payload"].read())
    assert again["calls"] == rec["calls"] + 1  # warm: module state survives between invocations
    assert rec["function"] == cloud.physical_ids["Record"]


def test_errors_and_timeouts_come_back_as_lambda_errors(cloud):
    lam = cloud.client("lambda")
    resp = lam.invoke(FunctionName=cloud.physical_ids["Flaky"], Payload=json.dumps({"mode": "bad"}).encode())
    assert resp["FunctionError"] == "Unhandled"
    err = json.loads(resp["Payload"].read())
    assert err["errorType"] == "ValueError" and err["errorMessage"] == "bad input: mode=bad"
    resp = lam.invoke(FunctionName=cloud.physical_ids["Slow"], Payload=b"{}")
    assert resp["FunctionError"] == "Unhandled"
    err = json.loads(resp["Payload"].read())
    assert err["errorType"] == "Sandbox.Timedout" and "Task timed out after 1.00 seconds" in err["errorMessage"]
    assert any(e["errorType"] == "Sandbox.Timedout" for e in cloud.function_errors)


def test_a_dead_runtime_and_running_out_of_memory_come_back_as_lambdas_errors(cloud):
    lam = cloud.client("lambda")
    for mode, error_type, how in (("exit", "Runtime.ExitError", "exit status 3"),
                                  ("hog", "Runtime.OutOfMemory", "signal: killed")):
        resp = lam.invoke(FunctionName=cloud.physical_ids["Flaky"], Payload=json.dumps({"mode": mode}).encode())
        assert resp["FunctionError"] == "Unhandled", mode
        err = json.loads(resp["Payload"].read())
        assert err["errorType"] == error_type, err
        assert err["errorMessage"].startswith("RequestId: ") and err["errorMessage"].endswith(
            f"Error: Runtime exited with error: {how}"), err


def test_states_all_does_not_catch_a_result_over_the_payload_quota(cloud):
    sfn = cloud.client("stepfunctions")
    flaky = cloud.client("lambda").get_function(
        FunctionName=cloud.physical_ids["Flaky"])["Configuration"]["FunctionArn"]
    outcomes = {}
    for catch in (["States.ALL"], ["States.DataLimitExceeded"]):
        definition = {"StartAt": "Big", "States": {
            "Big": {"Type": "Task", "Resource": flaky, "Parameters": {"mode": "big"},
                    "Retry": [{"ErrorEquals": ["TransientError"], "IntervalSeconds": 1, "MaxAttempts": 3}],
                    "Catch": [{"ErrorEquals": catch, "ResultPath": "$.error", "Next": "Caught"}], "End": True},
            "Caught": {"Type": "Pass", "End": True}}}
        arn = sfn.create_state_machine(name=f"big-{catch[0].split('.')[1]}", definition=json.dumps(definition),
                                       roleArn="arn:aws:iam::123456789012:role/x")["stateMachineArn"]
        run = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
        cloud.wait_for_executions(arn, timeout=60)
        outcomes[catch[0]] = sfn.describe_execution(executionArn=run)
    uncaught = outcomes["States.ALL"]
    assert uncaught["status"] == "FAILED" and uncaught["error"] == "States.DataLimitExceeded"
    caught = outcomes["States.DataLimitExceeded"]
    assert caught["status"] == "SUCCEEDED"
    assert json.loads(caught["output"])["error"]["Error"] == "States.DataLimitExceeded"


def test_s3_put_reaches_lambda_and_state_machine_through_eventbridge(cloud):
    s3 = cloud.client("s3")
    bucket = cloud.outputs["BucketName"]
    version = s3.put_object(Bucket=bucket, Key="incoming/data.csv", Body=b"a,b\n1,2\n")["VersionId"]
    s3.put_object(Bucket=bucket, Key="elsewhere/data.csv", Body=b"x")  # does not match the prefix
    (event,) = _records(cloud, "upload")
    assert event == {"pk": "upload", "key": "incoming/data.csv", "where": f"s3://{bucket}/incoming/data.csv"}
    sfn = cloud.client("stepfunctions")
    execs = cloud.wait_for_executions(cloud.outputs["PipelineArn"], timeout=60)
    described = [sfn.describe_execution(executionArn=e["executionArn"]) for e in execs]
    mine = [d for d in described if json.loads(d["input"]).get("version-id") == version]  # this test's upload
    assert len(mine) == 1 and mine[0]["status"] == "SUCCEEDED"
    out = json.loads(mine[0]["output"])
    assert out["ok"] is True
    assert out["input"]["key"] == "incoming/data.csv" and out["input"]["version-id"] == version


def test_state_machine_catches_an_error_type(cloud):
    sfn = cloud.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=cloud.outputs["PipelineArn"], name="bad-input",
                              input=json.dumps({"mode": "bad"}))["executionArn"]
    cloud.wait_for_executions(cloud.outputs["PipelineArn"], timeout=60)
    desc = sfn.describe_execution(executionArn=arn)
    assert desc["status"] == "SUCCEEDED"
    out = json.loads(desc["output"])
    assert out["outcome"] == "caught" and out["error"]["Error"] == "ValueError"
    assert "bad input" in out["error"]["Cause"]


def test_custom_events_route_with_pattern_operators(cloud):
    ev = cloud.client("events")
    entries = [{"Source": "shipyard", "DetailType": "Drift Detected", "Detail": json.dumps(d)} for d in (
        {"model": "iris", "share": 0.7}, {"model": "iris", "share": 0.2}, {"model": "ignored", "share": 0.9})]
    ev.put_events(Entries=entries)
    assert cloud.wait_idle()  # every delivery of the three events is done
    assert len(_records(cloud, "drift")) == 1


def test_tick_fires_due_schedules(cloud):
    assert cloud.tick() == []
    fired = cloud.tick(now=time.time() + 301)
    assert fired == [cloud.physical_ids["Every5"]]
    assert len(_records(cloud, "every5")) == 1
    fired = cloud.tick(now=time.time() + 3601)
    assert cloud.physical_ids["HourlyRule"] in fired
    assert len(_records(cloud, "hourly")) == 1


def test_metrics_trip_alarm_which_emails_through_sns(cloud):
    lam = cloud.client("lambda")
    assert cloud.evaluate_alarms() == []
    lam.invoke(FunctionName=cloud.physical_ids["Emf"], Payload=json.dumps({"drift": 2}).encode())
    cloud.client("cloudwatch").put_metric_data(Namespace="Test", MetricData=[
        {"MetricName": "Drift", "Value": 1, "Dimensions": [{"Name": "model", "Value": "iris"}]}])
    (change,) = cloud.evaluate_alarms()
    assert change["to"] == "ALARM" and change["alarm"] == cloud.physical_ids["DriftAlarm"]
    alarm = cloud.client("cloudwatch").describe_alarms(AlarmNames=[change["alarm"]])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM"
    (mail,) = cloud.notifications
    assert mail["to"] == "ops@example.com" and mail["subject"].startswith("ALARM")
    assert json.loads(mail["message"])["NewStateValue"] == "ALARM"
    assert any("ops@example.com" in line for line in cloud.log_lines)
    # Lambda's own metrics are published too
    stats = cloud.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/Lambda", MetricName="Invocations", Statistics=["Sum"], Period=60,
        Dimensions=[{"Name": "FunctionName", "Value": cloud.physical_ids["Emf"]}],
        StartTime=time.time() - 600, EndTime=time.time() + 60)
    assert sum(p["Sum"] for p in stats["Datapoints"]) >= 1


def test_http_routes_to_the_function_with_a_proxy_event(cloud):
    r = requests.get(f"{cloud.api_url}/items/a%20b?x=1&x=2&y=3", timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["X-Echo"] == "yes"
    body = r.json()
    assert body["resource"] == "/items/{id}" and body["path"] == "/items/a%20b"  # as sent
    assert body["pathParameters"] == {"id": "a b"}  # decoded once
    assert body["queryStringParameters"] == {"x": "2", "y": "3"}
    assert body["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": ["3"]}
    assert body["stage"] == "prod" and body["httpMethod"] == "GET"
    assert requests.get(f"{cloud.api_url}/prod/items/z", timeout=60).json()["pathParameters"] == {"id": "z"}
    twice = requests.get(f"{cloud.api_url}/items/a%2520b", timeout=60).json()
    assert twice["path"] == "/items/a%2520b" and twice["pathParameters"] == {"id": "a%20b"}
    slash = requests.get(f"{cloud.api_url}/items/a%2Fb", timeout=60)
    assert slash.status_code == 200, slash.text
    assert slash.json()["path"] == "/items/a%2Fb" and slash.json()["pathParameters"] == {"id": "a/b"}
    missing = requests.get(f"{cloud.api_url}/nothing/here", timeout=60)
    assert missing.status_code == 404 and "message" in missing.json()
    boom = requests.get(f"{cloud.api_url}/boom", timeout=60)
    assert boom.status_code == 502 and boom.json() == {"message": "Internal server error"}


def test_http_iam_method_requires_a_valid_sigv4_signature(cloud):
    url = f"{cloud.api_url}/items?q=1"
    r = requests.get(url, timeout=60)
    assert r.status_code == 403 and r.json() == {"message": "Missing Authentication Token"}
    r = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=60)
    assert r.status_code == 403
    r = _signed("GET", url, secret="wrong-secret")
    assert r.status_code == 403 and "signature" in r.json()["message"]
    r = _signed("GET", url)
    assert r.status_code == 200, r.text
    assert r.json()["accessKey"] == "testing" and r.json()["queryStringParameters"] == {"q": "1"}


def test_http_api_key_method_requires_a_key(cloud):
    url = f"{cloud.api_url}/items"
    r = requests.post(url, json={"a": 1}, timeout=60)
    assert r.status_code == 403 and r.json() == {"message": "Forbidden"}
    r = requests.post(url, json={"a": 1}, headers={"x-api-key": "wrong"}, timeout=60)
    assert r.status_code == 403
    r = requests.post(url, data=json.dumps({"a": 1}), headers={"x-api-key": "test-key-0123456789abcdef"}, timeout=60)
    assert r.status_code == 200
    assert json.loads(r.json()["body"]) == {"a": 1} and r.json()["isBase64Encoded"] is False
    assert r.json()["apiKey"] == "test-key-0123456789abcdef"


def test_get_caller_identity_answers_for_the_credentials_in_use(cloud):
    import boto3

    def who(key, secret="testing"):
        return boto3.client("sts", endpoint_url=cloud.aws_url, region_name="us-east-1", aws_access_key_id=key,
                            aws_secret_access_key=secret).get_caller_identity()

    mine = cloud.client("sts").get_caller_identity()
    key = cloud.session.get_credentials().access_key
    assert mine["Arn"] == f"arn:aws:iam::123456789012:user/{key}" and mine["Account"] == "123456789012"
    assert mine["UserId"].startswith("AIDA") and len(mine["UserId"]) == 21
    other = who("AKIAOTHEROPERATOR01")
    assert other["Arn"] == "arn:aws:iam::123456789012:user/AKIAOTHEROPERATOR01"
    assert other["UserId"] != mine["UserId"] and who("AKIAOTHEROPERATOR01")["UserId"] == other["UserId"]
    # the keys moto issued keep moto's answer: an IAM user's own key
    iam = cloud.client("iam")
    iam.create_user(UserName="alice")
    created = iam.create_access_key(UserName="alice")["AccessKey"]
    alice = who(created["AccessKeyId"], created["SecretAccessKey"])
    assert alice["Arn"] == "arn:aws:iam::123456789012:user/alice"


def test_an_invocation_writes_its_logs_once_a_stream_per_worker(cloud, monkeypatch):
    """No per-invocation copy of the lines (moto's save_logs) is built and thrown away: FunctionLogs
    writes them, in the worker's stream."""
    from moto.awslambda.models import LambdaFunction

    copies = []
    monkeypatch.setattr(LambdaFunction, "save_logs", lambda self, output: copies.append(output))
    name = cloud.physical_ids["Record"]
    resp = cloud.client("lambda").invoke(FunctionName=name, Payload=b'{"pk": "logged-once"}')
    assert "FunctionError" not in resp
    assert copies == []
    events = cloud.client("logs").filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    assert any(e["message"].startswith("REPORT RequestId: ") for e in events), events


def test_sns_delivers_to_lambda_asynchronously_and_the_invoke_api_synchronously(cloud, monkeypatch):
    """moto's SNS -> Lambda delivery is an asynchronous invocation (at the function's reserved
    concurrency it waits, it is not throttled back into the publisher's Publish)."""
    from localcloud import lambda_runtime

    seen = []
    real = cloud.runtime.invoke

    def invoke(name, event, sync=None):
        seen.append(getattr(lambda_runtime._calls, "runtime_sync", None))
        return real(name, event, sync)

    monkeypatch.setattr(cloud.runtime, "invoke", invoke)
    sns, fn = cloud.client("sns"), cloud.physical_ids["Record"]
    topic = sns.create_topic(Name="async-delivery")["TopicArn"]
    arn = cloud.client("lambda").get_function(FunctionName=fn)["Configuration"]["FunctionArn"]
    sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=arn)
    sns.publish(TopicArn=topic, Message='{"pk": "from-sns"}')
    cloud.client("lambda").invoke(FunctionName=fn, Payload=b'{"pk": "from-the-api"}')
    assert seen == [False, True]


def test_a_seam_puts_inherited_static_and_module_attributes_back_as_they_were():
    import types

    from localcloud.patches import Seam

    class Base:
        def m(self):
            return "base"

        @staticmethod
        def s(x):
            return ("static", x)

        @classmethod
        def c(cls):
            return ("class", cls.__name__)

    class Sub(Base):
        pass

    module = types.ModuleType("fake_moto_module")
    module.helper = lambda: "moto"

    def patch(seam):
        seam.replace(Sub, "m", lambda self: "patched " + seam["m"](self))
        seam.replace(Base, "m", lambda self: "patched base", key="Base.m")
        seam.replace(Sub, "m", lambda self: "replaced twice")  # the first original stays moto's
        seam.replace(Base, "s", staticmethod(lambda x: ("patched", seam["s"](x))))
        seam.replace(Base, "c", classmethod(lambda cls: ("patched", seam["c"]())))
        seam.replace(module, "helper", lambda: "patched " + seam["helper"]())
        seam.replace(Sub, "added", lambda self: "new")

    seam = Seam(patch)
    base_m = Base.__dict__["m"]
    seam.install("current")
    assert seam and seam.current == "current"
    assert Sub().m() == "replaced twice" and Base().m() == "patched base"
    assert seam["m"] is base_m and seam["Base.m"] is base_m  # each key: moto's original as read
    assert Base.s(1) == ("patched", ("static", 1)) and Base().s(2) == ("patched", ("static", 2))
    assert Base.c() == ("patched", ("class", "Base")) and module.helper() == "patched moto" and Sub().added() == "new"
    seam.uninstall()
    assert not seam and seam.current is None
    assert "m" not in Sub.__dict__ and "added" not in Sub.__dict__  # inherited again, not a copy
    assert Base.__dict__["m"] is base_m and Sub().m() == "base"
    Base.m = lambda self: "changed later"
    assert Sub().m() == "changed later"  # a copy left in Sub would still say "base"
    assert isinstance(Base.__dict__["s"], staticmethod) and Base().s(3) == ("static", 3) and Sub.s(4) == ("static", 4)
    assert isinstance(Base.__dict__["c"], classmethod) and Sub.c() == ("class", "Sub")
    assert module.helper() == "moto"
    seam.install()  # again: patched afresh from moto's own
    assert Sub().m() == "replaced twice"
    seam.uninstall()
    assert "m" not in Sub.__dict__


def test_the_step_functions_seam_leaves_motos_classes_and_modules_as_they_were():
    """Its replacements include a method moto's lambda:invoke task only inherits and a function
    three modules import by one name (`replace(..., key=)`)."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_lambda import (
        StateTaskServiceLambda,
    )

    from localcloud import stepfunctions
    from localcloud.patches import _ABSENT, Seam

    seam = Seam(stepfunctions._patch)  # over the running cloud's own seam, if one is installed
    before = StateTaskServiceLambda.__dict__.get("_eval_parameters", _ABSENT)
    seam.install()
    saved = [(owner, name, own) for owner, name, _, own in seam._saved.values()]
    assert StateTaskServiceLambda.__dict__["_eval_parameters"] is not before
    assert sum(name == "is_within_size_quota" for _, name, _ in saved) == 3
    seam.uninstall()
    for owner, name, own in saved:
        assert owner.__dict__.get(name, _ABSENT) is own, (owner, name)
    assert StateTaskServiceLambda.__dict__.get("_eval_parameters", _ABSENT) is before


def test_get_metric_statistics_answers_percentiles(cloud):
    """moto ignores ExtendedStatistics; the local cloud computes them as its alarms do (release status
    shows a version's p50/p99 latency from them)."""
    from datetime import UTC, datetime, timedelta

    cw = cloud.client("cloudwatch")
    dims = [{"Name": "Model", "Value": "pct"}, {"Name": "Version", "Value": "1"}]
    now = datetime.now(UTC)
    cw.put_metric_data(Namespace="SeamTest", MetricData=[
        {"MetricName": "Latency", "Dimensions": dims, "Values": [float(v) for v in range(1, 101)],
         "Unit": "Milliseconds", "Timestamp": now}])
    points = cw.get_metric_statistics(
        Namespace="SeamTest", MetricName="Latency", Dimensions=dims, StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=5), Period=600, Statistics=["SampleCount", "Maximum"],
        ExtendedStatistics=["p50", "p99"])["Datapoints"]
    assert len(points) == 1
    assert points[0]["SampleCount"] == 100 and points[0]["Maximum"] == 100
    assert points[0]["ExtendedStatistics"] == {"p50": 50.0, "p99": 99.0}
