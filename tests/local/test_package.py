"""localcloud is a package of its own: it knows a stack only through the cloud assembly it is given.

In a fresh interpreter where importing the CDK or Shipyard's own code fails, every localcloud module
imports, and a cloud runs a template (schedules, metrics, alarm, SNS e-mail) and stops: an import
of ``aws_cdk``, ``constructs``, ``cdk_nag``, ``infra``, ``functions``, ``bench`` or ``tests``
anywhere on that path — at module level or inside a function — fails the test.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFUSED = ("aws_cdk", "constructs", "cdk_nag", "infra", "functions", "bench", "tests")

TEMPLATE = {
    "Resources": {
        "Topic": {"Type": "AWS::SNS::Topic"},
        "Email": {"Type": "AWS::SNS::Subscription", "Properties": {
            "TopicArn": {"Ref": "Topic"}, "Protocol": "email", "Endpoint": "ops@example.com"}},
        "TopicPolicy": {"Type": "AWS::SNS::TopicPolicy", "Properties": {
            "Topics": [{"Ref": "Topic"}], "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish",
                 "Resource": {"Ref": "Topic"}}]}}},
        "Queue": {"Type": "AWS::SQS::Queue"},
        "QueuePolicy": {"Type": "AWS::SQS::QueuePolicy", "Properties": {
            "Queues": [{"Ref": "Queue"}], "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
                 "Resource": {"Fn::GetAtt": ["Queue", "Arn"]}}]}}},
        "Every5": {"Type": "AWS::Events::Rule", "Properties": {
            "ScheduleExpression": "rate(5 minutes)",
            "Targets": [{"Id": "q", "Arn": {"Fn::GetAtt": ["Queue", "Arn"]}}]}},
        "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "Namespace": "Test", "MetricName": "Drift", "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1,
            "Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching", "AlarmActions": [{"Ref": "Topic"}]}},
    },
    "Outputs": {"TopicArn": {"Value": {"Ref": "Topic"}}},
}

SCRIPT = textwrap.dedent('''
    import importlib, json, pkgutil, sys, time

    REFUSED = set(sys.argv[1].split(","))

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in REFUSED:
                raise ImportError(f"localcloud must not import {name}")
            return None

    sys.meta_path.insert(0, Refuse())
    import localcloud

    for info in pkgutil.iter_modules(localcloud.__path__, "localcloud."):
        importlib.import_module(info.name)

    from localcloud import LocalCloud, Template

    template = Template.from_dict(json.loads(sys.argv[2]), stack_name="Alone")
    with LocalCloud(template, aws_port=0, api_port=0, clock=False, log=lambda _: None) as cloud:
        cloud.put_metrics("Test", [{"MetricName": "Drift", "Value": 5.0, "Unit": "Count"}])
        cloud.put_metrics("Test", [])
        cloud.tick(now=time.time() + 600)
        cloud.wait_idle()
        changes = cloud.evaluate_alarms()
        sent = cloud.client("sqs").receive_message(QueueUrl=cloud.client("sqs").list_queues()["QueueUrls"][0])
        print(json.dumps({"changes": [c["to"] for c in changes], "mails": len(cloud.notifications),
                          "scheduled": len(sent.get("Messages", [])),
                          "loaded": sorted({m.split(".")[0] for m in sys.modules} & REFUSED)}))
''')


def test_localcloud_runs_without_the_cdk_or_shipyard_code():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(REFUSED), json.dumps(TEMPLATE)], cwd=ROOT,
                          env={**env, "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"changes": ["ALARM"], "mails": 1, "scheduled": 1, "loaded": []}


def test_the_refusal_is_real():
    """The guard above fails an import it refuses (so a pass means localcloud made none)."""
    script = SCRIPT.split("import localcloud", 1)[0] + "import infra.config\n"
    proc = subprocess.run([sys.executable, "-c", script, "infra"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "localcloud must not import infra" in proc.stderr
