"""STS GetCallerIdentity for the credentials in use, as AWS answers it.

The local cloud accepts any credentials (the process's, `testing`, …). moto knows the identity of
the access keys it issued (an IAM user's key, an AssumeRole session) and answers every other key
with one made-up identity, ``arn:aws:sts::<account>:user/moto``, whoever calls: not an ARN AWS
would give (IAM users are ``arn:aws:iam::…:user/<name>``) and the same for every key. `SEAM`
answers such a key as AWS answers an IAM user's long-term key: the local account's IAM user named
after the access key id (``arn:aws:iam::123456789012:user/testing`` for key ``testing``, characters
IAM does not allow in a user name replaced by ``-``), with a stable ``AIDA…`` user id derived from
the key; so each set of credentials has an identity of its own, and two keys never share one.
moto reads the access key of a request only when it looks like AWS's (20 upper-case letters and
digits; ``testing`` becomes ``AKIAEXAMPLE``), so STS requests take it from the SigV4 credential.
"""
from __future__ import annotations

import base64
import hashlib
import re

from .patches import Seam

_NOT_IN_USER_NAME = re.compile(r"[^\w+=,.@-]")
_SIGV4_KEY = re.compile(r"Credential=([^/,\s]+)/")


def identity_for_key(access_key_id: str, account_id: str, partition: str = "aws") -> tuple[str, str, str]:
    """(UserId, Arn, Account) of the IAM user the local cloud takes an unknown access key for."""
    name = _NOT_IN_USER_NAME.sub("-", access_key_id or "anonymous")[:64] or "anonymous"
    digest = base64.b32encode(hashlib.sha256((access_key_id or "").encode()).digest()).decode()
    return "AIDA" + digest[:17], f"arn:{partition}:iam::{account_id}:user/{name}", account_id


def _patch(seam: Seam) -> None:
    from moto.sts.models import STSBackend
    from moto.sts.responses import TokenResponse

    def get_access_key(self) -> str:
        match = _SIGV4_KEY.search(self.headers.get("Authorization") or "")
        return match.group(1) if match else seam["get_access_key"](self)

    def get_caller_identity(self, access_key_id: str, region: str) -> tuple[str, str, str]:
        user_id, arn, account_id = seam["get_caller_identity"](self, access_key_id, region)
        partition = arn.split(":", 2)[1]
        # moto's answer for a key it did not issue (moto 5.2: models.STSBackend.get_caller_identity)
        if user_id == "AKIAIOSFODNN7EXAMPLE" and arn == f"arn:{partition}:sts::{account_id}:user/moto":
            return identity_for_key(access_key_id, account_id, partition)
        return user_id, arn, account_id

    seam.replace(STSBackend, "get_caller_identity", get_caller_identity)
    seam.replace(TokenResponse, "get_access_key", get_access_key)


SEAM = Seam(_patch)
