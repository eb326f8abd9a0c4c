"""Unit tests of functions.core.registry on moto."""
import json
import math
import threading
from collections import Counter

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from functions.core import registry as registry_module
from functions.core.registry import (
    AliasConflict,
    InvalidTransition,
    ModelNotFound,
    Registry,
    RegistryError,
    VersionNotFound,
)
from tests.support import create_registry_table

DATASET = {"bucket": "data", "key": "datasets/iris/a.csv", "version_id": "v1", "sha256": "ab" * 32, "rows": 150}


@pytest.fixture
def ddb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_registry_table(client, "registry")
        yield client


@pytest.fixture
def reg(ddb):
    return Registry("registry", client=ddb, known_models=["iris", "wine"])


@pytest.fixture
def serialized_moto(monkeypatch):
    """Serialize moto's DynamoDB write requests, as real DynamoDB serializes them.

    moto 5.2.5 takes no lock. Without this fixture the race tests fail because of moto, not the
    registry (observed): transact_write_items snapshots each table with copy.deepcopy before
    applying its operations one by one, and the deepcopy raises "RuntimeError: dictionary
    changed size during iteration" while another thread writes (on cancellation it restores
    that snapshot, which would also erase other threads' writes). UpdateItem builds its
    ReturnValues from the shared item object after the update, so concurrent `ADD
    next_version 1` calls were answered with the same number (the registry's conditional put
    then refused the duplicates). Real DynamoDB makes single-item writes atomic and
    transactions serializable; locking each write request in moto's request handler emulates
    exactly that and nothing more. The assertions are not weakened.
    """
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.Lock()
    for name in ("transact_write_items", "update_item", "put_item", "delete_item", "batch_write_item"):
        original = getattr(DynamoHandler, name)

        def locked(self, _original=original):
            with lock:
                return _original(self)

        monkeypatch.setattr(DynamoHandler, name, locked)


def candidate(reg, model="iris", metrics=None, **kw):
    """Allocate a version and make it a candidate."""
    v = reg.allocate_version(model, dataset=DATASET, estimator="LogisticRegression", params={"C": 1.0}, **kw)
    n = v["version"]
    return reg.record_candidate(model, n, artifact_key=f"models/{model}/v{n}/model.onnx",
                                artifact_sha256=f"{n:064d}", schema={"target": "species", "features": []},
                                metrics=metrics or {"accuracy": 0.9})


def statuses(reg, model="iris"):
    return {v["version"]: v["status"] for v in reg.list_versions(model)}


# ---------------------------------------------------------------- allocation

def test_allocation_numbers_per_model(reg):
    assert [reg.allocate_version("iris")["version"] for _ in range(3)] == [1, 2, 3]
    assert [reg.allocate_version("wine")["version"] for _ in range(2)] == [1, 2]
    assert reg.get_model("iris")["latest_version"] == 3
    assert [v["version"] for v in reg.list_versions("iris")] == [1, 2, 3]
    assert [v["version"] for v in reg.list_versions("wine")] == [1, 2]


def test_allocated_record_shape(reg):
    rec = reg.allocate_version("iris", execution_arn="arn:exec:1", dataset=DATASET,
                               estimator="sklearn.linear_model.LogisticRegression", params={"max_iter": 500})
    assert rec["status"] == "training" and rec["reason"] is None and rec["artifact_key"] is None
    assert rec["lineage"] == {"dataset": DATASET}
    assert rec["created_at"].endswith("Z") and rec["created_at"] == rec["updated_at"]
    assert rec == reg.get_version("iris", 1)
    assert "pk" not in rec and "dataset_ref" not in rec
    assert isinstance(rec["params"]["max_iter"], int) and isinstance(rec["lineage"]["dataset"]["rows"], int)


def test_allocate_unknown_model_creates_it(reg):
    assert reg.allocate_version("other")["version"] == 1
    assert [m["name"] for m in reg.list_models()] == ["iris", "other", "wine"]


def test_concurrent_allocation_distinct_consecutive(reg, serialized_moto):
    barrier, got, errors = threading.Barrier(20), [], []

    def run():
        barrier.wait()
        try:
            got.append(reg.allocate_version("iris")["version"])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(20)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert sorted(got) == list(range(1, 21))
    assert len(reg.list_versions("iris")) == 20


def test_dataset_requires_s3_version(reg):
    with pytest.raises(ValueError, match="version_id"):
        reg.allocate_version("iris", dataset={"bucket": "b", "key": "k"})


# ---------------------------------------------------------------- models

def test_list_models_includes_known_without_items(reg):
    assert reg.list_models() == [{"name": "iris", "production": None}, {"name": "wine", "production": None}]
    candidate(reg)
    reg.promote("iris", 1, reason="first", actor="test")
    assert reg.list_models()[0] == {"name": "iris", "production": 1}


def test_get_model(reg):
    assert reg.get_model("iris") == {"name": "iris", "aliases": {}, "latest_version": None, "release": None}
    with pytest.raises(ModelNotFound, match="nope"):
        reg.get_model("nope")
    reg.ensure_model("nope")
    reg.ensure_model("nope")  # idempotent
    assert reg.get_model("nope") == {"name": "nope", "aliases": {}, "latest_version": None, "release": None}
    candidate(reg)
    reg.ensure_model("iris")  # must not reset the counter or aliases
    reg.promote("iris", 1, reason="r", actor="a")
    reg.ensure_model("iris")
    assert reg.get_model("iris") == {"name": "iris", "aliases": {"production": 1}, "latest_version": 1, "release": None}
    assert reg.allocate_version("iris")["version"] == 2


def test_from_env(monkeypatch, ddb):
    monkeypatch.setenv("REGISTRY_TABLE", "registry")
    monkeypatch.setenv("SHIPYARD_MODELS", json.dumps(["b", "a"]))
    reg = Registry.from_env()
    assert [m["name"] for m in reg.list_models()] == ["a", "b"]
    monkeypatch.delenv("REGISTRY_TABLE")
    with pytest.raises(RegistryError, match="REGISTRY_TABLE"):
        Registry.from_env()


def test_from_env_uses_the_given_client_and_builds_none(monkeypatch, ddb):
    monkeypatch.setenv("REGISTRY_TABLE", "registry")
    monkeypatch.setattr(registry_module.boto3, "client", lambda *a, **k: pytest.fail("built a second client"))
    reg = Registry.from_env(client=ddb)
    assert reg.client is ddb and reg.list_models() == []


# ---------------------------------------------------------------- status transitions

def test_candidate_round_trip(reg):
    reg.allocate_version("iris", dataset=DATASET)
    metrics = {"accuracy": 0.9333333333333333, "f1": 0.1 + 0.2, "n": 30,
               "production": {"accuracy": 0.5, "per_class": [0.25, 1e-9, 3]}}
    schema = {"target": "species", "task": "classification",
              "features": [{"name": "colour", "type": "string", "categories": ["blue", "red"]}],
              "classes": ["a", "b"]}
    rec = reg.record_candidate("iris", 1, artifact_key="models/iris/v1/model.onnx", artifact_sha256="f" * 64,
                               schema=schema, metrics=metrics, lineage={"code": {"git": "abc"}},
                               extra={"baseline_key": "models/iris/v1/baseline.json"})
    stored = reg.get_version("iris", 1)
    assert stored == rec
    assert stored["status"] == "candidate" and stored["metrics"] == metrics and stored["schema"] == schema
    assert isinstance(stored["metrics"]["n"], int) and isinstance(stored["metrics"]["f1"], float)
    assert stored["lineage"] == {"dataset": DATASET, "code": {"git": "abc"}}
    assert stored["baseline_key"] == "models/iris/v1/baseline.json"
    assert json.loads(json.dumps(stored)) == stored  # plain JSON, no Decimal


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f == 0 or 1e-120 < abs(f) < 1e120),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=10)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_value_conversion_round_trips(value):
    back = registry_module._plain(registry_module._item({"v": value}))["v"]
    assert back == value  # integral floats come back as equal ints
    assert json.loads(json.dumps(back)) == back


def test_out_of_range_number_rejected():
    with pytest.raises(ValueError, match=r"metrics\.p.*range"):
        registry_module._to_dynamo({"p": 1e-300}, "metrics")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_metric_rejected(reg, bad):
    reg.allocate_version("iris")
    with pytest.raises(ValueError, match=r"metrics\.accuracy.*finite"):
        reg.record_candidate("iris", 1, artifact_key="k", artifact_sha256="s", schema={},
                             metrics={"accuracy": bad})
    assert reg.get_version("iris", 1)["status"] == "training"


def test_legal_transitions(reg):
    candidate(reg)
    assert reg.record_rejection("iris", 1, "score 0.5 < min 0.8", metrics={"production": {"accuracy": 0.95}}) \
        ["status"] == "rejected"
    rec = reg.get_version("iris", 1)
    assert rec["reason"] == "score 0.5 < min 0.8"
    assert rec["metrics"] == {"accuracy": 0.9, "production": {"accuracy": 0.95}}  # merged, not replaced
    reg.allocate_version("iris")
    assert reg.record_failure("iris", 2, "training crashed")["status"] == "failed"
    candidate(reg)
    assert reg.record_failure("iris", 3, "export failed")["reason"] == "export failed"
    assert statuses(reg) == {1: "rejected", 2: "failed", 3: "failed"}


def test_illegal_transitions(reg):
    reg.allocate_version("iris")
    reg.record_failure("iris", 1, "boom")
    with pytest.raises(InvalidTransition, match=r"'iris' version 1 is 'failed'"):
        reg.record_candidate("iris", 1, artifact_key="k", artifact_sha256="s", schema={}, metrics={})
    with pytest.raises(InvalidTransition):
        reg.record_rejection("iris", 1, "late")
    reg.allocate_version("iris")
    with pytest.raises(InvalidTransition, match="training"):
        reg.record_rejection("iris", 2, "not a candidate yet")
    with pytest.raises(VersionNotFound, match="version 9"):
        reg.record_failure("iris", 9, "x")
    with pytest.raises(VersionNotFound):
        reg.get_version("iris", 9)
    assert statuses(reg) == {1: "failed", 2: "training"}
    assert reg.get_version("iris", 1)["reason"] == "boom"


def test_identical_retry_is_idempotent(reg):
    reg.allocate_version("iris")
    reg.record_failure("iris", 1, "boom")
    assert reg.record_failure("iris", 1, "boom")["status"] == "failed"
    with pytest.raises(InvalidTransition):
        reg.record_failure("iris", 1, "another reason")


# ---------------------------------------------------------------- aliases

def test_promote_archives_previous(reg):
    for _ in range(2):
        candidate(reg)
    e1 = reg.promote("iris", 1, reason="first", actor="pipeline")
    assert e1["from_version"] is None and e1["to_version"] == 1 and e1["seq"] == 1
    e2 = reg.promote("iris", 2, reason="better", actor="pipeline")
    assert (e2["from_version"], e2["to_version"], e2["seq"]) == (1, 2, 2)
    assert reg.get_alias("iris") == 2
    assert statuses(reg) == {1: "archived", 2: "production"}
    assert e1["moved"] and e2["moved"] and e1["kind"] == e2["kind"] == "promote"
    assert reg.history("iris") == [stored(e1), stored(e2)]


def stored(event):
    """An alias move's answer as the audit log stores it (``moved`` is the answer's only)."""
    return {k: v for k, v in event.items() if k != "moved"}


def test_promoting_the_serving_version_writes_nothing_and_says_so(reg, ddb):
    candidate(reg)
    reg.promote("iris", 1, reason="r", actor="a")
    before = ddb.scan(TableName="registry")["Items"]
    for _ in range(2):  # a retried promote script
        e = reg.promote("iris", 1, reason="again", actor="a")
        assert e == {"model": "iris", "alias": "production", "from_version": 1, "to_version": 1,
                     "kind": "promote", "seq": None, "moved": False}
    assert ddb.scan(TableName="registry")["Items"] == before
    assert statuses(reg) == {1: "production"} and len(reg.history("iris")) == 1
    # the expectation is still checked: a caller that expected another version learns it moved
    with pytest.raises(AliasConflict, match="expected version None, found 1"):
        reg.promote("iris", 1, reason="r", actor="a", expected=None)


def test_stale_expected_conflicts_and_writes_nothing(reg, ddb):
    for _ in range(3):
        candidate(reg)
    reg.promote("iris", 1, reason="r", actor="a")
    reg.promote("iris", 2, reason="r", actor="a")
    before = ddb.scan(TableName="registry")["Items"]
    with pytest.raises(AliasConflict, match=r"expected version 1, found 2"):
        reg.move_alias("iris", "production", 3, expected=1, reason="stale", actor="a")
    with pytest.raises(AliasConflict, match=r"expected version None, found 2"):
        reg.promote("iris", 3, reason="stale", actor="a", expected=None)
    assert ddb.scan(TableName="registry")["Items"] == before


def test_cannot_point_alias_at_ineligible_version(reg, ddb):
    candidate(reg)
    reg.allocate_version("iris")                         # 2 training
    candidate(reg)
    reg.record_rejection("iris", 3, "worse")             # 3 rejected
    reg.allocate_version("iris")
    reg.record_failure("iris", 4, "boom")                # 4 failed
    reg.promote("iris", 1, reason="r", actor="a")
    before = ddb.scan(TableName="registry")["Items"]
    for v, status in ((2, "training"), (3, "rejected"), (4, "failed")):
        with pytest.raises(InvalidTransition, match=f"version {v} is '{status}'"):
            reg.promote("iris", v, reason="r", actor="a")
    with pytest.raises(VersionNotFound, match="version 7"):
        reg.promote("iris", 7, reason="r", actor="a")
    with pytest.raises(InvalidTransition):
        reg.move_alias("iris", "candidate", 4, expected=None, reason="r", actor="a")
    assert ddb.scan(TableName="registry")["Items"] == before
    with pytest.raises(ModelNotFound):
        reg.promote("ghost", 1, reason="r", actor="a")


def test_other_alias_leaves_statuses(reg):
    candidate(reg)
    e = reg.move_alias("iris", "candidate", 1, expected=None, reason="shadow", actor="a")
    assert reg.get_alias("iris", "candidate") == 1 and reg.get_alias("iris") is None
    assert statuses(reg) == {1: "candidate"}
    assert reg.history("iris", "candidate") == [stored(e)] and reg.history("iris") == []


def test_move_retries_when_only_the_sequence_moved(reg, monkeypatch):
    # A-B-A: the alias is back at `expected` but its event counter moved after we read it.
    # The caller's expectation still holds, so the move must succeed with a fresh sequence.
    for _ in range(2):
        candidate(reg)
    reg.promote("iris", 1, reason="r", actor="a")
    stale = reg._model_item("iris")
    reg.promote("iris", 2, reason="r", actor="a")
    reg.promote("iris", 1, reason="back", actor="a")
    real, calls = reg._model_item, []
    monkeypatch.setattr(reg, "_model_item", lambda m: calls.append(m) or (stale if len(calls) == 1 else real(m)))
    e = reg.promote("iris", 2, reason="after aba", actor="a", expected=1)
    assert len(calls) == 2 and e["seq"] == 4
    assert [h["seq"] for h in reg.history("iris")] == [1, 2, 3, 4]
    assert statuses(reg) == {1: "archived", 2: "production"}


def test_rollback_appends_new_event(reg):
    for _ in range(3):
        candidate(reg)
    for v in (1, 2, 3):
        reg.promote("iris", v, reason=f"to {v}", actor="pipeline")
    before = reg.history("iris")
    e = reg.rollback("iris", reason="bad latency", actor="oncall")
    assert (e["from_version"], e["to_version"], e["seq"], e["actor"], e["kind"]) == (3, 2, 4, "oncall", "rollback")
    assert reg.get_alias("iris") == 2
    assert statuses(reg) == {1: "archived", 2: "production", 3: "archived"}
    after = reg.history("iris")
    assert after[:3] == before and after[3] == stored(e)  # append-only: old events untouched
    assert [h["seq"] for h in after] == [1, 2, 3, 4]


def test_rollback_with_nothing_to_roll_back(reg):
    with pytest.raises(RegistryError, match="'iris' has no production version; there is nothing to roll back"):
        reg.rollback("iris", reason="r", actor="a")
    with pytest.raises(ModelNotFound):
        reg.rollback("ghost", reason="r", actor="a")
    candidate(reg)
    reg.promote("iris", 1, reason="r", actor="a")
    with pytest.raises(RegistryError, match="no version served production before v1; there is nothing to roll back to"):
        reg.rollback("iris", reason="r", actor="a")
    assert len(reg.history("iris")) == 1


def test_rollbacks_walk_back_and_never_toggle(reg):
    for _ in range(4):
        candidate(reg)
    for v in (1, 2, 3):
        reg.promote("iris", v, reason=f"to {v}", actor="pipeline")
    assert reg.rollback_path("iris") == [2, 1]
    first = reg.rollback("iris", reason="r1", actor="oncall")
    second = reg.rollback("iris", reason="r2", actor="oncall")
    assert [(e["from_version"], e["to_version"]) for e in (first, second)] == [(3, 2), (2, 1)]
    assert reg.get_alias("iris") == 1 and reg.rollback_path("iris") == []
    with pytest.raises(RegistryError, match="no version served production before v1"):
        reg.rollback("iris", reason="r3", actor="oncall")
    assert statuses(reg) == {1: "production", 2: "archived", 3: "archived", 4: "candidate"}
    # a promote after rollbacks starts from where production is: rolling back returns to v1
    reg.promote("iris", 4, reason="to 4", actor="pipeline")
    assert reg.rollback_path("iris") == [1]
    assert reg.rollback("iris", reason="r4", actor="oncall")["to_version"] == 1
    assert [e["kind"] for e in reg.history("iris")] == ["promote"] * 3 + ["rollback"] * 2 + ["promote", "rollback"]


def test_a_version_promoted_again_is_on_the_path_once(reg):
    for _ in range(3):
        candidate(reg)
    for v in (1, 2, 1, 3):
        reg.promote("iris", v, reason="r", actor="a")
    assert reg.rollback_path("iris") == [1, 2]  # v1 by its newest promote, not twice
    reg.rollback("iris", reason="r", actor="a")
    assert reg.rollback_path("iris") == [2]


def test_rollback_to_a_named_version(reg, ddb):
    for _ in range(5):
        candidate(reg)
    for v in (1, 2, 3, 4):
        reg.promote("iris", v, reason=f"to {v}", actor="pipeline")
    e = reg.rollback("iris", to=2, reason="back to 2", actor="oncall")
    assert (e["from_version"], e["to_version"], e["kind"], e["seq"]) == (4, 2, "rollback", 5)
    assert reg.rollback_path("iris") == [1]  # 3 and 4 were rolled back from
    before = ddb.scan(TableName="registry")["Items"]
    for to, message in ((3, "v3 is not on production's rollback path .*: v1\\); `promote`"),
                        (5, "v5 is not on production's rollback path"),   # never served
                        (9, "v9 is not on production's rollback path"),   # does not exist
                        (2, "v2 is the version serving production now; there is nothing to roll back")):
        with pytest.raises(RegistryError, match=message):
            reg.rollback("iris", to=to, reason="r", actor="oncall")
    assert ddb.scan(TableName="registry")["Items"] == before
    assert reg.rollback("iris", to=1, reason="r", actor="oncall")["to_version"] == 1


def test_rollback_refuses_when_production_moved_after_reading_the_history(reg, monkeypatch):
    for _ in range(3):
        candidate(reg)
    for v in (1, 2, 3):
        reg.promote("iris", v, reason="r", actor="a")
    real = reg.rollback_path

    def concurrent(model, alias="production"):
        path = real(model, alias)
        reg.promote("iris", 2, reason="someone else", actor="b")  # 3 -> 2 while we decide
        reg.promote("iris", 3, reason="and back", actor="b")       # and back: the alias looks unchanged
        return path

    monkeypatch.setattr(reg, "rollback_path", concurrent)
    with pytest.raises(AliasConflict, match="moved since its history was read"):
        reg.rollback("iris", reason="r", actor="a")
    assert reg.get_alias("iris") == 3 and len(reg.history("iris")) == 5


def test_events_without_a_kind_count_as_promotes(reg, ddb):
    for _ in range(3):
        candidate(reg)
    for v in (1, 2, 3):
        reg.promote("iris", v, reason="r", actor="a")
    ddb.update_item(TableName="registry", Key={"pk": {"S": "MODEL#iris"}, "sk": {"S": "E#production#0000000002"}},
                    UpdateExpression="REMOVE kind")  # written before events had a kind
    assert reg.rollback_path("iris") == [2, 1]


def test_history_order_beyond_nine(reg):
    # Zero-padded seq keeps lexical order == numeric order past 9 events.
    candidate(reg)
    candidate(reg)
    for i in range(12):
        reg.promote("iris", 1 + i % 2, reason=f"move {i}", actor="a")
    h = reg.history("iris")
    assert [e["seq"] for e in h] == list(range(1, 13))
    assert [e["reason"] for e in h] == [f"move {i}" for i in range(12)]
    assert all(h[i]["to_version"] == h[i + 1]["from_version"] for i in range(11))


def test_versions_from_dataset(reg):
    other = {**DATASET, "version_id": "v2"}
    reg.allocate_version("iris", dataset=DATASET)
    reg.allocate_version("iris", dataset=other)
    reg.allocate_version("wine", dataset=DATASET)
    reg.allocate_version("iris")
    got = reg.versions_from_dataset("data", "datasets/iris/a.csv", "v1")
    assert [(v["model"], v["version"]) for v in got] == [("iris", 1), ("wine", 1)]
    assert [v["version"] for v in reg.versions_from_dataset("data", "datasets/iris/a.csv", "v2")] == [2]
    assert reg.versions_from_dataset("data", "datasets/iris/a.csv", "v3") == []


# ---------------------------------------------------------------- the race

@pytest.mark.parametrize("round_", range(3))
def test_racing_alias_moves_exactly_one_wins(reg, serialized_moto, round_):
    n = 20
    for _ in range(n + 1):
        candidate(reg)
    reg.promote("iris", 1, reason="start", actor="setup")
    history_before = reg.history("iris")
    barrier = threading.Barrier(n)
    outcomes = {}

    def race(target):
        barrier.wait()
        try:
            outcomes[target] = reg.move_alias("iris", "production", target, expected=1,
                                              reason=f"racer {target}", actor=f"t{target}")
        except Exception as e:
            outcomes[target] = e

    threads = [threading.Thread(target=race, args=(v,)) for v in range(2, n + 2)]
    [t.start() for t in threads]
    [t.join() for t in threads]

    winners = [t for t, o in outcomes.items() if isinstance(o, dict)]
    kinds = Counter(type(o).__name__ for o in outcomes.values())
    assert len(winners) == 1, kinds
    assert kinds["AliasConflict"] == n - 1, kinds
    winner = winners[0]
    assert reg.get_alias("iris") == winner
    history_after = reg.history("iris")
    assert history_after[:-1] == history_before and len(history_after) == len(history_before) + 1
    assert history_after[-1] == stored(outcomes[winner])
    assert history_after[-1]["from_version"] == 1 and history_after[-1]["to_version"] == winner
    st = statuses(reg)
    assert [v for v, s in st.items() if s == "production"] == [winner]
    assert st[1] == "archived"
    assert all(s == "candidate" for v, s in st.items() if v not in (1, winner))


def test_last_event_is_the_newest_of_the_alias(reg, ddb, monkeypatch):
    assert reg.last_event("iris") is None
    for _ in range(12):
        candidate(reg)
    events = [reg.promote("iris", v, reason=f"r{v}", actor="a") for v in range(1, 12)]
    reg.move_alias("iris", "staging", 12, expected=None, reason="s", actor="a")
    queries = []
    original = ddb.query
    monkeypatch.setattr(ddb, "query", lambda **kw: queries.append(kw) or original(**kw))
    assert reg.last_event("iris") == stored(events[-1])  # seq 11 sorts after seq 9 (zero-padded)
    assert reg.last_event("iris", "staging")["to_version"] == 12
    assert len(queries) == 2 and all(q["Limit"] == 1 and q["ScanIndexForward"] is False for q in queries)


# ---------------------------------------------------------------- run claims, validation, drift checks

def test_claim_run_once_then_report_the_claim(reg):
    first = reg.claim_run("iris", "s3://d/k?versionId=1", execution_arn="arn:1", dataset=DATASET)
    assert first["claimed"] is True and first["execution_arn"] == "arn:1" and first["version"] is None
    again = reg.claim_run("iris", "s3://d/k?versionId=1", execution_arn="arn:2", dataset=DATASET)
    assert again["claimed"] is False and again["execution_arn"] == "arn:1" and again["at"] == first["at"]
    reg.set_claim_version("iris", "s3://d/k?versionId=1", 7)
    assert reg.claim_run("iris", "s3://d/k?versionId=1", execution_arn="arn:1", dataset=DATASET)["version"] == 7
    assert reg.list_versions("iris") == [] and reg.history("iris") == []  # claims are neither
    with pytest.raises(ClientError):  # no claim, no version
        reg.set_claim_version("iris", "s3://d/k?versionId=2", 1)


def test_record_validation_rewrites_a_candidates_metrics_only(reg):
    v = candidate(reg)["version"]
    rec = reg.record_validation("iris", v, {"accuracy": 0.8, "validation": {"promote": True}})
    assert rec["status"] == "candidate" and rec["metrics"] == {"accuracy": 0.8, "validation": {"promote": True}}
    assert reg.get_version("iris", v)["artifact_sha256"] == f"{v:064d}"
    reg.record_rejection("iris", v, "worse")
    with pytest.raises(InvalidTransition, match="'rejected'"):
        reg.record_validation("iris", v, {"accuracy": 0.1})
    training = reg.allocate_version("iris")["version"]
    with pytest.raises(InvalidTransition, match="'training'"):
        reg.record_validation("iris", training, {"accuracy": 0.1})


def test_put_drift_check_needs_a_time_and_never_collides(reg):
    with pytest.raises(ValueError, match="checked_at"):
        reg.put_drift_check("iris", {"rows": 1})
    for _ in range(2):
        reg.put_drift_check("iris", {"checked_at": "2025-01-01T00:00:00.000Z", "rows": 3})
    assert [h["rows"] for h in reg.drift_history("iris")] == [3, 3] and reg.drift_history("wine") == []


def test_dataset_ref_is_the_index_key_of_versions(reg, ddb):
    from functions.core.registry import dataset_ref

    assert dataset_ref("data", "datasets/iris/a.csv", "v1") == "s3://data/datasets/iris/a.csv?versionId=v1"
    v = reg.allocate_version("iris", dataset=DATASET)["version"]
    item = ddb.get_item(TableName="registry", Key={"pk": {"S": "MODEL#iris"}, "sk": {"S": f"V#{v:010d}"}})["Item"]
    assert item["dataset_ref"] == {"S": dataset_ref("data", "datasets/iris/a.csv", "v1")}


def test_internal_keys_stay_inside_the_table(reg):
    v = reg.allocate_version("iris", dataset=DATASET)["version"]
    reg.record_candidate("iris", v, artifact_key="k", artifact_sha256="ab" * 32, schema={"features": []}, metrics={})
    reg.promote("iris", v, reason="r", actor="a")
    reg.claim_run("iris", "c", execution_arn="arn:1", dataset=DATASET)
    reg.put_drift_check("iris", {"checked_at": "2025-03-04T12:00:00.000Z", "rows": 1})
    views = [reg.get_version("iris", v), *reg.list_versions("iris"), *reg.history("iris"), reg.last_event("iris"),
             reg.claim_run("iris", "c", execution_arn="arn:2", dataset=DATASET), *reg.drift_history("iris")]
    assert len(views) == 6
    for view in views:
        assert not {"pk", "sk", "dataset_ref", "version_ref"} & set(view), view


def test_utc_iso_is_the_stored_timestamp_form():
    from datetime import datetime, timedelta, timezone

    from functions.core.registry import utc_iso

    assert utc_iso(datetime(2025, 3, 4, 13, 2, 3, 456789, tzinfo=timezone(timedelta(hours=1)))) == \
        "2025-03-04T12:02:03.456Z"
    now = utc_iso()
    assert now.endswith("Z") and len(now) == len("2025-03-04T12:02:03.456Z")
