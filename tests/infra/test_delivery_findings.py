"""Issue 12, part 1: what the synthesized template must hold for alarms, logs, S3 answers, upload
rules and capture delivery to work in AWS (moto does not evaluate these policies, so the local
cloud cannot show them).

1. CloudWatch may publish to the alarm topic (its policy replaces SNS's default one) and use its key,
   only for this stack's alarms, and every alarm is covered by that ARN pattern.
2. Without ``alarm_email`` synth warns that the alarms notify nobody.
3. The state machine's log group is under ``/aws/vendedlogs/``.
4. Roles that read objects list the bucket without an ``s3:prefix`` condition (404, not 403).
5. The upload rule matches dataset files only (``.csv``, ``.csv.gz``).
6. Capture delivery alarms on failed deliveries and logs its errors.
"""
from __future__ import annotations

import fnmatch
import json

import pytest

from tests.synth import Synth

pytestmark = pytest.mark.slow

TOPIC_SID = "AllowAlarmsToPublish"
KEY_SID = "AllowAlarmPublishers"
WARNING_ID = "shipyard:alarm-topic-without-subscriber"


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _topic_id(synth: Synth) -> str:
    (topic_id,) = synth.resources("AWS::SNS::Topic")
    return topic_id


def _resolve(value, stack_name: str) -> str:
    """A Fn::Join ARN as text, with the pseudo parameters of one region and account."""
    pseudo = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
              "AWS::StackName": stack_name}
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return pseudo[value["Ref"]]
    sep, parts = value["Fn::Join"]
    return sep.join(_resolve(p, stack_name) for p in parts)


def _alarm_arn(name: str) -> str:
    return f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"


# --------------------------------------------------------------------------- 1. alarm topic policy


@pytest.mark.parametrize("which", ["synth", "synth_api_key"])
def test_cloudwatch_may_publish_to_the_alarm_topic_for_this_stacks_alarms_only(which, request):
    synth = request.getfixturevalue(which)
    stack_name = synth.stack.stack_name
    topic_id = _topic_id(synth)
    (policy,) = synth.resources("AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Sid"] == TOPIC_SID
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == "sns:Publish" and allow["Resource"] == {"Ref": topic_id}
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    pattern = _resolve(allow["Condition"]["ArnLike"]["aws:SourceArn"], stack_name)
    assert pattern == _alarm_arn(f"{stack_name}-*")
    assert set(allow["Condition"]) == {"StringEquals", "ArnLike"}

    # Every alarm of the stack is named <stack>-… and every one that notifies the topic matches.
    alarms = [a["Properties"] for a in synth.resources("AWS::CloudWatch::Alarm").values()]
    assert len(alarms) > 10
    notifying = 0
    for alarm in alarms:
        assert alarm["AlarmName"].startswith(f"{stack_name}-"), alarm["AlarmName"]
        if {"Ref": topic_id} in alarm.get("AlarmActions", []) + alarm.get("OKActions", []):
            notifying += 1
            assert fnmatch.fnmatchcase(_alarm_arn(alarm["AlarmName"]), pattern), alarm["AlarmName"]
    assert notifying == len(alarms)

    # The key: CloudWatch may use it, with the same scoping.
    key_id = synth.template_dict["Resources"][topic_id]["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key_statements = synth.template_dict["Resources"][key_id]["Properties"]["KeyPolicy"]["Statement"]
    (key,) = [s for s in key_statements if s.get("Sid") == KEY_SID]
    assert key["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert sorted(key["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert key["Condition"] == allow["Condition"]


def test_nothing_but_alarms_publishes_to_the_topic(synth):
    # An EventBridge rule targeting the topic would need its own statement (events.amazonaws.com);
    # there is none, so the topic policy admits CloudWatch only.
    topic = {"Ref": _topic_id(synth)}
    for lid, rule in synth.resources("AWS::Events::Rule").items():
        for target in rule["Properties"].get("Targets", []):
            assert target["Arn"] != topic, lid
    text = json.dumps({k: v for k, v in synth.template_dict["Resources"].items()
                       if v["Type"] not in ("AWS::CloudWatch::Alarm", "AWS::SNS::TopicPolicy", "AWS::SNS::Topic",
                                            "AWS::SNS::Subscription", "AWS::CloudWatch::Dashboard")})
    # Besides: a manual approval's message, which the Record function publishes (its policy's one
    # sns:Publish statement: tests/infra/test_release_infra.py), and ALARM_TOPIC_ARN in the Record and
    # Release functions' environment (the per-version alarms they create notify the topic).
    publish = '{"Action": "sns:Publish", "Effect": "Allow", "Resource": ' + json.dumps(topic) + "}"
    assert text.count(publish) == 1
    text = text.replace(publish, "").replace('"ALARM_TOPIC_ARN": ' + json.dumps(topic), "")
    assert json.dumps(topic) not in text.replace('"TopicArn": ' + json.dumps(topic), "")


def test_an_alarm_outside_the_prefix_fails_the_synth():
    from aws_cdk import App, Stack
    from aws_cdk import aws_cloudwatch as cloudwatch

    from infra.monitoring import check_alarm_names

    app = App()
    stack = Stack(app, "Named")
    metric = cloudwatch.Metric(namespace="X", metric_name="Y")
    metric.create_alarm(stack, "Good", alarm_name="Named-good", threshold=1, evaluation_periods=1)
    metric.create_alarm(stack, "Bad", alarm_name="other-bad", threshold=1, evaluation_periods=1)
    stack.node.add_validation(check_alarm_names(stack))
    with pytest.raises(Exception, match="other-bad"):
        app.synth()


def test_the_stack_refuses_an_alarm_the_topic_would_not_admit(default_config, tmp_path):
    from aws_cdk import aws_cloudwatch as cloudwatch
    from aws_cdk import aws_cloudwatch_actions as cw_actions

    from infra.stack import build_app

    app, stack = build_app(default_config, outdir=tmp_path, nag=False, build_layers=False)
    alarm = cloudwatch.Metric(namespace="X", metric_name="Y").create_alarm(
        stack, "Mine", alarm_name="team-alarm", threshold=1, evaluation_periods=1)
    alarm.add_alarm_action(cw_actions.SnsAction(stack.alarm_topic))
    with pytest.raises(Exception, match=r"alarm names must start with 'Shipyard-'.*team-alarm"):
        app.synth()


# --------------------------------------------------------------------------- 2. no subscriber warning


def _warnings(synth: Synth) -> list[str]:
    out = []
    for path in synth.outdir.glob("*.metadata.json"):
        for entries in json.loads(path.read_text()).values():
            out += [json.dumps(e["data"]) for e in entries if e["type"] == "aws:cdk:warning"]
    manifest = json.loads((synth.outdir / "manifest.json").read_text())
    for artifact in manifest["artifacts"].values():
        for entries in artifact.get("metadata", {}).values():
            out += [json.dumps(e["data"]) for e in entries if e["type"] == "aws:cdk:warning"]
    return out


def test_without_alarm_email_synth_warns_that_alarms_notify_nobody(synth):
    assert synth.stack.config.alarm_email is None
    assert synth.resources("AWS::SNS::Subscription") == {}
    (warning,) = [w for w in _warnings(synth) if WARNING_ID in w]
    for words in ("notify nobody", "alarm_email", "cdk.json", "aws sns subscribe --topic-arn",
                  "AlarmTopicArn", "--protocol email"):
        assert words in warning, words
    assert synth.template_dict["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": _topic_id(synth)}


def test_with_alarm_email_no_warning_and_a_subscription(synth_api_key):
    (sub,) = synth_api_key.resources("AWS::SNS::Subscription").values()
    assert sub["Properties"]["Protocol"] == "email"
    assert sub["Properties"]["Endpoint"] == "ml-team@example.com"
    assert not [w for w in _warnings(synth_api_key) if WARNING_ID in w]


# --------------------------------------------------------------------------- 3. vended logs


def test_state_machine_logs_to_a_vended_logs_group(synth):
    (sm,) = [v for k, v in synth.resources("AWS::StepFunctions::StateMachine").items() if k.startswith("Pipeline")]
    destination = sm["Properties"]["LoggingConfiguration"]["Destinations"][0]
    group_id = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    group = synth.template_dict["Resources"][group_id]["Properties"]
    assert group["LogGroupName"] == f"/aws/vendedlogs/states/{synth.stack.stack_name}-pipeline"
    assert group["RetentionInDays"] == 30


# --------------------------------------------------------------------------- 4. 404, not 403


def _role_statements(synth: Synth, role_id: str) -> list[dict]:
    out = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def _role_of(synth: Synth, handler: str) -> list[str]:
    return [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in synth.resources("AWS::Lambda::Function").values()
            if f["Properties"]["Handler"] == handler]


def _bucket_of(resource) -> str | None:
    """The bucket logical id of an S3 ARN (bucket or objects) in a statement's Resource."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return resource["Fn::GetAtt"][0]
    if isinstance(resource, dict) and "Fn::Join" in resource:
        for part in resource["Fn::Join"][1]:
            if isinstance(part, dict) and "Fn::GetAtt" in part:
                return part["Fn::GetAtt"][0]
    return None


@pytest.mark.parametrize("handler", ["functions.pipeline.train.handler", "functions.drift.handler.handler"])
def test_train_and_drift_roles_list_without_a_prefix_condition(synth, handler):
    (role,) = _role_of(synth, handler)
    listing = [s for s in _role_statements(synth, role) if "s3:ListBucket" in _as_list(s["Action"])]
    assert listing
    for statement in listing:
        assert "s3:prefix" not in json.dumps(statement.get("Condition", {})), statement


@pytest.mark.parametrize("which", ["synth", "synth_api_key"])
def test_every_role_that_reads_objects_may_list_that_bucket_unconditionally(which, request):
    synth = request.getfixturevalue(which)
    checked = 0
    for role_id in synth.resources("AWS::IAM::Role"):
        statements = _role_statements(synth, role_id)
        read_buckets = {_bucket_of(r) for s in statements if "s3:GetObject" in _as_list(s["Action"])
                        for r in _as_list(s["Resource"])}
        listed = {_bucket_of(r) for s in statements if "s3:ListBucket" in _as_list(s["Action"])
                  and not s.get("Condition") for r in _as_list(s["Resource"])}
        assert read_buckets <= listed, (role_id, read_buckets - listed)
        checked += bool(read_buckets)
    assert checked >= 4  # inference, train, validate, drift


def test_the_retrain_role_still_lists_datasets_only(synth):
    # It lists and never reads: its listing stays limited to datasets/.
    (role,) = _role_of(synth, "functions.drift.retrain.handler")
    (listing,) = [s for s in _role_statements(synth, role) if "s3:ListBucket" in _as_list(s["Action"])]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["datasets/*"]}}
    assert not [s for s in _role_statements(synth, role) if "s3:GetObject" in _as_list(s["Action"])]


# --------------------------------------------------------------------------- 5. dataset files only


def _upload_rules(synth: Synth) -> dict[str, dict]:
    return {lid: r["Properties"] for lid, r in synth.resources("AWS::Events::Rule").items()
            if r["Properties"].get("EventPattern", {}).get("source") == ["aws.s3"]
            and not lid.startswith(("Uploads", "Batch"))}  # the uploads rule starts nothing; Batch: batch/


def test_upload_rule_matches_csv_and_csv_gz_keys_only(synth_api_key):
    keys = sorted(json.dumps(r["EventPattern"]["detail"]["object"]["key"])
                  for r in _upload_rules(synth_api_key).values())
    assert keys == sorted(json.dumps([{"wildcard": f"datasets/{m}/*.csv"}, {"wildcard": f"datasets/{m}/*.csv.gz"}])
                          for m in ("house-prices", "iris"))


@pytest.mark.parametrize(("key", "starts"), [
    ("datasets/iris/data.csv", True),
    ("datasets/iris/data.csv.gz", True),
    ("datasets/iris/2024/05/part.csv", True),
    ("datasets/iris/", False),             # a folder placeholder
    ("datasets/iris/notes.txt", False),
    ("datasets/iris/data.csv.bak", False),
    ("datasets/iris/data.CSV", False),     # as the evaluation sets: lower case only
    ("datasets/iris/data.gz", False),
    ("datasets/iris-2/data.csv", False),   # another model's prefix
    ("datasets/irisdata.csv", False),
    ("evaluation/iris/data.csv", False),
])
def test_upload_rule_pattern_on_keys(synth, key, starts):
    from localcloud.events import matches

    (rule,) = _upload_rules(synth).values()
    pattern = json.loads(json.dumps(rule["EventPattern"]).replace(
        json.dumps(rule["EventPattern"]["detail"]["bucket"]["name"][0]), '"data-bucket"'))
    event = {"source": "aws.s3", "detail-type": "Object Created",
             "detail": {"bucket": {"name": "data-bucket"}, "object": {"key": key, "size": 1}}}
    assert matches(pattern, event) is starts


# --------------------------------------------------------------------------- 6. capture delivery


@pytest.fixture(scope="module")
def logged_capture() -> dict:
    """``InferenceApi`` (error logging on by default) in a stack of its own, with two models."""
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Template

    from infra.endpoint import InferenceApi
    from infra.registry import ModelRegistry
    from infra.stack import read_cdk_json_context

    flags = {k: v for k, v in read_cdk_json_context().items() if k != "shipyard"}  # the stack's feature flags
    stack = Stack(App(context=flags), "Logged")
    InferenceApi(stack, "Inference", registry=ModelRegistry(stack, "Registry"), models=["iris", "wine"])
    return Template.from_stack(stack).to_json()["Resources"]


def test_capture_delivery_can_log_errors_to_its_own_log_group(logged_capture):
    resources = logged_capture
    streams = {k: v for k, v in resources.items() if v["Type"] == "AWS::KinesisFirehose::DeliveryStream"}
    log_streams = {k: v for k, v in resources.items() if v["Type"] == "AWS::Logs::LogStream"}
    assert len(streams) == 2
    for stream in streams.values():
        options = stream["Properties"]["ExtendedS3DestinationConfiguration"]["CloudWatchLoggingOptions"]
        assert options["Enabled"] is True
        group_id = options["LogGroupName"]["Ref"]
        group = resources[group_id]
        assert group["Type"] == "AWS::Logs::LogGroup" and group["Properties"]["RetentionInDays"] == 30
        # the stream exists before the delivery stream (Firehose does not create it)
        (log_stream_id,) = [k for k, v in log_streams.items()
                            if v["Properties"] == {"LogGroupName": {"Ref": group_id},
                                                   "LogStreamName": options["LogStreamName"]}]
        assert log_stream_id in stream["DependsOn"]
        # a log group of its own, not a function's
        assert not [f for f in resources.values() if f["Type"] == "AWS::Lambda::Function"
                    and f["Properties"].get("LoggingConfig", {}).get("LogGroup") == {"Ref": group_id}]
    assert sorted(v["Properties"]["LogStreamName"] for v in log_streams.values()) == [
        "S3Delivery-iris", "S3Delivery-wine"]

    # the delivery role may only PutLogEvents, to those streams
    role_id = next(iter(streams.values()))["Properties"]["ExtendedS3DestinationConfiguration"]["RoleARN"][
        "Fn::GetAtt"][0]
    statements = [st for r in resources.values() if r["Type"] == "AWS::IAM::Policy"
                  and {"Ref": role_id} in r["Properties"]["Roles"]
                  for st in r["Properties"]["PolicyDocument"]["Statement"]]
    (statement,) = [st for st in statements if any(a.startswith("logs:") for a in _as_list(st["Action"]))]
    assert statement["Action"] == "logs:PutLogEvents"
    arns = [json.dumps(r) for r in statement["Resource"]]
    assert len(arns) == 2 and all(group_id in a for a in arns)
    assert sorted(a.rsplit(":log-stream:", 1)[1] for a in arns) == ['S3Delivery-iris"]]}', 'S3Delivery-wine"]]}']


def test_the_stack_logs_capture_delivery_errors(synth):
    streams = synth.resources("AWS::KinesisFirehose::DeliveryStream")
    assert streams and len(synth.resources("AWS::Logs::LogStream")) == len(streams)
    for stream in streams.values():
        assert stream["Properties"]["ExtendedS3DestinationConfiguration"]["CloudWatchLoggingOptions"]["Enabled"]


def test_failed_capture_deliveries_alarm_to_the_topic_and_show_on_the_dashboard(synth):
    topic = {"Ref": _topic_id(synth)}
    ((stream_id, _),) = synth.resources("AWS::KinesisFirehose::DeliveryStream").items()
    (alarm,) = [a["Properties"] for a in synth.resources("AWS::CloudWatch::Alarm").values()
                if a["Properties"].get("Namespace") == "AWS/Firehose"]
    assert alarm["AlarmName"] == f"{synth.stack.stack_name}-capture-iris-delivery"
    assert alarm["MetricName"] == "DeliveryToS3.Success" and alarm["Statistic"] == "Average"
    assert alarm["Dimensions"] == [{"Name": "DeliveryStreamName", "Value": {"Ref": stream_id}}]
    assert alarm["ComparisonOperator"] == "LessThanThreshold" and alarm["Threshold"] == 1
    assert alarm["TreatMissingData"] == "notBreaching"  # no traffic, no data: not a failure
    assert alarm["AlarmActions"] == [topic]
    (alarm_id,) = [k for k, a in synth.resources("AWS::CloudWatch::Alarm").items()
                   if a["Properties"]["AlarmName"] == alarm["AlarmName"]]
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    assert alarm_id in json.dumps(dashboard["Properties"]["DashboardBody"])
