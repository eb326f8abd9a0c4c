"""The registry's release model (docs/release.md): running releases, the release log, approvals."""
import pytest

from functions.core.registry import (
    AliasConflict,
    ApprovalError,
    InvalidTransition,
    ReleaseConflict,
    VersionNotFound,
)
from tests.support import candidate_version, moto_registry


@pytest.fixture
def reg():
    with moto_registry() as registry:
        yield registry


candidate = candidate_version


@pytest.fixture
def served(reg):
    """iris with v1 in production and v2 a candidate."""
    v1 = candidate(reg)
    reg.promote("iris", v1, reason="first", actor="test")
    return v1, candidate(reg)


def start(reg, version, production, release_id="r1", mode="canary"):
    return reg.start_release("iris", version, mode=mode, release_id=release_id, expected_production=production,
                             execution_arn="arn:exec", percent=10.0, bake=1800, actor="arn:exec", reason="gate passed")


def test_start_release_marks_the_version_and_the_model(reg, served):
    v1, v2 = served
    release = start(reg, v2, v1)
    assert reg.get_release("iris") == release
    assert release["mode"] == "canary" and release["version"] == v2 and release["production"] == v1
    assert reg.get_model("iris")["release"]["id"] == "r1"
    assert reg.get_version("iris", v2)["status"] == "canary"
    assert [e["kind"] for e in reg.release_log("iris")] == ["release_started"]
    # A retry of the same release changes nothing and logs nothing more.
    assert start(reg, v2, v1) == release
    assert len(reg.release_log("iris")) == 1


def test_start_release_refused_when_production_moved_since_validation(reg, served):
    v1, v2 = served
    with pytest.raises(AliasConflict, match="production is v1, not v7"):
        start(reg, v2, 7)
    assert reg.get_release("iris") is None
    assert reg.get_version("iris", v2)["status"] == "candidate"


def test_start_release_refuses_a_version_that_is_not_a_candidate(reg, served):
    v1, v2 = served
    reg.record_rejection("iris", v2, "worse")
    with pytest.raises(InvalidTransition, match="only a candidate"):
        start(reg, v2, v1)
    assert reg.get_release("iris") is None


def test_production_move_by_hand_ends_the_release(reg, served):
    v1, v2 = served
    start(reg, v2, v1)
    v3 = candidate(reg)
    reg.promote("iris", v3, reason="by hand", actor="alice")
    assert reg.get_release("iris") is None
    # The loop's promotion of its canary is refused: the release it names is gone.
    with pytest.raises((ReleaseConflict, AliasConflict)):
        reg.promote("iris", v2, reason="bake done", actor="loop", expected=v1, release_id="r1")
    assert reg.get_alias("iris") == v3


def test_rollback_by_hand_ends_the_release(reg, served):
    v1, v2 = served
    v3 = candidate(reg)
    reg.promote("iris", v3, reason="second", actor="test")
    start(reg, v2, v3)
    reg.rollback("iris", reason="bad day", actor="alice")
    assert reg.get_alias("iris") == v1 and reg.get_release("iris") is None


def test_promote_with_release_id_ends_it_and_newer_release_wins(reg, served):
    v1, v2 = served
    start(reg, v2, v1, release_id="r1")
    v3 = candidate(reg)
    start(reg, v3, v1, release_id="r2")  # a newer release replaces the running one
    with pytest.raises(ReleaseConflict, match="r1 is no longer running"):
        reg.promote("iris", v2, reason="bake done", actor="loop", expected=v1, release_id="r1")
    moved = reg.promote("iris", v3, reason="bake done", actor="loop", expected=v1, release_id="r2")
    assert moved["moved"] and reg.get_alias("iris") == v3 and reg.get_release("iris") is None
    assert reg.get_version("iris", v1)["status"] == "archived"


def test_end_release_rejects_the_version_and_keeps_production(reg, served):
    v1, v2 = served
    start(reg, v2, v1)
    ended = reg.end_release("iris", "r1", reason="alarm iris-v2-errors fired", actor="loop")
    assert ended["version"] == v2
    assert reg.get_release("iris") is None and reg.get_alias("iris") == v1
    record = reg.get_version("iris", v2)
    assert record["status"] == "rejected" and "iris-v2-errors" in record["reason"]
    assert [e["kind"] for e in reg.release_log("iris")] == ["release_started", "release_rolled_back"]
    with pytest.raises(ReleaseConflict):
        reg.end_release("iris", "r1", reason="again", actor="loop")


def test_release_log_is_append_only_and_ordered(reg, served):
    v1, v2 = served
    for kind in ("approval_requested", "approved", "release_started"):
        reg.log_release_event("iris", kind, version=v2, actor="a", reason=kind)
    assert [e["kind"] for e in reg.release_log("iris")] == ["approval_requested", "approved", "release_started"]


def test_approval_is_asked_once_and_decided_once(reg, served):
    v1, v2 = served
    asked = reg.request_approval("iris", v2, task_token="tok-1", execution_arn="arn:exec",
                                 timeout_at="2027-01-01T00:00:00Z", summary={"metric": "accuracy"})
    assert "task_token" not in asked  # what is logged or shown never carries the token
    assert reg.get_version("iris", v2)["status"] == "awaiting_approval"
    assert "task_token" not in reg.get_version("iris", v2)  # the API serves the version record
    decided = reg.decide("iris", v2, "approve", actor="arn:aws:iam::123456789012:user/alice", reason="looks good")
    assert decided["task_token"] == "tok-1" and decided["decided_by"].endswith("user/alice")
    with pytest.raises(ApprovalError, match="already decided: approve by arn:aws:iam::123456789012:user/alice"):
        reg.decide("iris", v2, "reject", actor="arn:aws:iam::123456789012:user/mallory", reason="no")
    with pytest.raises(ApprovalError, match="already decided"):
        reg.request_approval("iris", v2, task_token="tok-2", execution_arn="arn:exec", timeout_at=None)


def test_decide_without_a_request_says_so(reg, served):
    v1, v2 = served
    with pytest.raises(ApprovalError, match="not awaiting approval"):
        reg.decide("iris", v2, "approve", actor="alice")
    with pytest.raises(VersionNotFound):
        reg.decide("iris", 99, "approve", actor="alice")
    with pytest.raises(ValueError, match="approve, reject"):
        reg.decide("iris", v2, "maybe", actor="alice")


def test_awaiting_approval_cannot_be_promoted_until_approved(reg, served):
    v1, v2 = served
    reg.request_approval("iris", v2, task_token="tok", execution_arn="arn:exec", timeout_at=None)
    with pytest.raises(InvalidTransition, match="awaiting_approval"):
        reg.promote("iris", v2, reason="sneaky", actor="mallory")
    assert reg.get_alias("iris") == v1
    # A rejection (or a timeout) ends it.
    assert reg.record_rejection("iris", v2, "ApprovalTimedOut: no decision within 1 d")["status"] == "rejected"


def test_a_shadow_awaiting_a_decision_stays_shadow(reg, served):
    v1, v2 = served
    start(reg, v2, v1, mode="shadow")
    reg.request_approval("iris", v2, task_token="tok", execution_arn="arn:exec", timeout_at=None)
    assert reg.get_version("iris", v2)["status"] == "shadow"
    assert reg.get_release("iris")["mode"] == "shadow"
