"""localcloud.state.capture against moto's backends in this process: what a save reads while
requests go on changing the data."""
from __future__ import annotations

import pickle
import types

import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket="plain")  # unversioned: an overwrite lets the old object go
        yield client


def test_an_object_replaced_while_it_is_saved_is_not_saved_empty(s3, monkeypatch):
    from localcloud import state

    s3.put_object(Bucket="plain", Key="k", Body=b"first")
    cloud = types.SimpleNamespace(region=REGION, physical_ids={"Logs": "plain"},
                                  template=types.SimpleNamespace(resources={"Logs": {"Type": "AWS::S3::Bucket"}}))
    calls = []

    def dumps(obj, protocol=None):
        if not calls:  # a PutObject lands between the listing of the versions and their pickling
            s3.put_object(Bucket="plain", Key="k", Body=b"second")
        calls.append(obj)
        return pickle.dumps(obj, protocol=protocol)

    monkeypatch.setattr(state, "pickle", types.SimpleNamespace(dumps=dumps, HIGHEST_PROTOCOL=pickle.HIGHEST_PROTOCOL))
    saved = pickle.loads(state.capture(cloud)["s3"]["Logs"])
    (version,) = saved["versions"]["k"]
    assert version.value in (b"first", b"second"), version.value
