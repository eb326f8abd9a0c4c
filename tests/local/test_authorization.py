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
    return boto3.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]


def test_a_session_key_needs_its_own_token(aws):
    creds = aws.credentials_for(_role(), "fn")
    key, token = creds["AWS_ACCESS_KEY_ID"], creds["AWS_SESSION_TOKEN"]
    assert aws.principal(key, token).arn == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/Fn/fn"
    with pytest.raises(AccessDenied, match="security token included in the request is invalid"):
        aws.principal(key, "another session's token")
    with pytest.raises(AccessDenied, match="security token included in the request is invalid"):
        aws.principal(key, None)   # temporary credentials without their token
    assert aws.principal("testing") is ADMIN
