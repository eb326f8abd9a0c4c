"""Uploads under ``datasets/`` and ``batch/`` that start no run are reported (issue 13, item 3; batch
scoring): the rule on every upload there, the uploads function and its role, the ``<stack>-unowned-uploads`` alarm
(``uploads.alarm_unowned``, on by default), the dashboard, and the config option."""
from __future__ import annotations

import json

import pytest

from infra.config import ConfigError, load_config
from tests.synth import Synth, synthesize


@pytest.fixture(scope="module")
def alarm_off(tmp_path_factory, default_config) -> Synth:
    config = json.loads(json.dumps(default_config))
    config["uploads"] = {"alarm_unowned": False}
    return synthesize(tmp_path_factory.mktemp("cdk.out.uploads"), config)


def _one(synth: Synth, type_: str, prefix: str) -> tuple[str, dict]:
    (found,) = [(lid, r["Properties"]) for lid, r in synth.resources(type_).items() if lid.startswith(prefix)]
    return found


def _data_bucket(synth: Synth) -> str:
    return synth.stack.get_logical_id(synth.stack.registry.data_bucket.node.default_child)


def _queue(synth: Synth) -> str:
    (queue,) = synth.resources("AWS::SQS::Queue")
    return queue


def _alarms(synth: Synth) -> dict[str, dict]:
    return {a["Properties"]["AlarmName"]: a["Properties"] for a in synth.resources("AWS::CloudWatch::Alarm").values()}


def _dashboard_text(synth: Synth) -> str:
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else json.dumps(p) for p in parts)


def test_one_rule_sends_every_upload_under_datasets_and_batch_to_the_uploads_function(synth):
    fid, _ = _one(synth, "AWS::Lambda::Function", "UploadsFunction")
    _, rule = _one(synth, "AWS::Events::Rule", "UploadsRule")
    assert rule["EventPattern"] == {
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [{"Ref": _data_bucket(synth)}]},
                   "object": {"key": [{"prefix": "datasets/"}, {"prefix": "batch/"}]}},
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [fid, "Arn"]}
    assert "Input" not in target and "InputTransformer" not in target  # the function gets the S3 event as is
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [_queue(synth), "Arn"]}}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0


def test_eventbridge_may_invoke_the_function_for_this_rule_only(synth):
    fid, _ = _one(synth, "AWS::Lambda::Function", "UploadsFunction")
    rid, _ = _one(synth, "AWS::Events::Rule", "UploadsRule")
    permissions = [p["Properties"] for p in synth.resources("AWS::Lambda::Permission").values()
                   if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [fid, "Arn"]}]
    assert permissions == [{"Action": "lambda:InvokeFunction", "FunctionName": {"Fn::GetAtt": [fid, "Arn"]},
                            "Principal": "events.amazonaws.com", "SourceArn": {"Fn::GetAtt": [rid, "Arn"]}}]


def test_the_dead_letter_queue_admits_the_uploads_rule(synth):
    rid, _ = _one(synth, "AWS::Events::Rule", "UploadsRule")
    (policy,) = synth.resources("AWS::SQS::QueuePolicy").values()
    allow = policy["Properties"]["PolicyDocument"]["Statement"][1]
    assert {"Fn::GetAtt": [rid, "Arn"]} in allow["Condition"]["ArnEquals"]["aws:SourceArn"]


@pytest.mark.parametrize(("key", "bucket", "matched"), [
    ("datasets/animal/x.csv", "data", True),       # a folder no model owns
    ("datasets/iris/notes.txt", "data", True),     # not a dataset file
    ("datasets/iris/data.csv", "data", True),      # a dataset too: the function says nothing about it
    ("datasets/", "data", True),
    ("batch/penguin/nightly.csv", "data", True),   # a batch folder no model owns
    ("batch/iris/nightly.CSV", "data", True),      # not a batch input
    ("batch/iris/nightly.csv.gz", "data", True),
    ("batch/iris/nightly.csv", "data", True),      # a batch input too: the function says nothing about it
    ("batch/", "data", True),
    ("evaluation/iris/x.csv", "data", False),      # other prefixes start no run
    ("predictions/iris/run/part-000000000.csv", "data", False),
    ("datasets/iris/x.csv", "artifacts", False),   # other buckets
    ("batch/iris/x.csv", "artifacts", False),
])
def test_the_rule_pattern_on_keys(synth, key, bucket, matched):
    from localcloud.events import matches

    _, rule = _one(synth, "AWS::Events::Rule", "UploadsRule")
    assert matches(_pattern(synth, rule), _upload(key, bucket)) is matched


def _pattern(synth: Synth, rule: dict) -> dict:
    return json.loads(json.dumps(rule["EventPattern"]).replace(json.dumps({"Ref": _data_bucket(synth)}), '"data"'))


def _upload(key: str, bucket: str = "data") -> dict:
    return {"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}}}


@pytest.mark.parametrize("key", [
    "datasets/iris/a.csv", "datasets/iris/2024/a.csv.gz", "datasets/iris/a.CSV", "datasets/iris/a.csv.bak",
    "datasets/irs/a.csv", "datasets/iris.csv", "datasets/iris/",
    "batch/iris/a.csv", "batch/iris/2024/05/a.csv", "batch/iris/a.CSV", "batch/iris/a.csv.gz", "batch/iris/a.txt",
    "batch/irs/a.csv", "batch/iris.csv", "batch/iris/", "batch/",
])
def test_the_function_says_a_run_started_exactly_when_a_model_upload_rule_matches(synth, key):
    """Its suffixes are the rules' (infra/pipeline.py dataset_key_pattern, infra/batch.py batch_key_pattern):
    a key some model's upload rule takes is ``dataset`` / ``batch``, any other is reported."""
    from functions.pipeline.uploads import classify
    from localcloud.events import matches

    upload_rules = [r["Properties"] for lid, r in synth.resources("AWS::Events::Rule").items()
                    if not lid.startswith("UploadsRule")
                    and r["Properties"].get("EventPattern", {}).get("source") == ["aws.s3"]]
    assert synth.stack.config.model_names == ["iris"]  # cdk.json's
    assert len(upload_rules) == 2  # iris's pipeline and batch upload rules
    started = any(matches(_pattern(synth, r), _upload(key)) for r in upload_rules)
    verdict = classify(key, synth.stack.config.model_names).verdict
    assert (verdict in ("dataset", "batch")) is started, (key, verdict)


def test_the_function_knows_the_models_and_may_only_write_its_log(synth):
    fid, fn = _one(synth, "AWS::Lambda::Function", "UploadsFunction")
    assert fn["Handler"] == "functions.pipeline.uploads.handler"
    assert fn["FunctionName"] == "Shipyard-uploads"
    assert fn["Environment"]["Variables"] == {
        "SHIPYARD_MODELS": json.dumps(synth.stack.config.model_names),
        "POWERTOOLS_SERVICE_NAME": "shipyard-uploads", "POWERTOOLS_METRICS_NAMESPACE": "Shipyard"}
    role = fn["Role"]["Fn::GetAtt"][0]
    assert "ManagedPolicyArns" not in synth.template_dict["Resources"][role]["Properties"]
    policies = [p["Properties"] for p in synth.resources("AWS::IAM::Policy").values()
                if {"Ref": role} in p["Properties"]["Roles"]]
    (policy,) = policies
    (log_group,) = [lid for lid in synth.resources("AWS::Logs::LogGroup") if lid.startswith("UploadsFunctionLogs")]
    assert policy["PolicyDocument"]["Statement"] == [
        {"Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Effect": "Allow",
         "Resource": {"Fn::GetAtt": [log_group, "Arn"]}},
        # what active tracing adds, as for every function (infra/nag.py)
        {"Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"], "Effect": "Allow", "Resource": "*"},
    ]
    assert fn["LoggingConfig"]["LogGroup"] == {"Ref": log_group}


def test_unowned_uploads_alarm_to_the_topic_by_default(synth):
    alarm = _alarms(synth)["Shipyard-unowned-uploads"]
    (topic,) = synth.resources("AWS::SNS::Topic")
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"], alarm["Period"]) == (
        "Shipyard", "UnownedUploads", "Sum", 300)
    assert alarm["Dimensions"] == [{"Name": "Bucket", "Value": {"Ref": _data_bucket(synth)}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["EvaluationPeriods"]) == (
        "GreaterThanOrEqualToThreshold", 1, 1)
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == [{"Ref": topic}]
    assert "no model owns" in alarm["AlarmDescription"]


def test_the_function_has_its_errors_and_throttles_alarms(synth):
    alarms = _alarms(synth)
    assert alarms["Shipyard-Uploads-Function-errors"]["MetricName"] == "Errors"
    assert alarms["Shipyard-Uploads-Function-throttles"]["MetricName"] == "Throttles"


def test_the_dashboard_shows_both_metrics_and_the_alarm(synth):
    text = _dashboard_text(synth)
    assert '"UnownedUploads"' in text and '"IgnoredUploads"' in text
    assert "Uploads under datasets/ or batch/ that started no run" in text
    alarm_id = next(lid for lid, a in synth.resources("AWS::CloudWatch::Alarm").items()
                    if a["Properties"]["AlarmName"] == "Shipyard-unowned-uploads")
    assert alarm_id in text  # the alarm status widget lists it


def test_alarm_unowned_false_keeps_the_report_without_the_alarm(alarm_off):
    assert "Shipyard-unowned-uploads" not in _alarms(alarm_off)
    _one(alarm_off, "AWS::Lambda::Function", "UploadsFunction")
    _one(alarm_off, "AWS::Events::Rule", "UploadsRule")
    text = _dashboard_text(alarm_off)
    assert '"UnownedUploads"' in text and "unowned alarm" not in text
    assert alarm_off.nag == []


def test_no_nag_findings_on_the_uploads_resources(synth):
    assert not [f for f in synth.nag if any("/Uploads/" in p for p in f["paths"])]


# --------------------------------------------------------------------------- the option


def test_alarm_unowned_defaults_to_true():
    assert load_config({"models": {"iris": {"target": "y"}}}).uploads.alarm_unowned is True
    assert load_config({"uploads": {}}).uploads.alarm_unowned is True
    assert load_config({"uploads": {"alarm_unowned": False}}).uploads.alarm_unowned is False


@pytest.mark.parametrize(("raw", "key", "message"), [
    ({"uploads": {"alarm_unowned": "false"}}, "uploads.alarm_unowned",
     "expected true (alarm on uploads under a datasets/ or batch/ folder no model owns, the default) or false, "
     "got 'false' (a quoted string: write true or false without quotes)"),
    ({"uploads": {"alarm_unowned": 0}}, "uploads.alarm_unowned", "or false, got 0"),
    ({"uploads": {"alarm_unowed": True}}, "uploads.alarm_unowed",
     "unknown key (did you mean 'alarm_unowned'?); expected one of: alarm_unowned"),
    ({"uploads": True}, "uploads", "expected an object, got bool True"),
    ({"upload": {}}, "upload", "unknown key (did you mean 'uploads'?)"),
])
def test_bad_uploads_config_names_the_key(raw, key, message):
    with pytest.raises(ConfigError) as err:
        load_config(raw)
    assert err.value.key == key and err.value.model is None
    assert message in str(err.value)
