"""A LocalCloud that has stopped leaves the process as it found it: environment, moto config, moto's classes."""
import os
import threading
import time
import warnings

import pytest

from localcloud import LocalCloud, Template
from localcloud.resources import Schedule

TINY = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"TopicArn": {"Value": {"Ref": "Topic"}}}}


def _cloud():
    return LocalCloud(Template.from_dict(TINY, stack_name="Lifecycle"), aws_port=0, api_port=0, clock=False,
                      log=lambda _: None)


@pytest.mark.parametrize("moto_port, sfn_config", [
    (None, None),                                    # nothing set before
    ("4999", {"execute_state_machine": False, "other": 1}),  # someone else's settings
])
def test_stop_restores_moto_port_and_step_functions_config(monkeypatch, moto_port, sfn_config):
    from moto.awslambda.models import LambdaFunction
    from moto.core.config import default_user_config
    from moto.events.models import Rule
    from moto.s3 import notifications
    from moto.sns.models import Subscription
    from moto.sts.models import STSBackend
    from moto.sts.responses import TokenResponse

    if moto_port is None:
        monkeypatch.delenv("MOTO_PORT", raising=False)
    else:
        monkeypatch.setenv("MOTO_PORT", moto_port)
    if sfn_config is None:
        monkeypatch.delitem(default_user_config, "stepfunctions", raising=False)
    else:
        monkeypatch.setitem(default_user_config, "stepfunctions", dict(sfn_config))
    invoke_lambda, invoke = LambdaFunction._invoke_lambda, LambdaFunction.invoke
    seams = {(Rule, "send_to_targets"): Rule.send_to_targets, (Subscription, "publish"): Subscription.publish,
             (notifications, "_send_event_bridge_message"): notifications._send_event_bridge_message,
             (STSBackend, "get_caller_identity"): STSBackend.get_caller_identity,
             (TokenResponse, "get_access_key"): TokenResponse.get_access_key}

    with _cloud() as cloud:
        assert os.environ["MOTO_PORT"] == str(cloud.aws_port)
        assert default_user_config["stepfunctions"]["execute_state_machine"] is True
        assert LambdaFunction._invoke_lambda is not invoke_lambda
        assert all(getattr(owner, name) is not original for (owner, name), original in seams.items())

    assert os.environ.get("MOTO_PORT") == moto_port
    assert default_user_config.get("stepfunctions") == sfn_config
    assert LambdaFunction._invoke_lambda is invoke_lambda and LambdaFunction.invoke is invoke
    assert all(getattr(owner, name) is original for (owner, name), original in seams.items())


def test_starting_again_leaves_the_warning_filters_alone():
    with _cloud():
        pass
    warnings.filterwarnings("ignore", message="added after the first start")
    mine = warnings.filters[0]
    with _cloud():
        pass
    assert warnings.filters[0] is mine  # the local cloud's filter was not added (moved to the front) again


def _slowed(fn):
    def slow(*args, **kwargs):
        time.sleep(0.2)  # widens the window between "is it due / has it changed?" and recording that it did
        return fn(*args, **kwargs)
    return slow


def test_rate_counts_from_deployment_not_from_the_first_tick(monkeypatch):
    cloud = _cloud()
    fired = []
    monkeypatch.setattr(cloud, "fire_schedule", fired.append)
    cloud.schedules = [Schedule(name="every5", expression="rate(5 minutes)", targets=[], kind="rule",
                                created_at=time.time() - 400)]  # deployed 400 s ago: due 100 s ago
    assert cloud.tick() == ["every5"] and fired == ["every5"]
    assert cloud.tick() == []


def test_concurrent_ticks_fire_a_due_schedule_once(monkeypatch):
    import localcloud.cloud as cloud_mod

    cloud = _cloud()
    fired = []
    monkeypatch.setattr(cloud, "fire_schedule", fired.append)
    monkeypatch.setattr(cloud_mod, "next_fire", _slowed(cloud_mod.next_fire))
    now = time.time()
    cloud.schedules = [Schedule(name="every5", expression="rate(5 minutes)", targets=[], kind="rule",
                                created_at=now - 400)]
    threads = [threading.Thread(target=cloud.tick, kwargs={"now": now}) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert fired == ["every5"]


def test_concurrent_alarm_evaluations_email_once(monkeypatch):
    from moto.cloudwatch.models import Alarm

    template = {"Resources": {
        "Topic": {"Type": "AWS::SNS::Topic"},
        "TopicPolicy": {"Type": "AWS::SNS::TopicPolicy", "Properties": {
            "Topics": [{"Ref": "Topic"}], "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish",
                 "Resource": {"Ref": "Topic"}}]}}},
        "Email": {"Type": "AWS::SNS::Subscription", "Properties": {
            "TopicArn": {"Ref": "Topic"}, "Protocol": "email", "Endpoint": "ops@example.com"}},
        "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "Namespace": "Test", "MetricName": "Drift", "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1,
            "Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching", "AlarmActions": [{"Ref": "Topic"}]}}}}
    with LocalCloud(Template.from_dict(template, stack_name="Alarms"), aws_port=0, api_port=0, clock=False,
                    log=lambda _: None) as cloud:
        cloud.put_metrics("Test", [{"MetricName": "Drift", "Value": 5.0, "Unit": "Count"}])
        monkeypatch.setattr(Alarm, "update_state", _slowed(Alarm.update_state))
        threads = [threading.Thread(target=cloud.evaluate_alarms) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert [c["to"] for c in cloud.alarm_changes] == ["ALARM"]
        assert len(cloud.notifications) == 1
