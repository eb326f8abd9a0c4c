"""Approve/reject end to end on the local cloud: the real stack (the session's one synthesis), a
run waiting on a task token, the Approval function behind the always-AWS_IAM routes, the local
API Gateway deciding execute-api:Invoke with the local IAM, and ``shipyard approve|reject``.

The pipeline's own AwaitApproval step is not needed here: a tiny state machine's
``sqs:sendMessage.waitForTaskToken`` task waits instead, and its token is stored with
``Registry.request_approval`` as that step does.
"""
from __future__ import annotations

import json
import time
import uuid

import boto3
import pytest

from infra.apiclient import signed_request

MODEL = "iris"
DATASET = {"bucket": "data", "key": "datasets/iris/a.csv", "version_id": "v1", "sha256": "ab" * 32}
ADMIN_ARN = "arn:aws:iam::123456789012:user/testing"  # `testing`: a key the cloud did not issue


@pytest.fixture(scope="module")
def cloud(shipyard_assembly):
    from localcloud import LocalCloud, Template

    lines: list[str] = []
    c = LocalCloud(Template.load(shipyard_assembly), aws_port=0, api_port=0, clock=False, log=lines.append)
    c.log_lines = lines
    c.start()
    sqs, iam = c.client("sqs"), c.client("iam")
    c.queue = sqs.create_queue(QueueName="approval-requests")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=c.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "states.amazonaws.com"}}]}
    c.waiter_role = iam.create_role(RoleName="approval-waiter",
                                    AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="approval-waiter", PolicyName="send", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage",
                                                "Resource": queue_arn}]}))
    c.machines = {}
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def registry(cloud):
    from functions.core.registry import Registry

    return Registry(cloud.outputs["RegistryTableName"], client=cloud.client("dynamodb"), known_models=[MODEL],
                    audit_table=cloud.outputs["AuditTableName"])


@pytest.fixture(scope="module")
def grant_statement(cloud):
    """The statement ``ReleaseApproval.grant_approve`` writes, as the stack builds it (same config
    as the session's synthesis, so the same logical ids), resolved against the running cloud."""
    from aws_cdk import aws_iam as iam

    from infra.stack import build_app

    _app, stack = build_app(nag=False, build_layers=False)
    grant = stack.approval.grant_approve(iam.Role(stack, "Approver", assumed_by=iam.AccountRootPrincipal()))
    (statement,) = grant.principal_statements
    (api_id,) = cloud._ctx.apis  # the stack's one REST API
    pseudo = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}

    def resolve(value):
        if isinstance(value, dict) and "Ref" in value:
            return pseudo.get(value["Ref"], api_id)  # the only other Ref: the RestApi
        if isinstance(value, dict) and "Fn::Join" in value:
            sep, parts = value["Fn::Join"]
            return sep.join(resolve(p) for p in parts)
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    return resolve(stack.resolve(statement.to_statement_json()))


def _waiting_run(cloud, timeout: int = 3600) -> tuple[str, str]:
    """(execution ARN, task token) of a run waiting at a .waitForTaskToken task."""
    sfn, sqs = cloud.client("stepfunctions"), cloud.client("sqs")
    if timeout not in cloud.machines:
        definition = {"StartAt": "AwaitApproval", "States": {"AwaitApproval": {
            "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "TimeoutSeconds": timeout,
            "Parameters": {"QueueUrl": cloud.queue, "MessageBody": {"token.$": "$$.Task.Token",
                                                                   "execution.$": "$$.Execution.Id"}},
            "End": True}}}
        cloud.machines[timeout] = sfn.create_state_machine(
            name=f"await-approval-{timeout}", definition=json.dumps(definition), roleArn=cloud.waiter_role,
            type="STANDARD")["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=cloud.machines[timeout], name=uuid.uuid4().hex,
                                    input="{}")["executionArn"]
    deadline = time.time() + 20
    while time.time() < deadline:
        for message in sqs.receive_message(QueueUrl=cloud.queue, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", []):
            sqs.delete_message(QueueUrl=cloud.queue, ReceiptHandle=message["ReceiptHandle"])
            body = json.loads(message["Body"])
            if body["execution"] == execution:
                return execution, body["token"]
    raise AssertionError(f"no task token from {execution}")


def _awaiting(cloud, registry, timeout: int = 3600) -> tuple[int, str]:
    """A candidate version of iris awaiting approval, with a run waiting on its token."""
    v = registry.allocate_version(MODEL, dataset=DATASET)["version"]
    registry.record_candidate(MODEL, v, artifact_key=f"models/{MODEL}/v{v}/model.onnx", artifact_sha256="cd" * 32,
                              schema={"features": []}, metrics={"accuracy": 0.9})
    execution, token = _waiting_run(cloud, timeout)
    timeout_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + timeout))
    registry.request_approval(MODEL, v, task_token=token, execution_arn=execution, timeout_at=timeout_at)
    assert registry.get_version(MODEL, v)["status"] == "awaiting_approval"
    return v, execution


def _ended(cloud, execution: str, timeout: float = 20) -> dict:
    sfn = cloud.client("stepfunctions")
    deadline = time.time() + timeout
    while time.time() < deadline:
        desc = sfn.describe_execution(executionArn=execution)
        if desc["status"] != "RUNNING":
            return desc
        time.sleep(0.2)
    raise AssertionError(f"{execution} still running")


def _url(cloud, v: int, decision: str) -> str:
    return f"{cloud.outputs['ApiUrl']}models/{MODEL}/versions/{v}/{decision}"


def _post(cloud, v: int, decision: str, body: dict | None = None, session=None) -> tuple[int, dict]:
    status, _h, raw = signed_request("POST", _url(cloud, v, decision), json.dumps(body or {}).encode(), "iam",
                                     session=session)
    return status, json.loads(raw or b"{}")


def _user(cloud, name: str, statements: list[dict]) -> boto3.Session:
    """An IAM user of the local cloud with these identity policy statements, as a boto3 session."""
    iam = cloud.client("iam")
    iam.create_user(UserName=name)
    if statements:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": statements}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                         region_name="us-east-1")


def _cli(*argv: str) -> int:
    from infra.cli import main

    return main(list(argv))


# --------------------------------------------------------------------------- tests


def test_shipyard_approve_continues_the_run_and_audits_the_caller(cloud, registry, capsys):
    v, execution = _awaiting(cloud, registry)
    api = cloud.outputs["ApiUrl"]
    assert _cli("approve", MODEL, str(v), "--reason", "metrics reviewed", "--api-url", api) == 0
    assert capsys.readouterr().out.strip() == (f"approved {MODEL} v{v} as {ADMIN_ARN}; the run continues "
                                               "(reason: metrics reviewed)")
    desc = _ended(cloud, execution)
    assert desc["status"] == "SUCCEEDED", desc
    output = json.loads(desc["output"])
    assert set(output) == {"decision", "actor", "reason", "at"}
    assert (output["decision"], output["actor"], output["reason"]) == ("approve", ADMIN_ARN, "metrics reviewed")
    (event,) = [e for e in registry.release_log(MODEL) if e["kind"] == "approved" and e["version"] == v]
    assert event["actor"] == ADMIN_ARN and event["reason"] == "metrics reviewed"

    # a second decision: 409 naming the first, through the API and the CLI
    status, answer = _post(cloud, v, "reject", {"reason": "changed my mind"})
    assert status == 409
    assert answer["message"].startswith(f"model 'iris' version {v} was already decided: approve by {ADMIN_ARN}")
    assert _cli("approve", MODEL, str(v), "--api-url", api) == 1
    assert "nothing was approved: " in capsys.readouterr().err


def test_shipyard_reject_needs_a_reason_and_ends_the_run_rejected(cloud, registry, capsys):
    v, execution = _awaiting(cloud, registry)
    status, answer = _post(cloud, v, "reject", {})
    assert status == 400 and "a rejection needs a reason" in answer["message"]
    status, answer = _post(cloud, v, "reject", {"reason": "   "})
    assert status == 400
    assert registry.get_approval(MODEL, v).get("decision") is None
    assert _cli("reject", MODEL, str(v), "--reason", "drifted segment", "--api-url", cloud.outputs["ApiUrl"]) == 0
    assert capsys.readouterr().out.startswith(f"rejected {MODEL} v{v} as {ADMIN_ARN}; the run ends rejected")
    output = json.loads(_ended(cloud, execution)["output"])
    assert (output["decision"], output["reason"]) == ("reject", "drifted segment")


def test_a_user_without_execute_api_invoke_on_the_route_is_refused_and_nothing_is_decided(cloud, registry, capsys,
                                                                                          monkeypatch):
    v, execution = _awaiting(cloud, registry)
    # allowed to predict and read, not to approve: API Gateway's 403 on the approve method
    reader = _user(cloud, "reader", [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": [
        "arn:aws:execute-api:us-east-1:123456789012:*/prod/GET/*",
        "arn:aws:execute-api:us-east-1:123456789012:*/prod/POST/models/*/predict"]}])
    status, answer = _post(cloud, v, "approve", session=reader)
    assert status == 403
    arn = _url(cloud, v, "approve")
    api_id = next(iter(cloud._ctx.apis))
    method_arn = f"arn:aws:execute-api:us-east-1:123456789012:{api_id}/prod/POST/models/{MODEL}/versions/{v}/approve"
    assert answer["Message"] == (f"User: arn:aws:iam::123456789012:user/reader is not authorized to perform: "
                                 f"execute-api:Invoke on resource: {method_arn}"), (answer, arn)
    # the reads it was granted still work
    status, _h, _raw = signed_request("GET", f"{cloud.outputs['ApiUrl']}models/{MODEL}", None, "iam", session=reader)
    assert status == 200
    assert registry.get_approval(MODEL, v).get("decision") is None
    assert cloud.client("stepfunctions").describe_execution(executionArn=execution)["status"] == "RUNNING"

    # the CLI says what is missing
    creds = reader.get_credentials()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds.secret_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    assert _cli("approve", MODEL, str(v), "--api-url", cloud.outputs["ApiUrl"]) == 1
    err = capsys.readouterr().err
    assert "403" in err and "execute-api:Invoke on the approve and reject routes" in err and "grant_approve" in err


def test_a_user_granted_by_grant_approve_decides_as_itself(cloud, registry, grant_statement):
    assert grant_statement["Action"] == "execute-api:Invoke"
    assert [r.rsplit("/", 1)[-1] for r in grant_statement["Resource"]] == ["approve", "reject"]
    v, execution = _awaiting(cloud, registry)
    approver = _user(cloud, "approver", [grant_statement])
    # granted to decide, not to predict or read
    status, _h, _raw = signed_request("GET", f"{cloud.outputs['ApiUrl']}models", None, "iam", session=approver)
    assert status == 403
    status, answer = _post(cloud, v, "approve", session=approver)
    user_arn = "arn:aws:iam::123456789012:user/approver"
    assert status == 200, answer
    assert answer == {"model": MODEL, "version": v, "decision": "approve", "actor": user_arn, "reason": None}
    assert json.loads(_ended(cloud, execution)["output"])["actor"] == user_arn
    (event,) = [e for e in registry.release_log(MODEL) if e["kind"] == "approved" and e["version"] == v]
    assert event["actor"] == user_arn
    assert registry.get_approval(MODEL, v)["decided_by"] == user_arn


def test_an_assumed_role_session_is_recorded_as_its_sts_arn(cloud, registry, grant_statement):
    iam, sts = cloud.client("iam"), cloud.client("sts")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]}
    iam.create_role(RoleName="Approvers", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName="Approvers", PolicyName="approve", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [grant_statement]}))
    creds = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/Approvers", RoleSessionName="alice")["Credentials"]
    session = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"], region_name="us-east-1")
    v, execution = _awaiting(cloud, registry)
    status, answer = _post(cloud, v, "reject", {"reason": "not this week"}, session=session)
    assert status == 200, answer
    assert answer["actor"] == "arn:aws:sts::123456789012:assumed-role/Approvers/alice"
    assert json.loads(_ended(cloud, execution)["output"])["actor"] == answer["actor"]
    # a session key presented without its token: refused before anything runs
    bare = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         region_name="us-east-1")
    status, answer = _post(cloud, v, "approve", session=bare)
    assert status == 403 and "security token" in answer["message"]


def test_an_expired_approval_is_409_and_the_run_was_rejected(cloud, registry, capsys):
    v, execution = _awaiting(cloud, registry, timeout=1)
    assert _ended(cloud, execution)["status"] == "FAILED"  # the wait timed out (States.Timeout)
    status, answer = _post(cloud, v, "approve")
    assert status == 409
    assert "expired at" in answer["message"] and "the run was rejected" in answer["message"]
    assert registry.get_approval(MODEL, v)["decision"] == "approve"  # recorded, and the message says so
    assert not [e for e in registry.release_log(MODEL) if e["kind"] == "approved" and e["version"] == v]


def test_unknown_model_and_version_are_404(cloud, registry, capsys):
    status, answer = _post(cloud, 10_000, "approve")
    assert status == 404 and "no version 10000" in answer["message"]
    assert _cli("approve", "irsi", "1", "--api-url", cloud.outputs["ApiUrl"]) == 1
    assert "did you mean 'iris'" in capsys.readouterr().err
