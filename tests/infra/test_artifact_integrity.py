"""The alarm on ArtifactIntegrityFailures: a model artifact the inference function refused because
its bytes did not have the sha256 the registry recorded (issue 11, tamper-proof artifacts)."""
from __future__ import annotations


def test_artifact_integrity_failures_alarm_goes_to_the_alarm_topic(synth):
    (alarm,) = [a["Properties"] for a in synth.resources("AWS::CloudWatch::Alarm").values()
                if a["Properties"].get("MetricName") == "ArtifactIntegrityFailures"]
    assert alarm["AlarmName"] == "Shipyard-artifact-integrity"
    assert alarm["Namespace"] == "Shipyard" and alarm["Statistic"] == "Sum"
    # the dimensions the inference function publishes it with (service only: every model)
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "shipyard-inference"}]
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["EvaluationPeriods"] == 1 and alarm["DatapointsToAlarm"] == 1
    assert alarm["TreatMissingData"] == "notBreaching"
    (topic,) = synth.resources("AWS::SNS::Topic")
    assert alarm["AlarmActions"] == [{"Ref": topic}]
    function = [f["Properties"] for f in synth.resources("AWS::Lambda::Function").values()
                if f["Properties"].get("Handler") == "functions.inference.handler.handler"]
    assert [f["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] for f in function] == ["shipyard-inference"]


def test_the_inference_function_may_read_recorded_object_versions(synth):
    function = next(k for k, f in synth.resources("AWS::Lambda::Function").items()
                    if f["Properties"].get("Handler") == "functions.inference.handler.handler")
    role = synth.resources("AWS::Lambda::Function")[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    actions = set()
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            for st in policy["Properties"]["PolicyDocument"]["Statement"]:
                acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                actions.update(acts)
    assert {"s3:GetObject", "s3:GetObjectVersion"} <= actions
