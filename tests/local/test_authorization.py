"""localcloud.authorization.Authorizer against moto's backends in this process (no endpoint, no
cloud): what it reads of moto's state at each request."""
from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from localcloud.authorization import ADMIN, AccessDenied, Authorizer
from localcloud.template import ACCOUNT_ID

REGION = "us-east-1"
LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield Authorizer(ACCOUNT_ID, REGION)


def _table(name: str, key: str) -> None:
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}])


def test_key_schema_follows_a_table_created_again_with_another_key(aws):
    _table("Registry", "pk")
    assert aws.key_schema("Registry") == "pk"
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName="Registry")
    assert aws.key_schema("Registry") is None
    _table("Registry", "id")
    assert aws.key_schema("Registry") == "id"


def _role(name: str = "Fn") -> str:
    role = boto3.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))
    return role["Role"]["Arn"]


def test_a_session_key_needs_its_own_token(aws):
    creds = aws.credentials_for(_role(), "fn")
    key, token = creds["AWS_ACCESS_KEY_ID"], creds["AWS_SESSION_TOKEN"]
    assert aws.principal(key, token).arn == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/Fn/fn"
    with pytest.raises(AccessDenied, match="security token included in the request is invalid"):
        aws.principal(key, "another session's token")
    with pytest.raises(AccessDenied, match="security token included in the request is invalid"):
        aws.principal(key, None)   # temporary credentials without their token
    assert aws.principal("testing") is ADMIN


def _allow(name: str, action: str, resource: str = "*") -> None:
    boto3.client("iam").put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]}))


def test_assume_role_needs_the_roles_trust_policy(aws):
    """sts:AssumeRole is decided by the target role's trust policy too: an identity policy allowing
    it on every role does not let a function assume a role that trusts only Lambda."""
    iam = boto3.client("iam")
    creds = aws.credentials_for(_role("Fn"), "fn")
    caller = aws.principal(creds["AWS_ACCESS_KEY_ID"], creds["AWS_SESSION_TOKEN"])
    _allow("Fn", "sts:AssumeRole")
    lambda_only = _role("LambdaOnly")
    assert not aws.allowed(caller, "sts:AssumeRole", lambda_only).allowed

    def trusting(name: str, who: str) -> str:
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": who}, "Action": "sts:AssumeRole"}]}
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]

    named = trusting("TrustsFn", f"arn:aws:iam::{ACCOUNT_ID}:role/Fn")
    account = trusting("TrustsAccount", ACCOUNT_ID)
    assert aws.allowed(caller, "sts:AssumeRole", named).allowed
    assert aws.allowed(caller, "sts:AssumeRole", account).allowed   # the account's trust + the identity allow
    iam.delete_role_policy(RoleName="Fn", PolicyName="p")
    assert aws.allowed(caller, "sts:AssumeRole", named).allowed    # named directly: enough in one account
    assert not aws.allowed(caller, "sts:AssumeRole", account).allowed
    assert not aws.allowed(caller, "sts:AssumeRole", f"arn:aws:iam::{ACCOUNT_ID}:role/Missing").allowed


def test_a_session_of_a_role_with_a_path_has_its_roles_policies(aws):
    arn = boto3.client("iam").create_role(RoleName="Pathed", Path="/service-role/",
                                          AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    assert arn == f"arn:aws:iam::{ACCOUNT_ID}:role/service-role/Pathed"
    _allow("Pathed", "s3:GetObject", "arn:aws:s3:::data/*")
    creds = aws.credentials_for(arn, "fn")
    session = aws.principal(creds["AWS_ACCESS_KEY_ID"], creds["AWS_SESSION_TOKEN"])
    assert session.arn == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/Pathed/fn"
    assert aws.allowed(session, "s3:GetObject", "arn:aws:s3:::data/x").allowed


def test_a_key_the_cloud_did_not_issue_is_the_admin_without_a_look_at_every_session_and_user(aws, monkeypatch):
    iam = boto3.client("iam")
    iam.create_user(UserName="alice")
    key = iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"]
    assert aws.principal(key).arn == f"arn:aws:iam::{ACCOUNT_ID}:user/alice"
    creds = aws.credentials_for(_role(), "fn")
    assert aws.principal(creds["AWS_ACCESS_KEY_ID"], creds["AWS_SESSION_TOKEN"]).role_arn.endswith(":role/Fn")

    def scan(*args):
        raise AssertionError("the users were scanned")

    monkeypatch.setattr(Authorizer, "_iam", scan)
    assert aws.principal("testing") is ADMIN
    assert aws.principal("ASIA" + "0" * 16, "token") is ADMIN   # a session key of no session here


# ---------------------------------------------------------------------------- what a request asks for


def _sent(service: str, operation: str, **params):
    """The HTTP request boto3 sends for ``operation`` (method, path, query, headers, body): not sent."""
    from urllib.parse import unquote, urlsplit

    client = boto3.client(service, region_name=REGION, endpoint_url="http://127.0.0.1:9",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    seen = {}

    class Sent(Exception):
        pass

    def capture(request, **kwargs):
        url = urlsplit(request.url)
        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        seen.update(method=request.method, path=unquote(url.path), query=url.query,
                    headers={k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()},
                    body=body)
        raise Sent

    client.meta.events.register("before-send", capture)
    with pytest.raises(Sent):
        getattr(client, operation)(**params)
    return seen


def _calls(service: str, signing_name: str, operation: str, **params):
    from localcloud.actions import calls_for

    r = _sent(service, operation, **params)
    return calls_for(r["method"], r["path"], r["query"], r["headers"], r["body"], signing_name, REGION, ACCOUNT_ID)


def test_put_metric_data_names_its_namespace_as_boto3_sends_it():
    (call,) = _calls("cloudwatch", "monitoring", "put_metric_data", Namespace="Shipyard",
                     MetricData=[{"MetricName": "Drift", "Value": 1.0}])
    assert (call.action, call.resource, call.context) == ("cloudwatch:PutMetricData", "*",
                                                          {"cloudwatch:namespace": "Shipyard"})


def test_alarm_operations_are_authorized_on_each_alarms_arn():
    """AWS authorizes PutMetricAlarm, DescribeAlarms by name and DeleteAlarms on the alarm's ARN, which is
    all a release loop's policy allows (``alarm:<stack>-*``); listing every alarm is on "*"."""
    alarm = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:"
    (put,) = _calls("cloudwatch", "monitoring", "put_metric_alarm", AlarmName="S-iris-v2-errors", MetricName="E",
                    Namespace="Shipyard", Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=0.0,
                    ComparisonOperator="GreaterThanThreshold")
    assert (put.action, put.resource) == ("cloudwatch:PutMetricAlarm", alarm + "S-iris-v2-errors")
    deleted = _calls("cloudwatch", "monitoring", "delete_alarms", AlarmNames=["S-a", "S-b"])
    assert [(c.action, c.resource) for c in deleted] == [("cloudwatch:DeleteAlarms", alarm + "S-a"),
                                                         ("cloudwatch:DeleteAlarms", alarm + "S-b")]
    (described,) = _calls("cloudwatch", "monitoring", "describe_alarms", AlarmNames=["S-a"])
    assert described.resource == alarm + "S-a"
    (every,) = _calls("cloudwatch", "monitoring", "describe_alarms")
    assert (every.action, every.resource) == ("cloudwatch:DescribeAlarms", "*")


FN = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:fn"


@pytest.mark.parametrize("operation, params, action, resource", [
    ("invoke", {"FunctionName": "fn"}, "InvokeFunction", FN),
    ("invoke", {"FunctionName": "fn", "Qualifier": "prod"}, "InvokeFunction", FN + ":prod"),
    ("invoke", {"FunctionName": FN + ":prod"}, "InvokeFunction", FN + ":prod"),
    ("invoke", {"FunctionName": FN}, "InvokeFunction", FN),
    ("invoke", {"FunctionName": "fn:3"}, "InvokeFunction", FN + ":3"),
    ("get_function", {"FunctionName": "fn"}, "GetFunction", FN),
    ("delete_function", {"FunctionName": "fn"}, "DeleteFunction", FN),
    ("get_function_configuration", {"FunctionName": "fn"}, "GetFunctionConfiguration", FN),
    ("update_function_configuration", {"FunctionName": "fn", "Timeout": 3}, "UpdateFunctionConfiguration", FN),
    ("update_function_code", {"FunctionName": "fn", "ZipFile": b"x"}, "UpdateFunctionCode", FN),
    ("add_permission", {"FunctionName": "fn", "StatementId": "s", "Action": "lambda:InvokeFunction",
                        "Principal": "s3.amazonaws.com"}, "AddPermission", FN),
    ("get_policy", {"FunctionName": "fn"}, "GetPolicy", FN),
    ("remove_permission", {"FunctionName": "fn", "StatementId": "s"}, "RemovePermission", FN),
    ("publish_version", {"FunctionName": "fn"}, "PublishVersion", FN),
    ("list_versions_by_function", {"FunctionName": "fn"}, "ListVersionsByFunction", FN),
    ("put_function_concurrency", {"FunctionName": "fn", "ReservedConcurrentExecutions": 1},
     "PutFunctionConcurrency", FN),
    ("get_function_concurrency", {"FunctionName": "fn"}, "GetFunctionConcurrency", FN),
    ("delete_function_concurrency", {"FunctionName": "fn"}, "DeleteFunctionConcurrency", FN),
    ("get_alias", {"FunctionName": "fn", "Name": "a"}, "GetAlias", FN),
    ("list_functions", {}, "ListFunctions", "*"),
    ("list_tags", {"Resource": FN}, "ListTags", FN),
])
def test_lambda_api_operations_ask_for_their_own_action(operation, params, action, resource):
    """Each Lambda REST path asks for its operation's action (RemovePermission is not DeleteFunction,
    AddPermission not UpdateFunctionConfiguration), on the function, qualified when the call is."""
    (call,) = _calls("lambda", "lambda", operation, **params)
    assert (call.action, call.resource) == (f"lambda:{action}", resource)


@pytest.mark.parametrize("key, arn", [
    ("1234abcd-12ab", f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/1234abcd-12ab"),
    ("alias/alarms", f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:alias/alarms"),
    (f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/k", f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/k"),
])
def test_a_kms_key_id_names_its_arn(key, arn):
    from localcloud.actions import kms_key_arn

    (call,) = _calls("kms", "kms", "generate_data_key", KeyId=key, KeySpec="AES_256")
    assert (call.action, call.resource) == ("kms:GenerateDataKey", arn) and kms_key_arn(key, REGION, ACCOUNT_ID) == arn


def test_delete_objects_asks_for_each_objects_own_action():
    """DeleteObjects: an object named with its version id is s3:DeleteObjectVersion, one without is
    s3:DeleteObject, each on its own key."""
    calls = _calls("s3", "s3", "delete_objects", Bucket="b", Delete={"Objects": [
        {"Key": "datasets/iris/a.csv"}, {"Key": "models/iris/v1/model.onnx", "VersionId": "v1"}]})
    assert [(c.action, c.resource) for c in calls] == [
        ("s3:DeleteObject", "arn:aws:s3:::b/datasets/iris/a.csv"),
        ("s3:DeleteObjectVersion", "arn:aws:s3:::b/models/iris/v1/model.onnx")]
