"""Approve/reject (functions/approval): the core over a moto registry, the handler's event shapes,
and ``shipyard approve|reject`` (infra/approval_cli.py) against a stand-in API."""
import argparse
import json

import pytest
from botocore.exceptions import ClientError

from functions.approval import handler as approval_handler
from functions.approval.service import ApprovalApiError, decide_release, model_name, parse_reason, version_number
from functions.core import clients
from tests.support import DATASET, candidate_version, moto_registry

ALICE = "arn:aws:sts::123456789012:assumed-role/Approvers/alice"


class Sfn:
    """A Step Functions client stand-in: records SendTaskSuccess, or fails with `error`."""

    def __init__(self, error: str | None = None):
        self.sent: list[dict] = []
        self.error = error

    def send_task_success(self, **kw):
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "Task Timed Out"}}, "SendTaskSuccess")
        self.sent.append(kw)
        return {}


@pytest.fixture
def reg():
    with moto_registry() as registry:
        yield registry


def awaiting(reg, model="iris"):
    v = candidate_version(reg, model)
    reg.request_approval(model, v, task_token=f"token-{v}", execution_arn="arn:aws:states:us-east-1:1:execution:p:e",
                         timeout_at="2026-12-08T00:00:00Z")
    return v


# --------------------------------------------------------------------------- the core


def test_approve_sends_the_decision_and_logs_it_with_the_caller(reg):
    v = awaiting(reg)
    sfn = Sfn()
    answer = decide_release(reg, sfn, "iris", v, "approve", actor=ALICE, reason=None)
    assert answer == {"model": "iris", "version": v, "decision": "approve", "actor": ALICE, "reason": None}
    (sent,) = sfn.sent
    assert sent["taskToken"] == f"token-{v}"
    output = json.loads(sent["output"])
    assert set(output) == {"decision", "actor", "reason", "at"}
    assert (output["decision"], output["actor"], output["reason"]) == ("approve", ALICE, None)
    (event,) = [e for e in reg.release_log("iris") if e["kind"] == "approved"]
    assert event["actor"] == ALICE and event["version"] == v
    assert reg.get_approval("iris", v)["decided_by"] == ALICE


def test_reject_carries_the_reason(reg):
    v = awaiting(reg)
    sfn = Sfn()
    decide_release(reg, sfn, "iris", v, "reject", actor=ALICE, reason="recall too low on the new segment")
    assert json.loads(sfn.sent[0]["output"])["reason"] == "recall too low on the new segment"
    (event,) = [e for e in reg.release_log("iris") if e["kind"] == "rejected"]
    assert event["reason"] == "recall too low on the new segment"


def test_first_decision_wins_then_409_naming_it(reg):
    v = awaiting(reg)
    decide_release(reg, Sfn(), "iris", v, "approve", actor=ALICE, reason=None)
    sfn = Sfn()
    with pytest.raises(ApprovalApiError) as err:
        decide_release(reg, sfn, "iris", v, "reject", actor="arn:aws:iam::123456789012:user/bob", reason="no")
    assert err.value.status == 409
    assert "already decided: approve by " + ALICE in err.value.message
    assert sfn.sent == []
    assert [e["kind"] for e in reg.release_log("iris")].count("rejected") == 0


def test_a_decision_the_run_never_received_can_be_sent_again_by_its_caller(reg):
    """SendTaskSuccess failed (throttled, a network error): the decision is recorded but undelivered.
    The same caller repeating it re-sends it (the run would otherwise wait until its timeout); anyone
    else, or the same caller once delivered, is told it was decided."""
    v = awaiting(reg)
    with pytest.raises(ClientError):
        decide_release(reg, Sfn(error="ThrottlingException"), "iris", v, "approve", actor=ALICE, reason=None)
    assert not reg.get_approval("iris", v).get("delivered_at")
    with pytest.raises(ApprovalApiError) as err:
        decide_release(reg, Sfn(), "iris", v, "approve", actor="arn:aws:iam::123456789012:user/bob", reason=None)
    assert err.value.status == 409
    sfn = Sfn()
    decide_release(reg, sfn, "iris", v, "approve", actor=ALICE, reason=None)
    assert len(sfn.sent) == 1 and reg.get_approval("iris", v)["delivered_at"]
    with pytest.raises(ApprovalApiError) as err:
        decide_release(reg, Sfn(), "iris", v, "approve", actor=ALICE, reason=None)
    assert err.value.status == 409 and "already decided" in err.value.message
    assert [e["kind"] for e in reg.release_log("iris")].count("approved") == 1


def test_not_awaiting_unknown_model_and_version(reg):
    v = awaiting(reg)
    other = reg.allocate_version("iris", dataset=DATASET)["version"]  # training, never asked for approval
    with pytest.raises(ApprovalApiError) as err:
        decide_release(reg, Sfn(), "iris", other, "approve", actor=ALICE, reason=None)
    assert (err.value.status, err.value.message) == (409, f"model 'iris' version {other} is not awaiting approval")
    with pytest.raises(ApprovalApiError) as err:
        decide_release(reg, Sfn(), "iris", v + 10, "approve", actor=ALICE, reason=None)
    assert err.value.status == 404 and f"no version {v + 10}" in err.value.message
    with pytest.raises(ApprovalApiError) as err:
        decide_release(reg, Sfn(), "irsi", 1, "approve", actor=ALICE, reason=None)
    assert err.value.status == 404 and "'irsi'" in err.value.message


@pytest.mark.parametrize("code", ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"])
def test_an_expired_token_is_409_and_the_decision_stays_recorded(reg, code):
    v = awaiting(reg)
    with pytest.raises(ApprovalApiError) as err:
        decide_release(reg, Sfn(error=code), "iris", v, "approve", actor=ALICE, reason=None)
    assert err.value.status == 409
    assert "expired at 2026-12-08T00:00:00Z; the run was rejected" in err.value.message
    assert "recorded on the approval item" in err.value.message
    assert reg.get_approval("iris", v)["decision"] == "approve"
    assert not [e for e in reg.release_log("iris") if e["kind"] == "approved"]


def test_no_identity_is_refused(reg):
    v = awaiting(reg)
    with pytest.raises(ApprovalApiError) as err:
        decide_release(reg, Sfn(), "iris", v, "approve", actor=None, reason=None)
    assert err.value.status == 403
    assert reg.get_approval("iris", v).get("decision") is None


@pytest.mark.parametrize("decision,body,expected", [
    ("approve", None, None), ("approve", "", None), ("approve", "{}", None),
    ("approve", '{"reason": "  looks good "}', "looks good"), ("reject", '{"reason": "drift"}', "drift"),
])
def test_reasons(decision, body, expected):
    assert parse_reason(decision, body) == expected


@pytest.mark.parametrize("decision,body,words", [
    ("reject", None, "a rejection needs a reason"), ("reject", '{"reason": "  "}', "a rejection needs a reason"),
    ("approve", "[1]", "JSON object"), ("approve", "not json", "JSON object"),
    ("approve", '{"reason": 3}', "must be a string"), ("reject", json.dumps({"reason": "x" * 2001}), "at most 2000"),
])
def test_bad_bodies_are_400(decision, body, words):
    with pytest.raises(ApprovalApiError) as err:
        parse_reason(decision, body)
    assert err.value.status == 400 and words in err.value.message


def test_path_validation():
    assert model_name("my%20model") == "my model"
    assert version_number("iris", "12") == 12
    for raw in ("0", "abc", "1e3", "99999999999", "-1", "١"):
        with pytest.raises(ApprovalApiError) as err:
            version_number("iris", raw)
        assert err.value.status == 404
    for raw in ("", "a#b", "x" * 256):
        with pytest.raises(ApprovalApiError):
            model_name(raw)


# --------------------------------------------------------------------------- the handler


def _event(path_word, name="iris", version="1", body=None, user_arn=ALICE):
    return {"resource": f"/models/{{name}}/versions/{{version}}/{path_word}", "httpMethod": "POST",
            "path": f"/models/{name}/versions/{version}/{path_word}",
            "pathParameters": {"name": name, "version": version}, "body": body,
            "requestContext": {"requestId": "r-1", "identity": {"userArn": user_arn}}}


@pytest.fixture
def handler_env(reg, monkeypatch):
    sfn = Sfn()
    monkeypatch.setattr(clients, "_cache", {"registry": reg, "stepfunctions": sfn})
    return sfn


def test_handler_answers_with_the_decision(reg, handler_env, lambda_context):
    v = awaiting(reg)
    out = approval_handler.handler(_event("approve", version=str(v), body='{"reason": "ok"}'), lambda_context)
    assert out["statusCode"] == 200
    assert json.loads(out["body"]) == {"model": "iris", "version": v, "decision": "approve", "actor": ALICE,
                                       "reason": "ok"}
    assert json.loads(handler_env.sent[0]["output"])["actor"] == ALICE


def test_handler_errors_are_json_messages(reg, handler_env, lambda_context):
    v = awaiting(reg)
    out = approval_handler.handler(_event("reject", version=str(v)), lambda_context)
    assert out["statusCode"] == 400 and "needs a reason" in json.loads(out["body"])["message"]
    out = approval_handler.handler(_event("approve", version="x"), lambda_context)
    assert out["statusCode"] == 404
    out = approval_handler.handler(_event("approve", version=str(v), user_arn=None), lambda_context)
    assert out["statusCode"] == 403
    assert handler_env.sent == []


@pytest.fixture
def lambda_context():
    from tests.lambda_context import LambdaContext

    return LambdaContext()


# --------------------------------------------------------------------------- the CLI


def _args(model="iris", version=3, reason=None):
    return argparse.Namespace(model=model, version=version, reason=reason, api_url="https://abc.example/prod/",
                              stack=None, project_config={"models": {"iris": {}, "penguins": {}}})


def test_cli_approve_prints_the_actor(capsys):
    from infra.approval_cli import decide

    seen = {}

    def send(method, url, body, auth):
        seen.update(method=method, url=url, body=json.loads(body), auth=auth)
        return 200, {}, json.dumps({"model": "iris", "version": 3, "decision": "approve", "actor": ALICE,
                                    "reason": None}).encode()

    assert decide(_args(), "approve", send=send) == 0
    assert seen == {"method": "POST", "url": "https://abc.example/prod/models/iris/versions/3/approve", "body": {},
                    "auth": "iam"}
    assert capsys.readouterr().out.strip() == f"approved iris v3 as {ALICE}; the run continues"


def test_cli_errors(capsys):
    from infra.approval_cli import decide
    from infra.commandline import CliError

    def answer(status, message):
        return lambda *a: (status, {}, json.dumps({"Message" if status == 403 else "message": message}).encode())

    with pytest.raises(CliError, match="execute-api:Invoke on the approve and reject routes.*grant_approve"):
        decide(_args(), "approve", send=answer(403, "User: x is not authorized to perform: execute-api:Invoke"))
    with pytest.raises(CliError, match="nothing was rejected: .*already decided"):
        decide(_args(reason="no"), "reject", send=answer(409, "model 'iris' version 3 was already decided"))
    with pytest.raises(CliError, match="did you mean 'penguins'"):
        decide(_args(model="penguin"), "approve", send=answer(200, ""))
    with pytest.raises(CliError, match="needs a reason"):
        decide(_args(reason="  "), "reject", send=answer(200, ""))
