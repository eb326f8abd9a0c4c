"""Least privilege that enforces the registry's invariants (issue 11, item 6), on the synthesized
template: only Record appends audit events, nobody edits or deletes one, Train writes only its
version's candidate record, reserved concurrency for inference and a cap for training."""
from __future__ import annotations

import json
from collections import defaultdict

import pytest

from infra.registry import AUDIT_DENIED, CANDIDATE_ATTRIBUTES

pytestmark = pytest.mark.slow


def _logical_id(synth, type_: str, prefix: str) -> str:
    found = [lid for lid in synth.resources(type_) if lid.startswith(prefix)]
    assert len(found) == 1, (prefix, found)
    return found[0]


def _role_statements(synth) -> dict[str, list[dict]]:
    """Role logical id -> every statement of its identity policies."""
    out: dict[str, list[dict]] = defaultdict(list)
    for resource in synth.template_dict["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy":
            for role in resource["Properties"].get("Roles", []):
                out[role["Ref"]].extend(resource["Properties"]["PolicyDocument"]["Statement"])
    for lid, resource in synth.template_dict["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                out[lid].extend(policy["PolicyDocument"]["Statement"])
    return out


def _listify(value) -> list:
    return value if isinstance(value, list) else [value]


def _grants(synth, table_lid: str) -> dict[str, set[str]]:
    """Role logical id -> the dynamodb actions it is allowed on the table (or its indexes)."""
    out: dict[str, set[str]] = defaultdict(set)
    for role, statements in _role_statements(synth).items():
        for s in statements:
            if s["Effect"] != "Allow":
                continue
            if any(table_lid in json.dumps(r) or r == "*" for r in _listify(s["Resource"])):
                actions = {a for a in _listify(s["Action"]) if a.startswith("dynamodb:") or a == "*"}
                if actions:
                    out[role] |= actions
    return dict(out)


def _role_of(synth, function_prefix: str) -> str:
    fn = synth.template_dict["Resources"][_logical_id(synth, "AWS::Lambda::Function", function_prefix)]
    return fn["Properties"]["Role"]["Fn::GetAtt"][0]


def test_only_record_appends_audit_events_and_nobody_edits_them(synth):
    audit = _logical_id(synth, "AWS::DynamoDB::Table", "RegistryAuditTable")
    grants = _grants(synth, audit)
    writers = {role for role, actions in grants.items() if actions - {"dynamodb:GetItem", "dynamodb:Query"}}
    # Record and Release (alias moves, the release log: infra/release.py) and Approval (release log
    # events, PutItem in MODEL#* partitions only: tests/infra/test_approval_infra.py)
    assert writers == {_role_of(synth, "PipelineRecord"), _role_of(synth, "PipelineRelease"),
                       _role_of(synth, "ApprovalFunction")}, grants
    for mover in ("PipelineRecord", "PipelineRelease"):
        assert grants[_role_of(synth, mover)] == {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"}
    assert grants[_role_of(synth, "ApprovalFunction")] == {"dynamodb:PutItem"}
    for role, actions in grants.items():
        assert not actions & {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                              "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete", "dynamodb:*", "*"}, role


def test_the_audit_table_denies_updates_and_deletes_to_everyone(synth):
    table = synth.template_dict["Resources"][_logical_id(synth, "AWS::DynamoDB::Table", "RegistryAuditTable")]
    props = table["Properties"]
    [deny] = props["ResourcePolicy"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == {"AWS": "*"} and deny["Resource"] == "*"
    assert set(deny["Action"]) == set(AUDIT_DENIED) >= {"dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    assert not deny.get("Condition")
    # Same key schema as the registry table's events; encrypted, point-in-time recovery, retained.
    assert [k["AttributeName"] for k in props["KeySchema"]] == ["pk", "sk"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert table["DeletionPolicy"] == "Retain" and props["DeletionProtectionEnabled"] is True


def test_no_role_may_delete_registry_items(synth):
    registry = _logical_id(synth, "AWS::DynamoDB::Table", "RegistryTable")
    for role, actions in _grants(synth, registry).items():
        assert not actions & {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:PartiQLDelete",
                              "dynamodb:*", "*"}, role


@pytest.mark.parametrize("prefix", ["PipelineTrain", "PipelineValidate"])
def test_train_and_validate_update_versions_only(synth, prefix):
    """No PutItem, no audit table; UpdateItem only in model partitions (not the MODELS items that
    hold counters and aliases); Train may name only the candidate record's attributes."""
    registry = _logical_id(synth, "AWS::DynamoDB::Table", "RegistryTable")
    role = _role_of(synth, prefix)
    assert _grants(synth, registry)[role] == {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"}
    assert role not in _grants(synth, _logical_id(synth, "AWS::DynamoDB::Table", "RegistryAuditTable"))
    [update] = [s for s in _role_statements(synth)[role] if "dynamodb:UpdateItem" in _listify(s["Action"])]
    assert update["Condition"]["ForAllValues:StringLike"] == {"dynamodb:LeadingKeys": ["MODEL#*"]}
    if prefix == "PipelineTrain":
        assert set(update["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]) == set(CANDIDATE_ATTRIBUTES)


def test_candidate_attributes_cover_what_record_candidate_writes():
    """The dynamodb:Attributes list of the Train role must name every top-level attribute
    Registry.record_candidate's UpdateItem touches (moto does not enforce IAM, AWS would)."""
    from functions.core.registry import Registry

    calls = []

    class Client:
        def update_item(self, **kw):
            calls.append(kw)
            return {"Attributes": {}}

    Registry("registry", client=Client()).record_candidate(
        "iris", 1, artifact_key="models/iris/v1/model.onnx", artifact_sha256="0" * 64, schema={"features": []},
        metrics={"accuracy": 1.0}, lineage={"dataset": {"rows": 1}}, artifact_version_id="v1")
    [kw] = calls
    names = kw.get("ExpressionAttributeNames", {})
    expressions = " ".join(kw.get(k, "") for k in ("UpdateExpression", "ConditionExpression"))
    top = set()
    for token in expressions.replace("(", " ").replace(")", " ").replace(",", " ").split():
        if token.startswith(":") or token.upper() in {"SET", "AND", "OR", "IN", "NOT", "=", "REMOVE"}:
            continue
        head = token.split(".")[0]
        top.add(names.get(head, head))
    top |= set(kw["Key"])
    assert top <= set(CANDIDATE_ATTRIBUTES), top - set(CANDIDATE_ATTRIBUTES)


def test_drift_and_inference_cannot_touch_the_audit_log(synth):
    audit = _logical_id(synth, "AWS::DynamoDB::Table", "RegistryAuditTable")
    grants = _grants(synth, audit)
    for prefix in ("InferenceFunction", "DriftFunction", "DriftRetrain", "PipelineAllocate"):
        assert _role_of(synth, prefix) not in grants, prefix


def test_reserved_concurrency_for_inference_and_a_cap_for_training(synth, synth_api_key):
    functions = synth.resources("AWS::Lambda::Function")
    assert functions[_logical_id(synth, "AWS::Lambda::Function", "InferenceFunction")]["Properties"][
        "ReservedConcurrentExecutions"] == 50
    trains = {lid: f for lid, f in synth_api_key.resources("AWS::Lambda::Function").items()
              if lid.startswith("PipelineTrain")}
    assert len(trains) == 2
    assert {f["Properties"]["ReservedConcurrentExecutions"] for f in trains.values()} == {5}
    # The defaults leave the account's pool almost whole (1000 - 100 unreserved = 900 reservable).
    total = sum(f["Properties"].get("ReservedConcurrentExecutions", 0)
                for f in synth_api_key.resources("AWS::Lambda::Function").values())
    assert total <= 100
