"""Artifacts in S3, written with and read against their sha256 digest."""
from __future__ import annotations

import hashlib


class IntegrityError(Exception):
    """An artifact's bytes do not have the digest the registry recorded for them."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_artifact(s3, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
    """Upload ``data`` and return its sha256 (hex), to be recorded in the registry."""
    digest = sha256_hex(data)
    # The digest travels as metadata too, so a human looking at the object can check it.
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, Metadata={"sha256": digest})
    return digest


def get_verified(s3, bucket: str, key: str, expected_sha256: str) -> bytes:
    """The artifact's bytes, only if their sha256 is ``expected_sha256``; IntegrityError otherwise."""
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    actual = sha256_hex(data)
    if not expected_sha256 or actual != str(expected_sha256).lower():
        raise IntegrityError(
            f"artifact s3://{bucket}/{key} failed its sha256 check: expected {expected_sha256 or '<none recorded>'}, "
            f"got {actual}"
        )
    return data
