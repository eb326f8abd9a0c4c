"""What the functions say when an object they read is missing (404) or refused (403): the object
as s3://bucket/key, and for a 403 the action that was denied (issue 12, finding 4: with ListBucket
granted without an s3:prefix condition, AWS answers a missing key 404, so these messages are the
ones users see)."""
from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from functions.core.artifacts import ArtifactUnreadable, describe_s3_error


def _denied(operation: str = "GetObject") -> ClientError:
    return ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                        "ResponseMetadata": {"HTTPStatusCode": 403}}, operation)


class _Refusing:
    """An S3 client whose reads are all refused (what a role without the grant gets)."""

    def head_object(self, **_):
        raise _denied("HeadObject")

    get_object = head_object


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bkt")
        client.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Enabled"})
        yield client


def test_a_missing_object_is_named(s3):
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket="bkt", Key="models/m/v1/model.onnx")
    text = describe_s3_error(info.value, "bkt", "models/m/v1/model.onnx")
    assert text.startswith("s3://bkt/models/m/v1/model.onnx does not exist: S3 answered NoSuchKey")
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket="bkt", Key="datasets/m/x.csv")  # HEAD: a bare 404
    text = describe_s3_error(info.value, "bkt", "datasets/m/x.csv")
    assert text.startswith("s3://bkt/datasets/m/x.csv does not exist")


def test_a_denied_read_names_the_action():
    assert describe_s3_error(_denied(), "bkt", "k") == (
        "s3://bkt/k cannot be read: access denied (s3:GetObject refused, AccessDenied); check the role's "
        "policy and the bucket policy")
    assert "(s3:GetObjectVersion refused" in describe_s3_error(_denied(), "bkt", "k", "v1")
    assert describe_s3_error(_denied(), "bkt", "k", "v1").startswith("s3://bkt/k (version v1) cannot be read")


def test_the_train_step_names_the_missing_or_refused_dataset(s3):
    from functions.core.dataset import DatasetError
    from functions.pipeline.steps import read_dataset

    version = s3.put_object(Bucket="bkt", Key="datasets/m/a.csv", Body=b"x,y\n1,2\n")["VersionId"]
    s3.delete_object(Bucket="bkt", Key="datasets/m/a.csv", VersionId=version)
    with pytest.raises(DatasetError, match=r"dataset s3://bkt/datasets/m/a\.csv \(version .*\) does not exist"):
        read_dataset(s3, {"bucket": "bkt", "key": "datasets/m/a.csv", "version_id": version}, 10**6)
    with pytest.raises(DatasetError, match=r"access denied \(s3:GetObjectVersion refused, AccessDenied\)"):
        read_dataset(_Refusing(), {"bucket": "bkt", "key": "datasets/m/a.csv", "version_id": version}, 10**6)


def test_a_pipeline_artifact_that_is_gone_is_named(s3):
    from functions.pipeline.steps import _verified

    with pytest.raises(ArtifactUnreadable, match=r"^s3://bkt/models/m/v2/holdout\.json does not exist"):
        _verified(s3, "bkt", {"key": "models/m/v2/holdout.json", "sha256": "0" * 64})
    with pytest.raises(ArtifactUnreadable, match=r"access denied \(s3:GetObjectVersion refused"):
        _verified(_Refusing(), "bkt", {"key": "models/m/v2/model.onnx", "sha256": "0" * 64, "version_id": "v9"})


def test_the_drift_check_names_a_missing_or_refused_baseline(s3):
    from functions.drift.check import BaselineMissing, DriftCheckError, load_baseline

    missing = r"no drift baseline at s3://bkt/models/m/v3/baseline\.json \(NoSuchKey\)"
    with pytest.raises(BaselineMissing, match=missing):
        load_baseline(s3, "bkt", "models/m/v3/baseline.json", "m", 3, "0" * 64)
    with pytest.raises(DriftCheckError, match=r"baseline s3://bkt/models/m/v3/baseline\.json cannot be read: access "
                                              r"denied \(s3:GetObject refused"):
        load_baseline(_Refusing(), "bkt", "models/m/v3/baseline.json", "m", 3, "0" * 64)
