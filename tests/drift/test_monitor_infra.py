"""The drift monitor and the stack's alarms in the synthesized template.

The session's synthesis of the cdk.json app (iris, hourly, retrain) and a variant with two more models whose
drift settings differ (a cron schedule without retraining, a 15-minute rate with retraining).
"""
from __future__ import annotations

import json

import pytest

from infra.monitoring import drift_function_name, schedule_period
from tests.synth import synthesize

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default(synth):
    return synth  # the session's synthesis of the cdk.json app


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    from infra.stack import read_cdk_json_context

    config = json.loads(json.dumps(read_cdk_json_context()["shipyard"]))
    config["stack_name"] = "Yard"
    config["models"]["wine"] = {"target": "quality", "drift": {
        "schedule": "cron(0 6 * * ? *)", "share": 0.25, "retrain": False, "window": 800}}
    config["models"]["house"] = {"target": "price", "task": "regression", "drift": {
        "schedule": "rate(15 minutes)", "share": 1.0, "retrain": True}}
    return synthesize(tmp_path_factory.mktemp("cdk.out.drift.variant"), config)


def _by_type(synth, type_):
    return synth.resources(type_)


def _drift_function(synth):
    (fid, fn), = [(k, v) for k, v in _by_type(synth, "AWS::Lambda::Function").items()
                  if v["Properties"]["Handler"] == "functions.drift.handler.handler"]
    return fid, fn["Properties"]


def _schedules(synth) -> dict[str, dict]:
    out = {}
    for logical_id, rule in _by_type(synth, "AWS::Events::Rule").items():
        props = rule["Properties"]
        if "ScheduleExpression" in props and logical_id.startswith("Drift"):  # not the quality schedules
            (target,) = props["Targets"]
            out[json.loads(target["Input"])["model"]] = {"expression": props["ScheduleExpression"], "target": target}
    return out


def _alarms(synth) -> dict[str, dict]:
    return {a["Properties"]["AlarmName"]: a["Properties"] for a in _by_type(synth, "AWS::CloudWatch::Alarm").values()
            if "AlarmName" in a["Properties"]}


def _retrain_rules(synth) -> dict[str, dict]:
    out = {}
    for rule in _by_type(synth, "AWS::Events::Rule").values():
        pattern = rule["Properties"].get("EventPattern") or {}
        if pattern.get("detail-type") == ["Drift Detected"]:
            (model,) = pattern["detail"]["model"]
            out[model] = rule["Properties"]
    return out


def _topic(synth) -> str:
    (topic,) = _by_type(synth, "AWS::SNS::Topic")
    return topic


# --------------------------------------------------------------------------- drift function


def test_drift_function_settings_and_environment(default):
    fid, props = _drift_function(default)
    assert props["FunctionName"] == drift_function_name("Shipyard") == "Shipyard-drift"
    assert props["Runtime"] == "python3.12" and props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"} and props["Timeout"] == 300
    assert len(props["Layers"]) == 1  # the inference layer: numpy + Powertools
    env = props["Environment"]["Variables"]
    assert json.loads(env["DRIFT_MODELS"]) == {"iris": {"window": 500, "share": 0.5, "threshold": 0.1, "retrain": True}}
    assert env["DRIFT_MIN_ROWS"] == "500" and env["DRIFT_LOOKBACK_DAYS"] == "7"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Shipyard" and env["POWERTOOLS_SERVICE_NAME"] == "shipyard-drift"
    assert env["ARTIFACT_BUCKET"]["Ref"].startswith("RegistryArtifacts")


def test_drift_function_has_least_privilege(default):
    fid, props = _drift_function(default)
    role = props["Role"]["Fn::GetAtt"][0]
    (policy,) = [p["Properties"] for p in _by_type(default, "AWS::IAM::Policy").values()
                 if {"Ref": role} in p["Properties"]["Roles"]]
    statements = policy["PolicyDocument"]["Statement"]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {
        "logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTelemetryRecords", "xray:PutTraceSegments",
        "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "s3:GetObject", "s3:GetObjectVersion",
        "s3:ListBucket", "s3:PutObject", "events:PutEvents"}
    text = json.dumps(statements)
    (put,) = [s for s in statements if s["Action"] == "s3:PutObject"]
    # writes its drift reports and the model's HTML report only (docs/reports.md)
    resources = put["Resource"] if isinstance(put["Resource"], list) else [put["Resource"]]
    assert sorted(r["Fn::Join"][1][-1] for r in resources) == ["/drift/*", "/reports/*"]
    (item,) = [s for s in statements if s["Action"] == "dynamodb:PutItem"]
    assert item["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["MODEL#*"]}}
    reads = [s for s in statements if s["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]]
    prefixes = sorted(r["Fn::Join"][1][-1] for s in reads for r in (s["Resource"] if isinstance(s["Resource"], list)
                                                                    else [s["Resource"]]))
    assert prefixes == ["/capture/*", "/drift/*", "/models/*", "/quality/*"]  # drift/, quality/: its HTML report
    (listing,) = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert "Condition" not in listing  # no s3:prefix: S3 answers a missing key 404, not 403 (infra/registry.py)
    assert "UpdateItem" not in text and "DeleteItem" not in text and "TransactWriteItems" not in text
    assert '"*"' not in json.dumps([s for s in statements if not s["Action"][0].startswith("xray:")])


# --------------------------------------------------------------------------- schedules, alarms, retrain


def test_one_schedule_per_model_with_its_expression(default, variant):
    assert {m: s["expression"] for m, s in _schedules(default).items()} == {"iris": "rate(1 hour)"}
    assert {m: s["expression"] for m, s in _schedules(variant).items()} == {
        "iris": "rate(1 hour)", "wine": "cron(0 6 * * ? *)", "house": "rate(15 minutes)"}
    fid, _ = _drift_function(variant)
    for schedule in _schedules(variant).values():
        assert schedule["target"]["Arn"] == {"Fn::GetAtt": [fid, "Arn"]}
        assert schedule["target"]["RetryPolicy"]["MaximumRetryAttempts"] == 2


def test_drift_alarm_per_model_to_the_topic(default, variant):
    topic = _topic(variant)
    alarms = _alarms(variant)
    for model, share, period in (("iris", 0.5, 3600), ("wine", 0.25, 3600), ("house", 1.0, 900)):
        alarm = alarms[f"Yard-{model}-drift"]
        assert alarm["Namespace"] == "Shipyard" and alarm["MetricName"] == "DriftedShare"
        assert alarm["Dimensions"] == [{"Name": "Model", "Value": model}]
        assert alarm["Threshold"] == share and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["Statistic"] == "Maximum" and alarm["Period"] == period
        assert alarm["TreatMissingData"] == "ignore"  # skipped checks publish no share: keep the state
        assert alarm["AlarmActions"] == [{"Ref": topic}]
    assert "Shipyard-iris-drift" in _alarms(default)


def test_retrain_rule_only_for_models_that_ask(default, variant):
    assert set(_retrain_rules(default)) == {"iris"}
    rules = _retrain_rules(variant)
    assert set(rules) == {"iris", "house"}  # wine: retrain false
    (fid, fn), = [(k, v) for k, v in _by_type(variant, "AWS::Lambda::Function").items()
                  if v["Properties"]["Handler"] == "functions.drift.retrain.handler"]
    for rule in rules.values():
        assert rule["EventPattern"]["source"] == ["shipyard"]
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [fid, "Arn"]}
    env = fn["Properties"]["Environment"]["Variables"]
    (machine,) = [k for k in _by_type(variant, "AWS::StepFunctions::StateMachine") if k.startswith("Pipeline")]
    assert env["STATE_MACHINE_ARN"] == {"Ref": machine}
    specs = json.loads(env["RETRAIN_SPECS"])
    assert set(specs) == {"iris", "house"} and specs["house"]["target"] == "price"
    # the retrain function may start the pipeline and list datasets/, nothing else
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    (policy,) = [p["Properties"] for p in _by_type(variant, "AWS::IAM::Policy").values()
                 if {"Ref": role} in p["Properties"]["Roles"]]
    by_action = {json.dumps(s["Action"]): s for s in policy["PolicyDocument"]["Statement"]}
    assert by_action['"states:StartExecution"']["Resource"] == {"Ref": machine}
    assert by_action['["s3:ListBucket", "s3:ListBucketVersions"]']["Condition"] == {
        "StringLike": {"s3:prefix": ["datasets/*"]}}
    assert set(by_action) == {'["logs:CreateLogStream", "logs:PutLogEvents"]',
                              '["xray:PutTelemetryRecords", "xray:PutTraceSegments"]',
                              '"states:StartExecution"', '["s3:ListBucket", "s3:ListBucketVersions"]'}


def test_stack_alarms_cover_api_every_function_and_the_pipeline(default):
    topic = _topic(default)
    alarms = _alarms(default)
    api = alarms["Shipyard-api-5xx-rate"]
    assert (api["Namespace"], api["MetricName"], api["Statistic"]) == ("AWS/ApiGateway", "5XXError", "Average")
    assert api["Threshold"] == 0.05 and api["EvaluationPeriods"] == 3 and api["DatapointsToAlarm"] == 2
    latency = alarms["Shipyard-api-p99-latency"]
    assert latency["MetricName"] == "Latency" and latency["ExtendedStatistic"] == "p99"
    assert latency["Threshold"] == 5000
    functions = _by_type(default, "AWS::Lambda::Function")
    for fid in functions:
        for metric in ("Errors", "Throttles"):
            matching = [a for a in alarms.values() if a["MetricName"] == metric and a["Namespace"] == "AWS/Lambda"
                        and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": fid}}]]
            assert len(matching) == 1, (fid, metric)
            assert matching[0]["Threshold"] == 1
    timed_out = alarms["Shipyard-pipeline-timed-out"]
    assert timed_out["MetricName"] == "ExecutionsTimedOut"
    every = [a["Properties"] for a in _by_type(default, "AWS::CloudWatch::Alarm").values()]
    failed = [a for a in every if a["MetricName"] == "ExecutionsFailed"
              and "BatchStateMachine" not in json.dumps(a["Dimensions"])]  # batch scoring has its own
    assert len(failed) == 1  # StackAlarms' one, not a second one of the pipeline's
    assert alarms["Shipyard-pipeline-failed"]["MetricName"] == "ExecutionsFailed"
    for alarm in every:
        assert alarm["AlarmActions"] == [{"Ref": topic}], alarm.get("AlarmName")
    assert alarms["Shipyard-artifact-integrity"]["MetricName"] == "ArtifactIntegrityFailures"
    # 2 per function + API 3 (5XX, p99, artifact integrity) + pipeline 2 + drift 1 per model + the
    # events' dead-letter queue 1 + capture delivery 1 per capture stream (Firehose) + unowned uploads 1
    # + failed batch scoring runs 1 + model quality 1 per model with a quality block (infra/quality.py)
    streams = _by_type(default, "AWS::KinesisFirehose::DeliveryStream")
    quality = [a for a in every if str(a.get("AlarmName", "")).endswith("-quality")]
    assert len(every) == 2 * len(functions) + 3 + 2 + 1 + 1 + len(streams) + 1 + 1 + len(quality)


def test_dashboard_shows_drift_per_model_and_every_alarm(variant):
    (dashboard,) = _by_type(variant, "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "Yard"
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else json.dumps(p) for p in parts)
    for model in ("iris", "wine", "house"):
        assert f"{model}: drifted share" in text and f"{model}: drift score per feature" in text
        assert f"SEARCH('{{Shipyard,Feature,Model}} MetricName=\\\"DriftScore\\\" Model=\\\"{model}\\\"'" in text
    for metric in ("DriftedShare", "RowsChecked", "DriftChecksSkipped", "5XXError", "Latency", "Errors",
                   "Throttles", "ExecutionsFailed"):
        assert metric in text, metric
    # the alarm status widget lists every alarm of the stack
    in_widget = {p["Fn::GetAtt"][0] for p in parts if isinstance(p, dict) and "Fn::GetAtt" in p
                 and p["Fn::GetAtt"][1] == "Arn"}
    assert set(_by_type(variant, "AWS::CloudWatch::Alarm")) <= in_widget


def test_schedule_period():
    assert schedule_period("rate(1 hour)").to_seconds() == 3600
    assert schedule_period("rate(15 minutes)").to_seconds() == 900
    assert schedule_period("rate(7 days)").to_seconds() == 86400
    assert schedule_period("cron(0 6 * * ? *)").to_seconds() == 3600


def test_no_unacknowledged_nag_findings(default, variant):
    assert default.nag == [] and variant.nag == []
