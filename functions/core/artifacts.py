"""Artifacts in S3, written once with their sha256 digest and read back against it.

The artifacts bucket is versioned: an artifact is written once (``IfNoneMatch="*"``: S3 refuses
to overwrite the key) and the registry records the object version the write created. Readers
ask for exactly that version, so an object written over the key later (by mistake or on purpose)
is never read; the sha256 check catches a version that is not what was recorded.
"""
from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import ClientError


class IntegrityError(Exception):
    """An artifact's bytes do not have the digest the registry recorded for them."""


class ArtifactConflict(Exception):
    """The key already holds an artifact with other bytes: artifacts are written once."""


class ArtifactUnreadable(Exception):
    """An artifact the registry names is missing (404) or may not be read (403): the message names
    the object and, for a 403, the action that was denied (``describe_s3_error``)."""


# S3's answers for a missing object or version (GetObject says NoSuchKey/NoSuchVersion, HeadObject
# only its status) and for a refused request.
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden"})


def describe_s3_error(err: ClientError, bucket: str, key: str, version_id: str | None = None,
                      action: str | None = None) -> str:
    """What went wrong reading ``s3://bucket/key``, for a message a person acts on.

    404 → the object (or that version) does not exist; 403 → access was denied, naming the action
    (default ``s3:GetObject``, ``s3:GetObjectVersion`` with a version id: what GetObject and
    HeadObject are authorized as). Whether S3 answers 404 at all depends on the reader being
    allowed ``s3:ListBucket`` on the bucket (else a missing key is a 403 too)."""
    error = err.response.get("Error", {})
    code = str(error.get("Code", "") or err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    where = f"s3://{bucket}/{key}" + (f" (version {version_id})" if version_id and version_id != "null" else "")
    if code in NOT_FOUND_CODES:
        what = "that version" if code == "NoSuchVersion" else "the object"
        return f"{where} does not exist: S3 answered {code} ({what} was deleted, overwritten or never written)"
    if code in ACCESS_DENIED_CODES:
        action = action or ("s3:GetObjectVersion" if version_id and version_id != "null" else "s3:GetObject")
        return (f"{where} cannot be read: access denied ({action} refused, {code}); check the role's "
                "policy and the bucket policy")
    message = error.get("Message") or str(err)
    return f"{where} cannot be read: {code or 'error'} ({message})"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_artifact(s3, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
    """Upload ``data`` and return its sha256 (hex), to be recorded in the registry."""
    return write_artifact(s3, bucket, key, data, content_type)["sha256"]


def write_artifact(s3, bucket: str, key: str, data: bytes,
                   content_type: str = "application/octet-stream") -> dict[str, Any]:
    """Write ``data`` to ``key`` once; ``{"key", "sha256", "version_id"}`` to record in the registry.

    The write is conditional (``IfNoneMatch="*"``). When the key exists already — a retried
    Train step — the artifact there is accepted if its bytes have the same sha256 (the write is
    idempotent) and ArtifactConflict is raised otherwise. ``version_id`` is ``None`` only in an
    unversioned bucket."""
    digest = sha256_hex(data)
    try:
        # The digest travels as metadata too, so a human looking at the object can check it.
        resp = s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                             Metadata={"sha256": digest}, IfNoneMatch="*")
        return {"key": key, "sha256": digest, "version_id": resp.get("VersionId")}
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
            raise
    existing = s3.get_object(Bucket=bucket, Key=key)
    found = sha256_hex(existing["Body"].read())
    if found != digest:
        raise ArtifactConflict(
            f"artifact s3://{bucket}/{key} already exists with other bytes (sha256 {found}, this write's "
            f"{digest}); artifacts are written once and never overwritten") from None
    return {"key": key, "sha256": digest, "version_id": existing.get("VersionId")}


def get_verified(s3, bucket: str, key: str, expected_sha256: str, version_id: str | None = None) -> bytes:
    """The artifact's bytes, only if their sha256 is ``expected_sha256``; IntegrityError otherwise.

    With ``version_id`` (what the registry recorded) exactly that object version is read, whatever
    was written over the key since; without it (versions recorded before version ids were), the
    key's current object."""
    extra = {"VersionId": str(version_id)} if version_id else {}
    data = s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
    actual = sha256_hex(data)
    if not expected_sha256 or actual != str(expected_sha256).lower():
        where = f"s3://{bucket}/{key}" + (f"?versionId={version_id}" if version_id else "")
        raise IntegrityError(
            f"artifact {where} failed its sha256 check: expected {expected_sha256 or '<none recorded>'}, "
            f"got {actual}"
        )
    return data
