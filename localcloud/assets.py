"""The cloud assembly's file assets in the local S3, where `cdk deploy` would have published them.

A template reads a file asset through S3 — a SageMaker training job's code tarball named in
``sagemaker_submit_directory``, a data file a custom resource copies — at the bucket and key its
``*.assets.json`` manifest names (``cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}``, the CDK
bootstrap bucket). `publish` creates those buckets, as ``cdk bootstrap`` would have, and uploads each
asset: packaging ``file`` as it is, ``zip`` the directory zipped.

Lambda code (a function's ``Code.S3Key``, a layer's ``Content.S3Key``) is skipped: the local cloud runs
functions from their asset directories and never reads their code from S3, and zipping the
functions' directories at every start would cost seconds for nothing.
"""
from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .template import FileAsset, Template

# Where Lambda resources name their code in S3 (type -> property holding {S3Bucket, S3Key}).
_LAMBDA_CODE = {"AWS::Lambda::Function": "Code", "AWS::Lambda::LayerVersion": "Content"}


def lambda_code_keys(template: Template) -> set[str]:
    """The S3 keys of the template's Lambda code (functions and layers)."""
    keys = set()
    for res in template.resources.values():
        prop = _LAMBDA_CODE.get(res.get("Type", ""))
        code = (res.get("Properties") or {}).get(prop) if prop else None
        if isinstance(code, dict) and isinstance(code.get("S3Key"), str):
            keys.add(code["S3Key"])
    return keys


def resolve(name: str, account: str, region: str) -> str:
    """A manifest's bucket name or key with the pseudo parameters the CDK leaves in it."""
    return (name.replace("${AWS::AccountId}", account).replace("${AWS::Region}", region)
            .replace("${AWS::Partition}", "aws"))


def _body(asset: FileAsset) -> bytes:
    if asset.packaging == "zip" and asset.source.is_dir():
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(asset.source.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(asset.source).as_posix())
        return buf.getvalue()
    return Path(asset.source).read_bytes()


def publish(template: Template, s3: Any, account: str, region: str) -> list[str]:
    """Upload the template's file assets (but Lambda code) to their buckets; returns their s3:// URLs."""
    return _publish(template.file_assets, lambda_code_keys(template), s3, account, region)


def _publish(assets: Iterable[FileAsset], skip: set[str], s3: Any, account: str, region: str) -> list[str]:
    made: set[str] = set()
    urls = []
    for asset in assets:
        if asset.key in skip:
            continue
        bucket, key = resolve(asset.bucket, account, region), resolve(asset.key, account, region)
        if not os.path.exists(asset.source):
            raise FileNotFoundError(f"file asset {key}: {asset.source} does not exist (is the cloud assembly "
                                    "complete? synthesize it again)")
        if bucket not in made:
            _create_bucket(s3, bucket, region)
            made.add(bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=_body(asset))
        urls.append(f"s3://{bucket}/{key}")
    return urls


def _create_bucket(s3: Any, bucket: str, region: str) -> None:
    from botocore.exceptions import ClientError

    kwargs: dict[str, Any] = {} if region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": region}}
    try:
        s3.create_bucket(Bucket=bucket, **kwargs)
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
