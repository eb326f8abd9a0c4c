"""QualityMonitor (infra/quality.py) in the synthesized template: a schedule and an alarm only for models
with a quality block, the quality function's least-privilege policy, the retrain function's narrow put,
the environment the check reads. Uses the session's synthesis of cdk.json (iris has a quality block)."""
from __future__ import annotations

import json

from functions.quality import quality_function_name


def _by_type(synth, type_):
    return synth.resources(type_)


def _function(synth, prefix):
    (item,) = [(k, v["Properties"]) for k, v in _by_type(synth, "AWS::Lambda::Function").items()
               if k.startswith(prefix)]
    return item


def _statements(synth, props):
    role = props["Role"]["Fn::GetAtt"][0]
    (policy,) = [p["Properties"] for p in _by_type(synth, "AWS::IAM::Policy").values()
                 if {"Ref": role} in p["Properties"]["Roles"]]
    return policy["PolicyDocument"]["Statement"]


def _actions(statements):
    return {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def _suffixes(statement):
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return sorted(r["Fn::Join"][1][-1] if isinstance(r, dict) and "Fn::Join" in r else json.dumps(r)
                  for r in resources)


def test_quality_function_environment_and_name(synth):
    _, props = _function(synth, "QualityFunction")
    assert props["FunctionName"] == quality_function_name("Shipyard") == "Shipyard-quality"
    env = props["Environment"]["Variables"]
    assert json.loads(env["QUALITY_MODELS"]) == {"iris": {
        "target": "species", "task": "classification", "metric": "accuracy", "min_score": 0.8, "min_labels": 50,
        "window": 7 * 86400, "retrain": "dataset+labels"}}
    assert env["DATA_BUCKET"]["Ref"].startswith("RegistryData") and env["QUALITY_LATE_LOOKBACK"] == "604800"


def test_quality_function_has_least_privilege(synth):
    _, props = _function(synth, "QualityFunction")
    statements = _statements(synth, props)
    assert _actions(statements) == {
        "logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTelemetryRecords", "xray:PutTraceSegments",
        "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "s3:GetObject", "s3:GetObjectVersion",
        "s3:ListBucket", "s3:PutObject", "events:PutEvents"}
    puts = [s for s in statements if s["Action"] == "s3:PutObject"]
    assert sorted(x for s in puts for x in _suffixes(s)) == ["/quality/*", "/reports/*"]
    (item,) = [s for s in statements if s["Action"] == "dynamodb:PutItem"]
    assert item["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["MODEL#*"]}}
    reads = [s for s in statements
             if "s3:GetObject" in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert sorted(x for s in reads for x in _suffixes(s)) == [
        "/capture/*", "/drift/*", "/labels/*", "/models/*", "/quality/*"]
    assert not any(s.get("Resource") == "*" and s["Action"] not in (
        ["xray:PutTelemetryRecords", "xray:PutTraceSegments"], ["xray:PutTraceSegments", "xray:PutTelemetryRecords"])
        for s in statements)


def test_retrain_function_puts_only_the_combined_datasets(synth):
    _, props = _function(synth, "QualityRetrain")
    statements = _statements(synth, props)
    (put,) = [s for s in statements if s["Action"] == "s3:PutObject"]
    assert _suffixes(put) == ["/datasets/iris/retrain-*"]
    assert "states:StartExecution" in _actions(statements)
    assert not {"s3:DeleteObject", "dynamodb:PutItem", "events:PutEvents"} & _actions(statements)


def test_schedule_alarm_and_retrain_rule(synth):
    rules = {k: v["Properties"] for k, v in _by_type(synth, "AWS::Events::Rule").items() if k.startswith("Quality")}
    schedules = [r for r in rules.values() if "ScheduleExpression" in r]
    assert [(r["ScheduleExpression"], json.loads(r["Targets"][0]["Input"])) for r in schedules] == [
        ("rate(1 day)", {"model": "iris"})]
    (retrain,) = [r for r in rules.values() if "EventPattern" in r]
    assert retrain["EventPattern"] == {"source": ["shipyard"], "detail-type": ["Quality Degraded"],
                                       "detail": {"model": ["iris"]}}
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in _by_type(synth, "AWS::CloudWatch::Alarm").values()
              if "AlarmName" in a["Properties"]}
    alarm = alarms["Shipyard-iris-quality"]
    assert (alarm["MetricName"], alarm["Namespace"], alarm["Statistic"]) == ("ModelQuality", "Shipyard", "Minimum")
    assert alarm["ComparisonOperator"] == "LessThanThreshold" and alarm["Threshold"] == 0.8
    assert alarm["TreatMissingData"] == "notBreaching" and alarm["Period"] == 86400
    assert alarm["Dimensions"] == [{"Name": "Model", "Value": "iris"}]


def test_error_metric_alarm_is_above_and_models_without_quality_get_nothing(tmp_path):
    from infra.config import load_config
    from infra.quality import QualityMonitor

    config = load_config({"models": {
        "prices": {"target": "price", "task": "regression", "metric": "rmse", "min_score": 0.0,
                   "quality": {"min_score": 12.5, "schedule": "rate(6 hours)"}},
        "flat": {"target": "price", "task": "regression", "metric": "mae"},
    }})
    from aws_cdk import App, Stack

    from infra.registry import ModelRegistry
    from infra.stack import read_cdk_json_context

    context = {k: v for k, v in read_cdk_json_context().items() if k != "shipyard"}
    stack = Stack(App(context=context), "Q")
    monitor = QualityMonitor(stack, "Quality", registry=ModelRegistry(stack, "Registry"), models=config.models)
    assert list(monitor.models) == ["prices"] and list(monitor.schedules) == ["prices"]
    assert monitor.retrain_function is None
    from aws_cdk.assertions import Template

    template = Template.from_stack(stack).to_json()
    (alarm,) = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["Threshold"] == 12.5
    assert alarm["Statistic"] == "Maximum" and alarm["Period"] == 6 * 3600
