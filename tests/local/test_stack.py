"""The real Shipyard stack, synthesized and brought up locally, driven over HTTP and the AWS APIs."""
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

CONTRACT_OUTPUTS = {"ApiUrl", "DataBucketName", "ArtifactBucketName", "RegistryTableName", "AuditTableName",
                    "PipelineArn",
                    "AlarmTopicArn", "DashboardName"}


@pytest.fixture(scope="module")
def stack_cloud(shipyard_assembly):
    from localcloud import LocalCloud, Template

    lines = []
    cloud = LocalCloud(Template.load(shipyard_assembly), aws_port=0, api_port=0, clock=False, log=lines.append)
    cloud.log_lines = lines
    cloud.start()
    yield cloud
    cloud.stop()


def _get(url, sign=True):
    req = AWSRequest(method="GET", url=url)
    if sign:
        SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(req)
    return requests.get(url, headers=dict(req.headers), timeout=120)


def test_stack_outputs_via_describe_stacks(stack_cloud):
    stack = stack_cloud.client("cloudformation").describe_stacks(StackName="Shipyard")["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs == stack_cloud.outputs
    declared = set(stack_cloud.template.body["Outputs"])
    assert set(outputs) == declared and declared <= CONTRACT_OUTPUTS
    assert outputs["ApiUrl"] == f"{stack_cloud.api_url}/prod/"
    assert stack_cloud.warnings == [], stack_cloud.warnings


def test_get_models_over_signed_http_lists_the_configured_model(stack_cloud):
    r = _get(stack_cloud.outputs["ApiUrl"] + "models")
    assert r.status_code == 200, r.text
    assert {"name": "iris", "production": None} in r.json()["models"]
    assert _get(stack_cloud.outputs["ApiUrl"] + "models", sign=False).status_code == 403


def test_data_bucket_accepts_uploads_and_says_the_tls_statement_is_not_applied(stack_cloud):
    bucket = stack_cloud.outputs["DataBucketName"]
    put = stack_cloud.client("s3").put_object(Bucket=bucket, Key="datasets/iris/probe.csv", Body=b"a,b\n1,2\n")
    assert put["VersionId"]  # versioning is on
    assert any("TLS-only statement not applied" in note for note in stack_cloud.notes)
