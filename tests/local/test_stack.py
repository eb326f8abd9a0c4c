"""The real Shipyard stack, synthesized and brought up locally, driven over HTTP and the AWS APIs."""
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

CONTRACT_OUTPUTS = {"ApiUrl", "DataBucketName", "ArtifactBucketName", "RegistryTableName", "AuditTableName",
                    "PipelineArn", "BatchStateMachineArn",
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


def _post(url, body: bytes):
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(req)
    return requests.post(url, data=body, headers=dict(req.headers), timeout=120)


def test_a_container_that_answered_409_serves_the_promoted_model_after_a_get(stack_cloud):
    """Issue 11's sequence, over signed HTTP on the local cloud: predict before any version (409),
    train and promote from an upload, GET the model, predict serves the promoted version from the
    same warm container (it used to answer 409 for up to 60 s). Which of the two rules let it through
    here (the 2 s limit on a cached 409, or the GET's refresh) is pinned down with a clock in
    tests/unit/test_inference_api.py."""
    import json

    from tests import realdata

    api = stack_cloud.outputs["ApiUrl"]
    body = json.dumps({"instances": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                                      "petal_width": 0.2}]}).encode()
    if _get(api + "models/iris").json()["aliases"].get("production") is None:
        assert _post(api + "models/iris/predict", body).status_code == 409
    iris = realdata.sklearn_csv("iris").decode().replace("sepal_length_(cm)", "sepal_length")
    iris = iris.replace("sepal_width_(cm)", "sepal_width").replace("petal_length_(cm)", "petal_length")
    iris = iris.replace("petal_width_(cm)", "petal_width").replace(",target\n", ",species\n", 1)
    stack_cloud.client("s3").put_object(Bucket=stack_cloud.outputs["DataBucketName"],
                                        Key="datasets/iris/iris.csv", Body=iris.encode())
    stack_cloud.wait_for_executions(stack_cloud.outputs["PipelineArn"], timeout=240)
    model = _get(api + "models/iris").json()  # the GET that refreshes this container
    assert model["aliases"]["production"] is not None, model
    answer = _post(api + "models/iris/predict", body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == model["aliases"]["production"]
    assert answer.json()["predictions"] == ["setosa"]
