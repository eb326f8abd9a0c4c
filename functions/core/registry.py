"""Model registry: versions, aliases and lineage in the registry table, the audit log of alias
moves in a table of its own (the same keys; by default the registry table itself).

Table layout (docs/architecture.md):
  model    pk=MODELS          sk=<model>                  name, next_version, aliases, alias_seq, created_at
  version  pk=MODEL#<model>   sk=V#<10-digit version>     the version record (+ dataset_ref/version_ref for the GSI)
  event    pk=MODEL#<model>   sk=E#<alias>#<10-digit seq> model, alias, from_version, to_version, kind, reason,
                                                         actor, at, seq  (in the audit table)
  claim    pk=MODEL#<model>   sk=R#<claim id>             kind=run-claim, model, dataset, execution_arn, version, at
  drift    pk=MODEL#<model>   sk=D#<checked_at>#<8 hex>   kind=drift_check, the check's summary
  quality  pk=MODEL#<model>   sk=Q#<checked_at>#<8 hex>   kind=quality_check, the check's summary
  approval pk=MODEL#<model>   sk=T#<10-digit version>     kind=approval, task_token, execution_arn, requested_at,
                                                         timeout_at, decision, actor, reason, decided_at
  release  pk=MODEL#<model>   sk=L#<at>#<8 hex>           kind, version, actor, reason, ... (in the audit table:
                                                         the release log, append-only like alias moves)

The model item's ``release`` attribute is the release running now (docs/release.md): ``{"id", "mode"
(canary|shadow), "version", "production", "percent", "bake", "started_at", "execution_arn"}``. Every
move of the production alias removes it in the same transaction, so a canary or shadow never
outlives a promotion or rollback, by hand or not.

Every state change is guarded by a condition expression, so concurrent writers
cannot corrupt it; alias moves are one TransactWriteItems.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

# Versions an alias may point at; failed/rejected/training never serve, nor one awaiting approval.
ALIAS_ELIGIBLE = ("candidate", "archived", "production", "canary", "shadow")
RELEASE_MODES = ("canary", "shadow")  # a version's status while its release runs
# What a version may be while a person decides (docs/release.md): status, then approval item's decision.
AWAITING_APPROVAL = "awaiting_approval"
DECISIONS = ("approve", "reject")
RECORD_KEYS = (
    "model", "version", "status", "created_at", "updated_at", "artifact_key", "artifact_sha256",
    "artifact_version_id", "schema", "metrics", "estimator", "params", "lineage", "execution_arn", "reason",
)
_INTERNAL_KEYS = {"pk", "sk", "dataset_ref", "version_ref"}
_MODELS_PK = "MODELS"
_ALIAS_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MAX_MOVE_ATTEMPTS = 5
MOVE_KINDS = ("promote", "rollback")  # an audit event's `kind`
CLAIM_SK_PREFIX = "R#"
DRIFT_SK_PREFIX = "D#"
QUALITY_SK_PREFIX = "Q#"  # model quality checks (docs/quality.md)
BATCH_SK_PREFIX = "B#"  # batch scoring runs: B#<run id> (docs/batch.md)
APPROVAL_SK_PREFIX = "T#"  # manual approvals: T#<10-digit version> (the task token lives here, not on the version)
RELEASE_LOG_SK_PREFIX = "L#"  # the release log in the audit table: L#<at>#<8 hex>


class RegistryError(Exception):
    """Base class of every registry error."""


class ModelNotFound(RegistryError):
    """The model is neither configured nor stored."""


class VersionNotFound(RegistryError):
    """The model has no such version."""


class AliasConflict(RegistryError):
    """The alias did not point where the caller expected (a concurrent move won)."""


class InvalidTransition(RegistryError):
    """The version's status does not allow the requested change."""


class ReleaseConflict(RegistryError):
    """The release is not (or no longer) the one the caller named: another release, a promotion or a
    rollback came in between."""


class ApprovalError(RegistryError):
    """The version is not awaiting a decision (none was asked for, or one was already made)."""


# ---------------------------------------------------------------- value conversion

def utc_iso(now: datetime | None = None) -> str:
    """``now`` (default: the current time) in UTC as ISO 8601 with milliseconds and ``Z``:
    the form of every timestamp Shipyard stores."""
    now = datetime.now(UTC) if now is None else now.astimezone(UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dataset_ref(bucket: str, key: str, version_id: Any) -> str:
    """``s3://<bucket>/<key>?versionId=<version id>``: one dataset object version.

    The version items' ``dataset_ref`` (the ``by-dataset`` index) and the pipeline's run claims
    are keyed by it, so everything that looks them up builds it here.
    """
    return f"s3://{bucket}/{key}?versionId={version_id}"


def _to_dynamo(value: Any, path: str = "value") -> Any:
    """JSON-like value -> DynamoDB-safe value (floats become Decimal); rejects NaN/inf."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{path} must be a finite number, got {value}")
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"{path} must be a finite number, got {f!r} (NaN and infinity cannot be stored)")
        if f != 0.0 and not 1e-130 < abs(f) < 1e125:
            raise ValueError(f"{path}={f!r} is outside DynamoDB's number range (1e-130 .. 1e125)")
        # str() is the shortest repr that round-trips, so no binary noise is stored.
        return Decimal(str(f))
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{path} has a non-string key {k!r}; keys must be strings")
            out[k] = _to_dynamo(v, f"{path}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_to_dynamo(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{path} has unsupported type {type(value).__name__}; use JSON-compatible values")


def _from_dynamo(value: Any) -> Any:
    """Deserialized DynamoDB value -> plain JSON value (Decimal -> int or float)."""
    if isinstance(value, Decimal):
        # Integers written as such stay exact; integral floats within float precision become
        # ints (DynamoDB itself returns 1.0 as "1"); everything else is a float.
        if value == value.to_integral_value() and (value.as_tuple().exponent == 0 or abs(value) < 2**53):
            return int(value)
        return float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_from_dynamo(v) for v in value]
    return value


_SER = TypeSerializer()
_DES = TypeDeserializer()


def _av(value: Any, path: str = "value") -> dict:
    return _SER.serialize(_to_dynamo(value, path))


def _item(attrs: dict) -> dict:
    return {k: _av(v, k) for k, v in attrs.items()}


def _plain(item: dict) -> dict:
    return {k: _from_dynamo(_DES.deserialize(v)) for k, v in item.items()}


def _public(item: dict) -> dict:
    """The item without the table's keys and index attributes."""
    return {k: v for k, v in item.items() if k not in _INTERNAL_KEYS}


def _vsk(version: int) -> str:
    return f"V#{int(version):010d}"


def _esk(alias: str, seq: int) -> str:
    return f"E#{alias}#{seq:010d}"


# Versions are stored zero-padded to 10 digits (``_vsk``): none can be larger. Model names in API paths:
# 1 to 255 printable characters without '#' (the key separator).
MAX_VERSION = 9_999_999_999
MAX_NAME_LENGTH = 255


def is_model_name(name: str) -> bool:
    """Whether `name` (decoded from a request path) can be a model's. ``isprintable`` also refuses lone
    surrogates, so a valid name is UTF-8 encodable; invalid names never reach DynamoDB."""
    return 0 < len(name) <= MAX_NAME_LENGTH and "#" not in name and name.isprintable()


def _check_model(model: str) -> str:
    if not isinstance(model, str) or not model or "#" in model:
        raise ValueError(f"model name must be a non-empty string without '#', got {model!r}")
    return model


def _check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias):
        raise ValueError(f"alias must match {_ALIAS_RE.pattern}, got {alias!r}")
    return alias


def _is_conditional_failure(err: ClientError) -> bool:
    return err.response.get("Error", {}).get("Code") in (
        "ConditionalCheckFailedException", "TransactionCanceledException")


class Registry:
    """Versions, aliases and audit log of Shipyard models (DynamoDB low-level client)."""

    def __init__(self, table_name: str, *, client=None, known_models: Iterable[str] = (),
                 audit_table: str | None = None):
        """`audit_table`: the table of the audit log (the stack's ``AuditTableName``); default: the
        registry table itself (one-table layout, e.g. tests)."""
        self.table_name = table_name
        self.audit_table_name = audit_table or table_name
        self.client = client if client is not None else boto3.client("dynamodb")
        self.known_models = tuple(sorted({_check_model(m) for m in known_models}))

    @classmethod
    def from_env(cls, *, client=None) -> Registry:
        """Build from REGISTRY_TABLE, AUDIT_TABLE (default: REGISTRY_TABLE) and SHIPYARD_MODELS
        (JSON list of model names); `client`: a DynamoDB client to use (default: a new one)."""
        table = os.environ.get("REGISTRY_TABLE")
        if not table:
            raise RegistryError("environment variable REGISTRY_TABLE is not set (the registry table name)")
        raw = os.environ.get("SHIPYARD_MODELS") or "[]"
        try:
            models = json.loads(raw)
        except json.JSONDecodeError as e:
            raise RegistryError(f"SHIPYARD_MODELS must be a JSON list of model names, got {raw!r}: {e}") from None
        if isinstance(models, dict):  # tolerate {"name": {...}} as well
            models = list(models)
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise RegistryError(f"SHIPYARD_MODELS must be a JSON list of model names, got {raw!r}")
        return cls(table, client=client, known_models=models, audit_table=os.environ.get("AUDIT_TABLE") or None)

    # ------------------------------------------------------------ low-level helpers

    def _get(self, pk: str, sk: str, **kw) -> dict | None:
        resp = self.client.get_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}},
                                    ConsistentRead=True, **kw)
        return _plain(resp["Item"]) if "Item" in resp else None

    def _query(self, **kw) -> list[dict]:
        """One logical Query (follows pagination past 1 MB pages)."""
        items, kw = [], {"TableName": self.table_name, **kw}
        while True:
            resp = self.client.query(**kw)
            items.extend(_plain(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return items
            kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    @staticmethod
    def _record(item: dict) -> dict:
        rec = {k: None for k in RECORD_KEYS}
        rec.update(_public(item))
        return rec

    def _model_item(self, model: str) -> dict | None:
        return self._get(_MODELS_PK, _check_model(model))

    # ------------------------------------------------------------ models

    def ensure_model(self, model: str) -> None:
        """Create the model item if missing (idempotent; never resets counters or aliases)."""
        self._upsert_model(model, add_version=False)

    def _upsert_model(self, model: str, *, add_version: bool) -> dict:
        expr = ("SET #name = if_not_exists(#name, :name), aliases = if_not_exists(aliases, :empty), "
                "alias_seq = if_not_exists(alias_seq, :empty), created_at = if_not_exists(created_at, :now)")
        values = {":name": {"S": model}, ":empty": {"M": {}}, ":now": {"S": utc_iso()}}
        if add_version:
            expr += " ADD next_version :one"
            values[":one"] = {"N": "1"}
        else:
            expr += ", next_version = if_not_exists(next_version, :zero)"
            values[":zero"] = {"N": "0"}
        resp = self.client.update_item(
            TableName=self.table_name, Key={"pk": {"S": _MODELS_PK}, "sk": {"S": _check_model(model)}},
            UpdateExpression=expr, ExpressionAttributeNames={"#name": "name"},
            ExpressionAttributeValues=values, ReturnValues="UPDATED_NEW")
        return _plain(resp.get("Attributes", {}))

    def list_models(self) -> list[dict]:
        """All models (configured or stored) with their production version, sorted by name."""
        found = {i["name"]: (i.get("aliases") or {}).get("production")
                 for i in self._query(KeyConditionExpression="pk = :pk",
                                      ExpressionAttributeValues={":pk": {"S": _MODELS_PK}},
                                      ConsistentRead=True)}
        for m in self.known_models:
            found.setdefault(m, None)
        return [{"name": n, "production": found[n]} for n in sorted(found)]

    def get_model(self, model: str) -> dict:
        item = self._model_item(model)
        if item is None:
            if model not in self.known_models:
                raise ModelNotFound(f"model {model!r} is not configured and has no versions")
            return {"name": model, "aliases": {}, "latest_version": None, "release": None}
        return {"name": model, "aliases": dict(item.get("aliases") or {}),
                "latest_version": item.get("next_version") or None, "release": item.get("release")}

    # ------------------------------------------------------------ versions

    def allocate_version(self, model: str, *, execution_arn: str | None = None, dataset: dict | None = None,
                         estimator: str | None = None, params: dict | None = None) -> dict:
        """Atomically take the next version number and record it as `training`."""
        _check_model(model)
        if dataset is not None:
            missing = [k for k in ("bucket", "key", "version_id") if not dataset.get(k)]
            if missing:
                raise ValueError(f"dataset for model {model!r} is missing {missing}; "
                                 "lineage needs bucket, key, version_id (and sha256)")
        version = self._upsert_model(model, add_version=True)["next_version"]
        now = utc_iso()
        rec = {"model": model, "version": version, "status": "training", "created_at": now, "updated_at": now,
               "artifact_key": None, "artifact_sha256": None, "schema": None, "metrics": {},
               "estimator": estimator, "params": params if params is not None else {},
               "lineage": {"dataset": dict(dataset)} if dataset is not None else {},
               "execution_arn": execution_arn, "reason": None}
        item = {"pk": f"MODEL#{model}", "sk": _vsk(version), **rec}
        if dataset is not None:
            item["dataset_ref"] = dataset_ref(dataset["bucket"], dataset["key"], dataset["version_id"])
            item["version_ref"] = f"{model}#{version:010d}"
        # The counter makes the number unique; the condition guards against a reset counter.
        try:
            self.client.put_item(TableName=self.table_name, Item=_item(item),
                                 ConditionExpression="attribute_not_exists(sk)")
        except ClientError as e:
            if _is_conditional_failure(e):
                raise RegistryError(f"model {model!r} version {version} already exists; "
                                    "the version counter is behind the stored versions") from None
            raise
        return self._record(_plain(_item(item)))

    def get_version(self, model: str, version: int) -> dict:
        item = self._get(f"MODEL#{_check_model(model)}", _vsk(version))
        if item is None:
            raise VersionNotFound(f"model {model!r} has no version {version}")
        return self._record(item)

    def list_versions(self, model: str) -> list[dict]:
        """All versions of a model, ascending (empty for an unknown model)."""
        items = self._query(KeyConditionExpression="pk = :pk AND begins_with(sk, :v)",
                            ExpressionAttributeValues={":pk": {"S": f"MODEL#{_check_model(model)}"},
                                                       ":v": {"S": "V#"}},
                            ConsistentRead=True)
        return [self._record(i) for i in items]

    def _transition(self, model: str, version: int, to_status: str, allowed: tuple[str, ...],
                    fields: dict, *, merge: dict | None = None, idempotent_on: dict | None = None) -> dict:
        """Conditional status change: applies only if the stored status is in `allowed`.

        `idempotent_on` lets an identical retry (e.g. a Step Functions retry) succeed when the
        version already has `to_status` and those attribute values.
        """
        names = {"#status": "status"}
        values = {":to": {"S": to_status}, ":now": {"S": utc_iso()}}
        sets = ["#status = :to", "updated_at = :now"]
        for i, (k, v) in enumerate(fields.items()):
            names[f"#f{i}"], values[f":f{i}"] = k, _av(v, k)
            sets.append(f"#f{i} = :f{i}")
        for attr, sub in (merge or {}).items():
            for j, (k, v) in enumerate(sub.items()):
                names[f"#m{attr}"], names[f"#m{attr}{j}"] = attr, k
                values[f":m{attr}{j}"] = _av(v, f"{attr}.{k}")
                sets.append(f"#m{attr}.#m{attr}{j} = :m{attr}{j}")
        allowed_ph = []
        for i, s in enumerate(allowed):
            values[f":a{i}"] = {"S": s}
            allowed_ph.append(f":a{i}")
        cond = f"#status IN ({', '.join(allowed_ph)})"
        if idempotent_on:
            same = ["#status = :to"]
            for i, (k, v) in enumerate(idempotent_on.items()):
                names[f"#i{i}"], values[f":i{i}"] = k, _av(v, k)
                same.append(f"#i{i} = :i{i}")
            cond = f"({cond}) OR ({' AND '.join(same)})"
        try:
            resp = self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": f"MODEL#{_check_model(model)}"}, "sk": {"S": _vsk(version)}},
                UpdateExpression="SET " + ", ".join(sets), ConditionExpression=cond,
                ExpressionAttributeNames=names, ExpressionAttributeValues=values, ReturnValues="ALL_NEW")
        except ClientError as e:
            if not _is_conditional_failure(e):
                raise
            current = self.get_version(model, version)  # raises VersionNotFound
            raise InvalidTransition(
                f"model {model!r} version {version} is {current['status']!r}; "
                f"only {' or '.join(allowed)} can become {to_status!r}") from None
        return self._record(_plain(resp["Attributes"]))

    def record_candidate(self, model: str, version: int, *, artifact_key: str, artifact_sha256: str,
                         schema: dict, metrics: dict, lineage: dict | None = None,
                         extra: dict | None = None, artifact_version_id: str | None = None) -> dict:
        """training -> candidate, with artifact, schema and metrics; `lineage` keys are merged in.

        `artifact_version_id` is the S3 object version the artifact was written as: serving and
        validation read exactly that version (None: the key's current object, as before)."""
        fields = {"artifact_key": artifact_key, "artifact_sha256": artifact_sha256,
                  "schema": schema, "metrics": metrics}
        if artifact_version_id:
            fields["artifact_version_id"] = artifact_version_id
        for k in extra or {}:
            if k in RECORD_KEYS or k in _INTERNAL_KEYS:
                raise ValueError(f"extra attribute {k!r} for model {model!r} version {version} is reserved")
        fields.update(extra or {})
        return self._transition(model, version, "candidate", ("training",), fields,
                                merge={"lineage": lineage} if lineage else None,
                                idempotent_on={"artifact_sha256": artifact_sha256})

    def record_failure(self, model: str, version: int, reason: str,
                       only_from: tuple[str, ...] = ("training", "candidate", AWAITING_APPROVAL, *RELEASE_MODES)
                       ) -> dict:
        """training|candidate|awaiting_approval|canary|shadow (or only the statuses in `only_from`) -> failed,
        with the reason. A release of the version is not ended here: ``end_release`` does that."""
        return self._transition(model, version, "failed", only_from, {"reason": reason},
                                idempotent_on={"reason": reason})

    def record_rejection(self, model: str, version: int, reason: str, metrics: dict | None = None) -> dict:
        """candidate (or awaiting_approval, canary, shadow) -> rejected, with the reason; `metrics` keys are
        merged into the stored metrics."""
        return self._transition(model, version, "rejected", ("candidate", AWAITING_APPROVAL, *RELEASE_MODES),
                                {"reason": reason},
                                merge={"metrics": metrics} if metrics else None,
                                idempotent_on={"reason": reason})

    def record_validation(self, model: str, version: int, metrics: dict) -> dict:
        """Replace a candidate's metrics with the validated ones (status stays candidate; only a candidate)."""
        return self._transition(model, version, "candidate", ("candidate",), {"metrics": metrics})

    # ------------------------------------------------------------ run claims

    def claim_run(self, model: str, claim_id: str, *, execution_arn: str, dataset: dict) -> dict:
        """Claim `claim_id` (e.g. a dataset object version) for one pipeline run, on condition.

        Returns the stored claim with ``claimed`` True when this call wrote it, else the existing
        claim (whoever made it: compare its ``execution_arn``) with ``claimed`` False.
        """
        pk, sk = f"MODEL#{_check_model(model)}", CLAIM_SK_PREFIX + claim_id
        claim = {"kind": "run-claim", "model": model, "dataset": dataset, "execution_arn": execution_arn,
                 "at": utc_iso()}
        try:
            self.client.put_item(TableName=self.table_name, Item=_item({"pk": pk, "sk": sk, **claim}),
                                 ConditionExpression="attribute_not_exists(sk)")
            return {**claim, "version": None, "claimed": True}
        except ClientError as e:
            if not _is_conditional_failure(e):
                raise
        existing = self._get(pk, sk) or {}
        return {**_public(existing), "claimed": False}

    def set_claim_version(self, model: str, claim_id: str, version: int) -> None:
        """Record the version a claimed run allocated."""
        self.client.update_item(
            TableName=self.table_name,
            Key={"pk": {"S": f"MODEL#{_check_model(model)}"}, "sk": {"S": CLAIM_SK_PREFIX + claim_id}},
            UpdateExpression="SET version = :v", ConditionExpression="attribute_exists(sk)",
            ExpressionAttributeValues={":v": {"N": str(int(version))}})

    # ------------------------------------------------------------ drift checks

    def put_drift_check(self, model: str, check: dict) -> dict:
        """Append a drift check (needs ``checked_at``; sk ``D#<checked_at>#<8 hex>``, so two checks in
        one millisecond both land). Returns the stored attributes."""
        return self._put_check(model, check, "drift_check", DRIFT_SK_PREFIX)

    def drift_history(self, model: str, limit: int | None = None) -> list[dict]:
        """Drift checks of `model`, newest first; at most `limit` (follows pagination)."""
        return self._checks(model, DRIFT_SK_PREFIX, limit)

    # ------------------------------------------------------------ quality checks

    def put_quality_check(self, model: str, check: dict) -> dict:
        """Append a model quality check (needs ``checked_at``; sk ``Q#<checked_at>#<8 hex>``, so two
        checks in one millisecond both land). Returns the stored attributes."""
        return self._put_check(model, check, "quality_check", QUALITY_SK_PREFIX)

    def quality_history(self, model: str, limit: int | None = None) -> list[dict]:
        """Quality checks of `model`, newest first; at most `limit` (follows pagination)."""
        return self._checks(model, QUALITY_SK_PREFIX, limit)

    def _put_check(self, model: str, check: dict, kind: str, prefix: str) -> dict:
        """One scheduled check's item (``<prefix><checked_at>#<8 hex>``), never overwriting another."""
        if not check.get("checked_at"):
            raise ValueError(f"{kind.replace('_', ' ')} of model {model!r} needs 'checked_at'")
        item = {"kind": kind, **check, "model": _check_model(model)}
        sk = f"{prefix}{item['checked_at']}#{uuid.uuid4().hex[:8]}"
        self.client.put_item(TableName=self.table_name,
                             Item=_item({"pk": f"MODEL#{model}", "sk": sk, **item}),
                             ConditionExpression="attribute_not_exists(sk)")
        return item

    def _checks(self, model: str, prefix: str, limit: int | None) -> list[dict]:
        """The items of one kind of check, newest first; at most `limit` (follows pagination)."""
        kw: dict[str, Any] = {"TableName": self.table_name,
                              "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
                              "ExpressionAttributeValues": {":pk": {"S": f"MODEL#{_check_model(model)}"},
                                                            ":p": {"S": prefix}},
                              "ScanIndexForward": False}
        items: list[dict] = []
        while True:
            if limit:
                kw["Limit"] = int(limit) - len(items)
            resp = self.client.query(**kw)
            items.extend(_public(_plain(i)) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp or (limit and len(items) >= int(limit)):
                return items[:limit] if limit else items
            kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    # ------------------------------------------------------------ batch scoring runs

    def put_batch_run(self, model: str, run: str, item: dict) -> dict:
        """Write a batch scoring run's lineage (sk ``B#<run>``: input object version and sha256,
        model version, output keys, status); a retried step writes the same item again."""
        if not run:
            raise ValueError(f"batch run of model {model!r} needs a run id")
        item = {"kind": "batch_run", **item, "model": _check_model(model), "run": str(run)}
        self.client.put_item(TableName=self.table_name,
                             Item=_item({"pk": f"MODEL#{model}", "sk": BATCH_SK_PREFIX + str(run), **item}))
        return item

    def get_batch_run(self, model: str, run: str) -> dict | None:
        """One batch run's item, or None."""
        item = self._get(f"MODEL#{_check_model(model)}", BATCH_SK_PREFIX + str(run))
        return _public(item) if item else None

    def batch_runs(self, model: str) -> list[dict]:
        """Every batch run of `model` (sorted by run id)."""
        return [_public(i) for i in self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :b)",
            ExpressionAttributeValues={":pk": {"S": f"MODEL#{_check_model(model)}"}, ":b": {"S": BATCH_SK_PREFIX}})]

    # ------------------------------------------------------------ aliases

    def get_alias(self, model: str, alias: str = "production") -> int | None:
        """Version the alias points at, or None (one GetItem)."""
        resp = self.client.get_item(
            TableName=self.table_name, Key={"pk": {"S": _MODELS_PK}, "sk": {"S": _check_model(model)}},
            ProjectionExpression="aliases.#a", ExpressionAttributeNames={"#a": _check_alias(alias)},
            ConsistentRead=True)
        return _plain(resp.get("Item", {})).get("aliases", {}).get(alias)

    def move_alias(self, model: str, alias: str, to_version: int, *, expected: int | None,
                   reason: str, actor: str, kind: str = "promote", expected_seq: Any = ...,
                   release_id: str | None = None) -> dict:
        """Atomically point `alias` at `to_version` if it currently is `expected`; append an audit event.

        Returns the event written, with ``moved`` True (``moved`` is not stored). When the alias
        already points at `to_version` (and that is what the caller expected) nothing is written:
        the answer is ``{"model", "alias", "from_version": N, "to_version": N, "kind", "seq": None,
        "moved": False}``. `kind` (``promote`` or ``rollback``) is stored on the event; a given
        `expected_seq` (the alias's ``alias_seq``, the newest event's ``seq``) must also still hold,
        so a move computed from the audit history fails if another move came in between. A given
        `release_id` must still be the model's running release (``ReleaseConflict`` otherwise): the end
        of a canary promotes only if no other release replaced it meanwhile.
        """
        _check_model(model), _check_alias(alias)
        to_version = int(to_version)
        if kind not in MOVE_KINDS:
            raise ValueError(f"alias move kind must be one of {', '.join(MOVE_KINDS)}, got {kind!r}")
        for _ in range(_MAX_MOVE_ATTEMPTS):
            item = self._model_item(model)
            if item is None:
                if model not in self.known_models:
                    raise ModelNotFound(f"model {model!r} is not configured and has no versions")
                raise VersionNotFound(f"model {model!r} has no version {to_version}")
            actual = (item.get("aliases") or {}).get(alias)
            if actual != expected:
                raise AliasConflict(f"model {model!r} alias {alias!r}: expected version {expected}, "
                                    f"found {actual}; nothing was changed")
            seq_prev = (item.get("alias_seq") or {}).get(alias)
            if release_id is not None and (item.get("release") or {}).get("id") != release_id:
                raise ReleaseConflict(f"model {model!r}: release {release_id} is no longer running (now: "
                                      f"{(item.get('release') or {}).get('id')}); nothing was changed")
            if expected_seq is not ... and seq_prev != expected_seq:
                raise AliasConflict(f"model {model!r} alias {alias!r} moved since its history was read "
                                    f"(event #{seq_prev}, expected #{expected_seq}); nothing was changed")
            if actual == to_version:
                return {"model": model, "alias": alias, "from_version": actual, "to_version": to_version,
                        "kind": kind, "seq": None, "moved": False}
            event = {"model": model, "alias": alias, "from_version": expected, "to_version": to_version,
                     "kind": kind, "reason": reason, "actor": actor, "at": utc_iso(), "seq": (seq_prev or 0) + 1}
            try:
                self.client.transact_write_items(
                    TransactItems=self._move_ops(model, alias, event, seq_prev, release_id))
                return {**event, "moved": True}
            except ClientError as e:
                if not _is_conditional_failure(e) and e.response["Error"]["Code"] not in (
                        "TransactionConflictException", "TransactionConflict"):
                    raise
            # Cancelled: find out why. A changed alias or an ineligible target is final; anything
            # else (the seq moved but the alias came back to `expected`, a transient conflict) retries.
            actual = self.get_alias(model, alias)
            if actual != expected:
                raise AliasConflict(f"model {model!r} alias {alias!r}: expected version {expected}, "
                                    f"found {actual} (a concurrent move won); nothing was changed")
            if release_id is not None and (self.get_release(model) or {}).get("id") != release_id:
                raise ReleaseConflict(f"model {model!r}: release {release_id} ended while its promotion was "
                                      "being written; nothing was changed")
            status = self.get_version(model, to_version)["status"]  # raises VersionNotFound
            if status not in ALIAS_ELIGIBLE:
                raise InvalidTransition(f"model {model!r} version {to_version} is {status!r}; alias {alias!r} "
                                        f"can only point at a {', '.join(ALIAS_ELIGIBLE)} version")
        raise RegistryError(f"model {model!r} alias {alias!r}: move to version {to_version} kept conflicting "
                            f"after {_MAX_MOVE_ATTEMPTS} attempts; retry later")

    def _move_ops(self, model: str, alias: str, event: dict, seq_prev: int | None,
                  release_id: str | None = None) -> list[dict]:
        """The TransactWriteItems operations of one alias move (one operation per item)."""
        table, pk, now = self.table_name, f"MODEL#{model}", event["at"]
        expected, to_version = event["from_version"], event["to_version"]
        names = {"#a": alias}
        values = {":to": {"N": str(to_version)}, ":seq": {"N": str(event["seq"])}, ":now": {"S": now}}
        cond = ["attribute_exists(sk)"]
        if expected is None:
            cond.append("attribute_not_exists(aliases.#a)")
        else:
            cond.append("aliases.#a = :expected")
            values[":expected"] = {"N": str(expected)}
        if release_id is not None:
            names["#release"] = "release"
            cond.append("#release.id = :rid")
            values[":rid"] = {"S": release_id}
        if seq_prev is None:
            cond.append("attribute_not_exists(alias_seq.#a)")
        else:
            cond.append("alias_seq.#a = :seq_prev")
            values[":seq_prev"] = {"N": str(seq_prev)}
        # Production moving ends any canary or shadow release: it never outlives a promotion or rollback.
        remove = " REMOVE #release" if alias == "production" else ""
        if remove:
            names["#release"] = "release"
        ops = [
            {"Update": {"TableName": table, "Key": {"pk": {"S": _MODELS_PK}, "sk": {"S": model}},
                        "UpdateExpression": "SET aliases.#a = :to, alias_seq.#a = :seq, updated_at = :now" + remove,
                        "ConditionExpression": " AND ".join(cond),
                        "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}},
            {"Put": {"TableName": self.audit_table_name,
                     "Item": _item({"pk": pk, "sk": _esk(alias, event["seq"]), **event}),
                     "ConditionExpression": "attribute_not_exists(sk)"}},
        ]
        eligible = {f":e{i}": {"S": s} for i, s in enumerate(ALIAS_ELIGIBLE)}
        target_key = {"pk": {"S": pk}, "sk": {"S": _vsk(to_version)}}
        target_cond = f"#status IN ({', '.join(eligible)})"
        if alias != "production":
            # Other aliases leave statuses alone but still refuse failed/rejected/training targets.
            ops.append({"ConditionCheck": {"TableName": table, "Key": target_key, "ConditionExpression": target_cond,
                                           "ExpressionAttributeNames": {"#status": "status"},
                                           "ExpressionAttributeValues": eligible}})
            return ops
        ops.append({"Update": {"TableName": table, "Key": target_key,
                               "UpdateExpression": "SET #status = :production, updated_at = :now",
                               "ConditionExpression": target_cond,
                               "ExpressionAttributeNames": {"#status": "status"},
                               "ExpressionAttributeValues": {**eligible, ":production": {"S": "production"},
                                                             ":now": {"S": now}}}})
        # move_alias never writes a move to the version already served (a transaction may not hold
        # two operations on one item); the guard keeps the operations valid regardless.
        if expected is not None and expected != to_version:
            ops.append({"Update": {"TableName": table, "Key": {"pk": {"S": pk}, "sk": {"S": _vsk(expected)}},
                                   "UpdateExpression": "SET #status = :archived, updated_at = :now",
                                   "ConditionExpression": "attribute_exists(sk)",
                                   "ExpressionAttributeNames": {"#status": "status"},
                                   "ExpressionAttributeValues": {":archived": {"S": "archived"},
                                                                 ":now": {"S": now}}}})
        return ops

    def promote(self, model: str, version: int, *, reason: str, actor: str, expected: Any = ...,
                release_id: str | None = None) -> dict:
        """Make `version` production; `expected=...` reads the current production version first.

        Promoting the version that already serves writes nothing and answers ``moved`` False
        (see `move_alias`).
        """
        if expected is ...:
            expected = self.get_alias(model, "production")
        return self.move_alias(model, "production", version, expected=expected, reason=reason, actor=actor,
                               release_id=release_id)

    def rollback_path(self, model: str, alias: str = "production") -> list[int]:
        """The versions a rollback of `alias` can return to, the next one first (one query).

        The audit history, replayed, is a stack of the versions that served: a promote puts its
        version on top (taking it out from lower down, so a version is on the stack once), a
        rollback takes everything above its target off. The path is the stack under the version
        serving now, so rollbacks walk back through distinct versions and never toggle. Events
        written before events had a ``kind`` count as promotes.
        """
        stack: list[int] = []
        for e in self.history(model, alias):
            to = e["to_version"]
            if e.get("kind") == "rollback" and to in stack:
                del stack[stack.index(to) + 1:]
            else:
                if to in stack:
                    stack.remove(to)
                stack.append(to)
        current = self.get_alias(model, alias)
        return [v for v in reversed(stack) if v != current]

    def rollback(self, model: str, *, reason: str, actor: str, to: int | None = None) -> dict:
        """Point production back at the version that served before the current one: the first of
        `rollback_path` (or `to`, which must be on it). A new audit event of kind ``rollback``;
        atomic against any move since the history was read."""
        item = self._model_item(model)
        if item is None and model not in self.known_models:
            raise ModelNotFound(f"model {model!r} is not configured and has no versions")
        current = ((item or {}).get("aliases") or {}).get("production")
        if current is None:
            raise RegistryError(f"model {model!r} has no production version; there is nothing to roll back")
        seq = ((item or {}).get("alias_seq") or {}).get("production")
        path = self.rollback_path(model)
        if to is None:
            if not path:
                raise RegistryError(f"model {model!r}: no version served production before v{current}; "
                                    "there is nothing to roll back to")
            target = path[0]
        else:
            target = int(to)
            if target == current:
                raise RegistryError(f"model {model!r}: v{target} is the version serving production now; "
                                    "there is nothing to roll back")
            if target not in path:
                can = ", ".join(f"v{v}" for v in path) or "none"
                raise RegistryError(f"model {model!r}: v{target} is not on production's rollback path (versions "
                                    f"that served before v{current} and were not rolled back from: {can}); "
                                    f"`promote` makes any validated version production")
        return self.move_alias(model, "production", target, expected=current, reason=reason, actor=actor,
                               kind="rollback", expected_seq=seq)

    def last_event(self, model: str, alias: str = "production") -> dict | None:
        """The newest audit event of one alias, or None (one query: newest first, Limit 1)."""
        resp = self.client.query(TableName=self.audit_table_name,
                                 KeyConditionExpression="pk = :pk AND begins_with(sk, :e)",
                                 ExpressionAttributeValues={":pk": {"S": f"MODEL#{_check_model(model)}"},
                                                            ":e": {"S": f"E#{_check_alias(alias)}#"}},
                                 ScanIndexForward=False, Limit=1, ConsistentRead=True)
        items = resp.get("Items", [])
        return _public(_plain(items[0])) if items else None

    def history(self, model: str, alias: str = "production") -> list[dict]:
        """Audit events of one alias, oldest first (one query)."""
        items = self._query(TableName=self.audit_table_name, KeyConditionExpression="pk = :pk AND begins_with(sk, :e)",
                            ExpressionAttributeValues={":pk": {"S": f"MODEL#{_check_model(model)}"},
                                                       ":e": {"S": f"E#{_check_alias(alias)}#"}},
                            ConsistentRead=True)
        return [_public(i) for i in items]

    # ------------------------------------------------------------ lineage

    def versions_from_dataset(self, bucket: str, key: str, version_id: str) -> list[dict]:
        """Versions (of any model) trained on this exact S3 object version (one GSI query)."""
        items = self._query(IndexName="by-dataset", KeyConditionExpression="dataset_ref = :d",
                            ExpressionAttributeValues={":d": {"S": dataset_ref(bucket, key, version_id)}})
        return [self._record(i) for i in items]

    # ------------------------------------------------------------ releases (docs/release.md)

    def get_release(self, model: str) -> dict | None:
        """The release running now (the model item's ``release``), or None (one GetItem)."""
        resp = self.client.get_item(
            TableName=self.table_name, Key={"pk": {"S": _MODELS_PK}, "sk": {"S": _check_model(model)}},
            ProjectionExpression="#r", ExpressionAttributeNames={"#r": "release"}, ConsistentRead=True)
        return _plain(resp.get("Item", {})).get("release")

    def start_release(self, model: str, version: int, *, mode: str, release_id: str, expected_production: Any,
                      execution_arn: str, percent: float | None = None, bake: int | None = None,
                      tolerance: float | None = None, actor: str, reason: str) -> dict:
        """Start a canary or shadow release of `version`: the version becomes `canary`/`shadow` and the
        model item's ``release`` names it, in one transaction, only while production is still
        `expected_production` (what the gate compared against) and the version a candidate. A release
        running for another version is replaced (its loop finds it gone and ends). A retry with the same
        `release_id` changes nothing and returns the release. Appends ``release_started`` to the release log."""
        if mode not in RELEASE_MODES:
            raise ValueError(f"release mode must be one of {', '.join(RELEASE_MODES)}, got {mode!r}")
        version = int(version)
        current = self.get_release(model)
        if current and current.get("id") == release_id:
            return current
        release = {"id": release_id, "mode": mode, "version": version, "production": expected_production,
                   "percent": percent if mode == "canary" else None, "bake": bake, "started_at": utc_iso(),
                   "execution_arn": execution_arn}
        if mode == "shadow" and tolerance is not None:
            release["tolerance"] = tolerance  # a regression shadow agrees within it (the inference function reads it)
        names = {"#release": "release", "#aliases": "aliases", "#p": "production"}
        values = {":r": _av(release, "release"), ":now": {"S": release["started_at"]}}
        if expected_production is None:
            cond = "attribute_exists(sk) AND attribute_not_exists(#aliases.#p)"
        else:
            cond = "attribute_exists(sk) AND #aliases.#p = :p"
            values[":p"] = {"N": str(int(expected_production))}
        ops = [
            {"Update": {"TableName": self.table_name, "Key": {"pk": {"S": _MODELS_PK}, "sk": {"S": model}},
                        "UpdateExpression": "SET #release = :r, updated_at = :now", "ConditionExpression": cond,
                        "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}},
            {"Update": {"TableName": self.table_name,
                        "Key": {"pk": {"S": f"MODEL#{model}"}, "sk": {"S": _vsk(version)}},
                        "UpdateExpression": "SET #status = :mode, updated_at = :now",
                        "ConditionExpression": "#status = :candidate",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {":mode": {"S": mode}, ":candidate": {"S": "candidate"},
                                                      ":now": {"S": release["started_at"]}}}},
        ]
        try:
            self.client.transact_write_items(TransactItems=ops)
        except ClientError as e:
            if not _is_conditional_failure(e):
                raise
            production = self.get_alias(model)
            if production != expected_production:
                raise AliasConflict(f"model {model!r}: production is v{production}, not v{expected_production} "
                                    f"as when v{version} was validated; the release was not started") from None
            status = self.get_version(model, version)["status"]
            raise InvalidTransition(f"model {model!r} version {version} is {status!r}; only a candidate can start "
                                    f"a {mode} release") from None
        self.log_release_event(model, "release_started", version=version, actor=actor, reason=reason,
                               release=release)
        return release

    def end_release(self, model: str, release_id: str, *, reason: str, actor: str,
                    kind: str = "release_rolled_back") -> dict:
        """Roll a release back: remove it from the model item (only if it is still `release_id`) and
        reject its version with `reason`; production is untouched. ``ReleaseConflict`` when the release
        is no longer running (a promotion, rollback or newer release ended it). Appends `kind` to the
        release log. Returns the release that ended."""
        item = self._model_item(model) or {}
        release = item.get("release")
        if not release or release.get("id") != release_id:
            raise ReleaseConflict(f"model {model!r}: release {release_id} is no longer running (now: "
                                  f"{(release or {}).get('id')}); nothing was changed")
        try:
            self.client.update_item(
                TableName=self.table_name, Key={"pk": {"S": _MODELS_PK}, "sk": {"S": model}},
                UpdateExpression="REMOVE #release SET updated_at = :now",
                ConditionExpression="#release.id = :rid", ExpressionAttributeNames={"#release": "release"},
                ExpressionAttributeValues={":rid": {"S": release_id}, ":now": {"S": utc_iso()}})
        except ClientError as e:
            if not _is_conditional_failure(e):
                raise
            raise ReleaseConflict(f"model {model!r}: release {release_id} ended meanwhile; nothing was changed") \
                from None
        try:
            self.record_rejection(model, int(release["version"]), reason)
        except InvalidTransition:
            pass  # the version moved on (e.g. promoted by hand): its status says what happened to it
        self.log_release_event(model, kind, version=int(release["version"]), actor=actor, reason=reason,
                               release=release)
        return release

    def log_release_event(self, model: str, kind: str, *, version: int | None, actor: str,
                          reason: str | None = None, **detail: Any) -> dict:
        """Append one event to the model's release log (audit table, sk ``L#<at>#<8 hex>``; never edited):
        approvals asked for and decided, releases started, promoted, rolled back, superseded."""
        at = utc_iso()
        event = {"kind": kind, "model": _check_model(model), "version": version, "actor": actor, "reason": reason,
                 "at": at, **detail}
        self.client.put_item(
            TableName=self.audit_table_name,
            Item=_item({"pk": f"MODEL#{model}", "sk": f"{RELEASE_LOG_SK_PREFIX}{at}#{uuid.uuid4().hex[:8]}",
                        **event}),
            ConditionExpression="attribute_not_exists(sk)")
        return event

    def release_log(self, model: str) -> list[dict]:
        """The model's release log, oldest first (one query)."""
        items = self._query(TableName=self.audit_table_name,
                            KeyConditionExpression="pk = :pk AND begins_with(sk, :l)",
                            ExpressionAttributeValues={":pk": {"S": f"MODEL#{_check_model(model)}"},
                                                       ":l": {"S": RELEASE_LOG_SK_PREFIX}},
                            ConsistentRead=True)
        return [_public(i) for i in items]

    # ------------------------------------------------------------ manual approval (docs/release.md)

    def request_approval(self, model: str, version: int, *, task_token: str, execution_arn: str,
                         timeout_at: str | None, summary: dict | None = None) -> dict:
        """Ask for a decision on `version`: its approval item holds the Step Functions task token (kept
        off the version record, which the API serves); a candidate becomes `awaiting_approval` (a shadow
        stays `shadow`: it keeps scoring while people decide). A retry of the same execution writes the
        item again (a new token replaces the old); another execution's undecided request is replaced too."""
        version = int(version)
        now = utc_iso()
        item = {"kind": "approval", "model": _check_model(model), "version": version, "task_token": task_token,
                "execution_arn": execution_arn, "requested_at": now, "timeout_at": timeout_at,
                "summary": summary or {}}
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=_item({"pk": f"MODEL#{model}", "sk": f"{APPROVAL_SK_PREFIX}{version:010d}", **item}),
                ConditionExpression="attribute_not_exists(decision)")
        except ClientError as e:
            if not _is_conditional_failure(e):
                raise
            raise ApprovalError(f"model {model!r} version {version} was already decided; no new approval asked for") \
                from None
        status = self.get_version(model, version)["status"]
        if status == "candidate":
            self._transition(model, version, AWAITING_APPROVAL, ("candidate",), {})
        elif status not in (AWAITING_APPROVAL, "shadow"):
            raise InvalidTransition(f"model {model!r} version {version} is {status!r}; only a candidate or a shadow "
                                    "can await approval")
        return {k: v for k, v in item.items() if k != "task_token"}

    def mark_delivered(self, model: str, version: int) -> None:
        """The decision reached the waiting run (``SendTaskSuccess`` answered): it can no longer be re-sent."""
        self.client.update_item(
            TableName=self.table_name,
            Key={"pk": {"S": f"MODEL#{_check_model(model)}"}, "sk": {"S": f"{APPROVAL_SK_PREFIX}{int(version):010d}"}},
            UpdateExpression="SET delivered_at = :now", ConditionExpression="attribute_exists(decision)",
            ExpressionAttributeValues={":now": {"S": utc_iso()}})

    def record_approval(self, model: str, version: int) -> dict:
        """awaiting_approval -> candidate once approved (a retry finds it a candidate already): the run
        goes on to promote it or start its release."""
        return self._transition(model, version, "candidate", (AWAITING_APPROVAL, "candidate"), {})

    def get_approval(self, model: str, version: int) -> dict | None:
        """The version's approval item (with its task token), or None."""
        return self._get(f"MODEL#{_check_model(model)}", f"{APPROVAL_SK_PREFIX}{int(version):010d}")

    def decide(self, model: str, version: int, decision: str, *, actor: str, reason: str | None = None) -> dict:
        """Record a person's decision (``approve`` or ``reject``) on a version awaiting one, once: the
        first decision wins (conditional write), a second is ``ApprovalError`` naming the first. Returns
        the approval item with its task token, for the caller to hand to Step Functions. The same caller
        repeating the same decision before it was delivered (``mark_delivered``) gets the item again, so a
        send that failed can be retried instead of leaving the run waiting."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        version = int(version)
        try:
            resp = self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": f"MODEL#{_check_model(model)}"}, "sk": {"S": f"{APPROVAL_SK_PREFIX}{version:010d}"}},
                UpdateExpression="SET decision = :d, decided_by = :a, decision_reason = :r, decided_at = :now",
                ConditionExpression="attribute_exists(task_token) AND attribute_not_exists(decision)",
                ExpressionAttributeValues={":d": {"S": decision}, ":a": {"S": actor}, ":r": _av(reason, "reason"),
                                           ":now": {"S": utc_iso()}},
                ReturnValues="ALL_NEW")
        except ClientError as e:
            if not _is_conditional_failure(e):
                raise
            existing = self.get_approval(model, version)
            if existing is None:
                self.get_version(model, version)  # VersionNotFound for a version that does not exist
                raise ApprovalError(f"model {model!r} version {version} is not awaiting approval") from None
            if (existing.get("decision") == decision and existing.get("decided_by") == actor
                    and not existing.get("delivered_at")):
                return _public(existing)  # the same caller retrying a decision the run never received
            raise ApprovalError(f"model {model!r} version {version} was already decided: {existing.get('decision')} "
                                f"by {existing.get('decided_by')} at {existing.get('decided_at')}") from None
        return _public(_plain(resp["Attributes"]))
