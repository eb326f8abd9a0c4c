"""IAM on the local cloud, on the synthesized stack: every function runs the loop under its own role,
and taking one grant or one policy statement out of the template makes the matching step fail
locally as it would in AWS, with AWS's error.

Each test brings up its own local cloud on a copy of the session's template with one edit.
"""
from __future__ import annotations

import contextlib
import copy
import json

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.pipeline import data

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def cloud_of(assembly, edit=None, iam: bool = True):
    """A local cloud on the session's template, after ``edit(resources)``."""
    from localcloud import LocalCloud, Template

    base = Template.load(assembly)
    body = copy.deepcopy(base.body)
    if edit is not None:
        edit(body["Resources"])
    tpl = Template.from_dict(body, stack_name=base.stack_name, directory=base.directory, assets=base.assets)
    lines: list[str] = []
    cloud = LocalCloud(tpl, aws_port=0, api_port=0, clock=False, log=lines.append, iam=iam)
    cloud.log_lines = lines
    cloud.start()
    try:
        yield cloud
    finally:
        cloud.stop()


def _one(resources: dict, type_: str, prefix: str) -> tuple[str, dict]:
    (found,) = [(k, v) for k, v in resources.items() if v["Type"] == type_ and k.startswith(prefix)]
    return found


def drop_statement(resources: dict, type_: str, prefix: str, action: str, *, key: str = "PolicyDocument") -> dict:
    """Remove the statement granting ``action`` from the policy of the one ``type_`` resource named ``prefix…``."""
    _, res = _one(resources, type_, prefix)
    doc = res["Properties"][key]
    before = len(doc["Statement"])
    doc["Statement"] = [s for s in doc["Statement"]
                        if action not in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert len(doc["Statement"]) == before - 1, f"{prefix}: no single statement grants {action}"
    return res


def upload(cloud, model: str = "animals", body: bytes | None = None) -> dict:
    return cloud.client("s3").put_object(Bucket=cloud.outputs["DataBucketName"], Key=f"datasets/{model}/data.csv",
                                         Body=body or data.animals())


def executions(cloud) -> list[dict]:
    arn = cloud.outputs["PipelineArn"]
    cloud.wait_idle()
    cloud.wait_for_executions(arn, timeout=240)
    return cloud.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"]


def registry_of(cloud):
    from functions.core.registry import Registry
    from tests.pipeline.conftest import MODELS

    return Registry(cloud.outputs["RegistryTableName"], client=cloud.client("dynamodb"), known_models=list(MODELS),
                    audit_table=cloud.outputs["AuditTableName"])


def function_client(cloud, role: str, service: str):
    """A client signed with the session of the function whose role is ``role…`` (what its code uses)."""
    spec = next(s for s in cloud.runtime.functions.values() if s.role_arn.split("/")[-1].split("-")[1].startswith(role))
    creds = spec.credentials
    return boto3.client(service, endpoint_url=cloud.aws_url, region_name=cloud.region,
                        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
                        aws_session_token=creds["AWS_SESSION_TOKEN"])


def dead_letters(cloud) -> list[dict]:
    sqs = cloud.client("sqs")
    url = next(u for u in sqs.list_queues().get("QueueUrls", []) if "EventDeadLetters" in u)
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", [])
    return [{k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()} for m in msgs]


def trip_drift_alarm(cloud, model: str = "animals") -> list[dict]:
    cloud.put_metrics("Shipyard", [{"MetricName": "DriftedShare", "Value": 1.0,
                                    "Dimensions": [{"Name": "Model", "Value": model}]}])
    changes = [c for c in cloud.evaluate_alarms() if c["alarm"].endswith(f"{model}-drift")]
    assert changes and changes[0]["to"] == "ALARM", changes
    cloud.wait_idle()
    return changes


def refused_alarm_action(cloud) -> dict:
    """Trip an alarm of the topic with a subscriber; nobody is notified: CloudWatch's failure record."""
    cloud.client("sns").subscribe(TopicArn=cloud.outputs["AlarmTopicArn"], Protocol="email", Endpoint="ops@example.com")
    trip_drift_alarm(cloud)
    assert cloud.notifications == []
    (failure,) = cloud.cloudwatch.action_failures
    return failure


# --------------------------------------------------------------------------- the stack as synthesized


def test_every_function_runs_the_loop_under_its_own_role(pipeline_assembly):
    with cloud_of(pipeline_assembly) as cloud:
        cloud.client("sns").subscribe(TopicArn=cloud.outputs["AlarmTopicArn"], Protocol="email",
                                      Endpoint="ops@example.com")
        upload(cloud)
        (execution,) = executions(cloud)
        assert execution["status"] == "SUCCEEDED"
        # each function has a session of its own role, as Lambda gives it
        sessions = {}
        for spec in cloud.runtime.functions.values():
            role = spec.role_arn.rsplit("/", 1)[-1]
            ident = function_client(cloud, role.split("-")[1], "sts").get_caller_identity()
            assert ident["Arn"] == f"arn:aws:sts::123456789012:assumed-role/{role}/{spec.name}"
            sessions[spec.name] = spec.credentials["AWS_ACCESS_KEY_ID"]
        assert len(set(sessions.values())) == len(sessions) >= 6
        # drift check (the schedule → the drift function) and the alarm e-mail
        schedule = cloud.physical_ids[_one(cloud.template.resources, "AWS::Events::Rule", "DriftScheduleanimals")[0]]
        cloud.fire_schedule(schedule)
        cloud.wait_idle()
        trip_drift_alarm(cloud)
        assert any("ops@example.com" in json.dumps(n, default=str) for n in cloud.notifications)
        assert cloud.cloudwatch.action_failures == []
        # the train role may list the data bucket: a missing dataset is a 404, not a 403
        s3 = function_client(cloud, "PipelineTrainRole", "s3")
        with pytest.raises(ClientError) as missing:
            s3.get_object(Bucket=cloud.outputs["DataBucketName"], Key="datasets/animals/gone.csv")
        assert missing.value.response["Error"]["Code"] == "NoSuchKey"
        # ... and may not read what it was not granted
        with pytest.raises(ClientError) as refused:
            s3.get_object(Bucket=cloud.outputs["DataBucketName"], Key="evaluation/animals/x.csv")
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
        assert "is not authorized to perform: s3:GetObject" in refused.value.response["Error"]["Message"]
        denied = [d for d in cloud.iam.denials if "evaluation/animals/x.csv" not in d.resource]
        assert denied == [], denied


# --------------------------------------------------------------------------- one grant or statement removed


def test_a_train_role_without_put_object_fails_the_run_with_aws_error(pipeline_assembly):
    def edit(resources):
        drop_statement(resources, "AWS::IAM::Policy", "PipelineTrainRoleDefaultPolicy", "s3:PutObject")

    with cloud_of(pipeline_assembly, edit) as cloud:
        upload(cloud)
        (execution,) = executions(cloud)
        assert execution["status"] in ("FAILED", "SUCCEEDED")  # the pipeline catches and records the failure
        (version,) = registry_of(cloud).list_versions("animals")
        assert version["status"] == "failed"
        assert "AccessDenied" in version["reason"] and "s3:PutObject" in version["reason"], version["reason"]
        (denial,) = {(d.action, d.principal.split("/")[1]) for d in cloud.iam.denials}
        assert denial[0] == "s3:PutObject" and "PipelineTrainRole" in denial[1]


def test_without_iam_the_same_template_trains(pipeline_assembly):
    def edit(resources):
        drop_statement(resources, "AWS::IAM::Policy", "PipelineTrainRoleDefaultPolicy", "s3:PutObject")

    with cloud_of(pipeline_assembly, edit, iam=False) as cloud:
        upload(cloud)
        (execution,) = executions(cloud)
        assert execution["status"] == "SUCCEEDED"
        assert registry_of(cloud).list_versions("animals")[0]["status"] == "production"


def test_without_list_bucket_a_missing_object_is_access_denied(pipeline_assembly):
    def edit(resources):
        drop_statement(resources, "AWS::IAM::Policy", "PipelineTrainRoleDefaultPolicy", "s3:ListBucket")

    with cloud_of(pipeline_assembly, edit) as cloud:
        s3 = function_client(cloud, "PipelineTrainRole", "s3")
        with pytest.raises(ClientError) as err:
            s3.get_object(Bucket=cloud.outputs["DataBucketName"], Key="datasets/animals/gone.csv")
        assert err.value.response["Error"]["Code"] == "AccessDenied"
        assert "s3:ListBucket" in err.value.response["Error"]["Message"]
        # a bucket that does not exist is 404 to everyone, for HEAD (no body to tell) as for GET
        with pytest.raises(ClientError) as gone:
            s3.head_object(Bucket="no-such-bucket-here", Key="datasets/animals/x.csv")
        assert gone.value.response["Error"]["Code"] == "404"


def test_alarm_email_needs_the_topic_policy_statement(pipeline_assembly):
    def edit_keep_tls(resources):
        _, res = _one(resources, "AWS::SNS::TopicPolicy", "AlarmTopicPolicy")
        doc = res["Properties"]["PolicyDocument"]
        doc["Statement"] = [s for s in doc["Statement"] if s.get("Effect") == "Deny"]
        assert len(doc["Statement"]) == 1

    with cloud_of(pipeline_assembly, edit_keep_tls) as cloud:
        failure = refused_alarm_action(cloud)
        assert failure["history"] == (
            f"Failed to execute action {cloud.outputs['AlarmTopicArn']}. Received error: \"CloudWatch Alarms is not "
            f"authorized to perform: SNS:Publish on resource:{cloud.outputs['AlarmTopicArn']}\"")


def test_alarm_email_needs_the_key_policy_statement(pipeline_assembly):
    def edit(resources):
        drop_statement(resources, "AWS::KMS::Key", "AlarmTopicKey", "kms:Decrypt", key="KeyPolicy")

    with cloud_of(pipeline_assembly, edit) as cloud:
        failure = refused_alarm_action(cloud)
        assert failure["history"].endswith(
            '"CloudWatch Alarms does not have authorization to access the SNS topic encryption key."')


def test_deliveries_need_the_target_role_and_the_function_permission(pipeline_assembly):
    """Upload rule → state machine (through its events role) and drift schedule → function (through its
    resource policy): without them EventBridge sends the event to the dead-letter queue, NO_PERMISSIONS."""
    def edit(resources):
        # the events role's only statement: a role policy needs one, so it grants something else instead
        _, policy = _one(resources, "AWS::IAM::Policy", "PipelineStateMachineEventsRoleDefaultPolicy")
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Action"] == "states:StartExecution"
        statement["Action"] = "states:DescribeStateMachine"
        lid, _ = _one(resources, "AWS::Lambda::Permission", "DriftScheduleanimalsAllowEventRule")
        del resources[lid]

    with cloud_of(pipeline_assembly, edit) as cloud:
        upload(cloud)
        schedule = cloud.physical_ids[_one(cloud.template.resources, "AWS::Events::Rule", "DriftScheduleanimals")[0]]
        cloud.fire_schedule(schedule)
        assert executions(cloud) == []
        letters = sorted(dead_letters(cloud), key=lambda m: m["TARGET_ARN"])
        assert [m["ERROR_CODE"] for m in letters] == ["NO_PERMISSIONS", "NO_PERMISSIONS"]
        fn, sm = letters
        assert ":function:" in fn["TARGET_ARN"] and ":stateMachine:" in sm["TARGET_ARN"]
        assert "is not authorized to perform: lambda:InvokeFunction" in fn["ERROR_MESSAGE"]
        assert "is not authorized to perform: states:StartExecution" in sm["ERROR_MESSAGE"]
        assert registry_of(cloud).list_versions("animals") == []


def test_a_dead_letter_queue_without_its_policy_loses_the_event(pipeline_assembly):
    def edit(resources):
        drop_statement(resources, "AWS::SQS::QueuePolicy", "EventDeadLettersQueuePolicy", "sqs:SendMessage")
        lid, _ = _one(resources, "AWS::Lambda::Permission", "DriftScheduleanimalsAllowEventRule")
        del resources[lid]

    with cloud_of(pipeline_assembly, edit) as cloud:
        schedule = cloud.physical_ids[_one(cloud.template.resources, "AWS::Events::Rule", "DriftScheduleanimals")[0]]
        cloud.fire_schedule(schedule)
        cloud.wait_idle()
        assert dead_letters(cloud) == []
        (lost,) = [f for f in cloud.bus.failures if "dead_letter_refused" in f]
        assert "is not authorized to perform: sqs:SendMessage" in lost["dead_letter_refused"]


def test_a_role_lambda_may_not_assume_fails_the_deploy(pipeline_assembly):
    from localcloud.cloud import DeployError

    def edit(resources):
        _, role = _one(resources, "AWS::IAM::Role", "PipelineTrainRole")
        role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] = {
            "Service": "states.amazonaws.com"}

    with pytest.raises(DeployError, match="cannot be assumed by Lambda"):
        with cloud_of(pipeline_assembly, edit):
            pass


def test_api_gateway_needs_the_function_permission_of_its_method(pipeline_assembly):
    from tests.pipeline.test_pipeline import _predict

    def edit(resources):
        (lid,) = [k for k, v in resources.items() if v["Type"] == "AWS::Lambda::Permission"
                  and "POSTmodelsnamepredict" in k]
        del resources[lid]

    with cloud_of(pipeline_assembly, edit) as cloud:
        refused = _predict(cloud, "animals", [{"x1": 1.0}])
        assert refused.status_code == 502 and refused.json() == {"message": "Internal server error"}
        (denial,) = cloud.iam.denials
        assert denial.principal == "apigateway.amazonaws.com" and denial.action == "lambda:InvokeFunction"
        assert any("invalid permissions on Lambda function" in line for line in cloud.log_lines)
        # the other methods keep their permissions
        models = cloud.outputs["ApiUrl"] + "models"
        req = AWSRequest(method="GET", url=models)
        SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(req)
        assert requests.get(models, headers=dict(req.headers), timeout=60).status_code == 200
