"""The approve/reject routes and the Approval function's role (infra/approval.py), on the session's
syntheses (default iam, and api_key) plus one built-not-synthesized auth=none app."""
from __future__ import annotations

import json

import pytest

from infra.approval import APPROVAL_ATTRIBUTES


def _decision_methods(synth) -> dict[str, dict]:
    return {lid: m for lid, m in synth.resources("AWS::ApiGateway::Method").items()
            if "ApprovalFunction" in json.dumps(m["Properties"]["Integration"]["Uri"])}


@pytest.mark.parametrize("which", ["synth", "synth_api_key"])
def test_approve_and_reject_are_aws_iam_in_every_auth_mode(which, request):
    synth = request.getfixturevalue(which)
    methods = _decision_methods(synth)
    assert len(methods) == 2
    resources = synth.resources("AWS::ApiGateway::Resource")
    parts = set()
    for method in methods.values():
        props = method["Properties"]
        assert props["HttpMethod"] == "POST"
        assert props["AuthorizationType"] == "AWS_IAM"
        assert props.get("ApiKeyRequired") is False
        assert props["Integration"]["Type"] == "AWS_PROXY"
        resource = resources[props["ResourceId"]["Ref"]]["Properties"]
        parts.add(resource["PathPart"])
        assert resources[resource["ParentId"]["Ref"]]["Properties"]["PathPart"] == "{version}"
    assert parts == {"approve", "reject"}


def test_auth_none_still_signs_the_decisions():
    from aws_cdk import aws_apigateway as apigw

    from infra.nag import nag_findings
    from infra.stack import build_app

    app, stack = build_app({"api": {"auth": "none"}, "models": {"iris": {"target": "species"}}}, build_layers=False)
    cfn = [c for c in stack.inference.node.find_all()
           if isinstance(c, apigw.CfnMethod) and ("/approve/" in c.node.path or "/reject/" in c.node.path)]
    assert len(cfn) == 2 and {m.authorization_type for m in cfn} == {"AWS_IAM"}
    assert nag_findings(app) == []


def _approval_statements(synth) -> list[dict]:
    (role_id,) = [lid for lid, r in synth.resources("AWS::IAM::Role").items() if lid.startswith("ApprovalFunctionRole")]
    out = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def _actions(statement) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def test_the_approval_role_is_least_privilege(synth):
    statements = _approval_statements(synth)
    actions = {a for s in statements for a in _actions(s)}
    assert actions == {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments",
                       "xray:PutTelemetryRecords", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem",
                       "dynamodb:PutItem", "states:SendTaskSuccess"}
    by_action = {a: s for s in statements for a in _actions(s)}
    table = {"Fn::GetAtt": [next(lid for lid in synth.resources("AWS::DynamoDB::Table") if "RegistryTable" in lid),
                            "Arn"]}
    audit = {"Fn::GetAtt": [next(lid for lid in synth.resources("AWS::DynamoDB::Table") if "AuditTable" in lid),
                            "Arn"]}
    update = by_action["dynamodb:UpdateItem"]
    assert update["Resource"] == table
    assert update["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["MODEL#*"]},
        "ForAllValues:StringEquals": {"dynamodb:Attributes": list(APPROVAL_ATTRIBUTES)}}
    put = by_action["dynamodb:PutItem"]
    assert put["Resource"] == audit  # the release log only: no registry PutItem
    assert put["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["MODEL#*"]}}
    send = by_action["states:SendTaskSuccess"]
    assert send["Resource"] == "*"  # no resource-level permission (infra/approval.py); acknowledged for cdk-nag
    assert set(_actions(send)) <= {"states:SendTaskSuccess", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    assert set(APPROVAL_ATTRIBUTES) == {"pk", "sk", "dataset_ref", "version_ref", "decision", "decided_by",
                                        "decision_reason", "decided_at", "task_token", "delivered_at"}


def test_grant_approve_is_exactly_the_two_method_arns():
    from aws_cdk import Stack
    from aws_cdk import aws_iam as iam

    from infra.stack import build_app

    _app, stack = build_app({"models": {"iris": {"target": "species"}}}, build_layers=False, nag=False)
    role = iam.Role(stack, "Approver", assumed_by=iam.AccountRootPrincipal())
    (statement,) = stack.approval.grant_approve(role).principal_statements
    resolved = Stack.of(role).resolve(statement.to_statement_json())
    assert resolved["Action"] == "execute-api:Invoke"
    tails = [r["Fn::Join"][1][-1] for r in resolved["Resource"]]
    assert tails == ["/prod/POST/models/*/versions/*/approve", "/prod/POST/models/*/versions/*/reject"]
    (only,) = stack.approval.grant_approve(role, model="iris").principal_statements
    tails = [r["Fn::Join"][1][-1] for r in Stack.of(role).resolve(only.to_statement_json())["Resource"]]
    assert tails == ["/prod/POST/models/iris/versions/*/approve", "/prod/POST/models/iris/versions/*/reject"]
