"""The `shipyard` CLI against a stack found through CloudFormation outputs (moto) and a signed API."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto import mock_aws

from functions.core.registry import Registry
from infra import cli

REGISTRY_TEMPLATE = {
    "Resources": {
        "Registry": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                    {"AttributeName": "dataset_ref", "AttributeType": "S"},
                    {"AttributeName": "version_ref", "AttributeType": "S"},
                ],
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "GlobalSecondaryIndexes": [{
                    "IndexName": "by-dataset",
                    "KeySchema": [
                        {"AttributeName": "dataset_ref", "KeyType": "HASH"},
                        {"AttributeName": "version_ref", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }],
            },
        }
    },
    "Outputs": {"RegistryTableName": {"Value": {"Ref": "Registry"}}},
}


@pytest.fixture
def stack(tmp_path, monkeypatch):
    """A CloudFormation stack named 'Shipyard' with a registry table, and a cdk.json naming model iris."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cdk.json").write_text(json.dumps(
        {"context": {"shipyard": {"models": {"iris": {"target": "species"}}}}}))
    with mock_aws():
        cfn = boto3.client("cloudformation")
        cfn.create_stack(StackName="Shipyard", TemplateBody=json.dumps(REGISTRY_TEMPLATE))
        outputs = {o["OutputKey"]: o["OutputValue"]
                   for o in cfn.describe_stacks(StackName="Shipyard")["Stacks"][0]["Outputs"]}
        yield Registry(outputs["RegistryTableName"], known_models=["iris"])


def _candidate(registry, model="iris"):
    version = registry.allocate_version(model, estimator="sklearn.linear_model.LogisticRegression")["version"]
    registry.record_candidate(model, version, artifact_key=f"models/{model}/v{version}/model.onnx",
                              artifact_sha256="0" * 64, schema={"features": []}, metrics={"accuracy": 0.9})
    return version


def test_models_lists_configured_models_before_their_first_version(stack, capsys):
    assert cli.main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"models": [{"name": "iris", "production": None}]}


def test_promote_rollback_and_lineage_show_the_audit_trail(stack, capsys):
    v1, v2 = _candidate(stack), _candidate(stack)
    assert cli.main(["promote", "iris", str(v1), "--reason", "first"]) == 0
    assert cli.main(["promote", "iris", str(v2)]) == 0
    assert stack.get_alias("iris") == v2
    assert cli.main(["rollback", "iris", "--reason", "v2 misbehaves"]) == 0
    assert stack.get_alias("iris") == v1
    capsys.readouterr()

    assert cli.main(["lineage", "iris", "--json"]) == 0
    lineage = json.loads(capsys.readouterr().out)
    moves = [(e["from_version"], e["to_version"], e["reason"]) for e in lineage["history"]]
    assert moves == [(None, v1, "first"), (v1, v2, "promoted by hand"), (v2, v1, "v2 misbehaves")]
    # the actor is the caller's AWS identity (moto's STS answer for the mock's credentials)
    assert {e["actor"] for e in lineage["history"]} == {"arn:aws:sts::123456789012:user/moto"}
    assert [e["kind"] for e in lineage["history"]] == ["promote", "promote", "rollback"]

    assert cli.main(["lineage", "iris"]) == 0
    text = capsys.readouterr().out
    assert "v2 misbehaves" in text and f"v{v2} -> v{v1}" in text


def test_promote_of_a_missing_version_fails_cleanly(stack, capsys):
    assert cli.main(["promote", "iris", "7"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("shipyard: ") and "7" in err and "Traceback" not in err
    assert stack.get_alias("iris") is None


def test_promoting_the_serving_version_changes_nothing_and_says_so(stack, capsys):
    v1 = _candidate(stack)
    assert cli.main(["promote", "iris", str(v1)]) == 0
    capsys.readouterr()
    for _ in range(2):  # a retried promote script
        assert cli.main(["promote", "iris", str(v1)]) == 0
        assert capsys.readouterr().out == f"iris: v{v1} already serves production; nothing changed\n"
    assert len(stack.history("iris")) == 1


def test_rollbacks_walk_back_through_the_versions_that_served(stack, capsys):
    v1, v2, v3 = (_candidate(stack) for _ in range(3))
    for v in (v1, v2, v3):
        assert cli.main(["promote", "iris", str(v)]) == 0
    capsys.readouterr()
    assert cli.main(["rollback", "iris"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"iris: production v{v3} -> v{v2} (event #4, rollback by arn:aws:")
    assert cli.main(["rollback", "iris"]) == 0
    assert f"v{v2} -> v{v1}" in capsys.readouterr().out
    assert cli.main(["rollback", "iris"]) == 1
    err = capsys.readouterr().err
    assert err == (f"shipyard: model 'iris': no version served production before v{v1}; "
                   "there is nothing to roll back to\n")
    assert stack.get_alias("iris") == v1 and len(stack.history("iris")) == 5


def test_rollback_to_names_a_version_and_refuses_others(stack, capsys):
    v1, v2, v3, v4 = (_candidate(stack) for _ in range(4))
    for v in (v1, v2, v3):
        assert cli.main(["promote", "iris", str(v)]) == 0
    capsys.readouterr()
    assert cli.main(["rollback", "iris", "--to", str(v4)]) == 1
    assert capsys.readouterr().err == (
        f"shipyard: model 'iris': v{v4} is not on production's rollback path (versions that served before "
        f"v{v3} and were not rolled back from: v{v2}, v{v1}); `promote` makes any validated version production\n")
    assert cli.main(["rollback", "iris", "--to", str(v1), "--reason", "v2 and v3 are bad"]) == 0
    assert f"v{v3} -> v{v1}" in capsys.readouterr().out
    last = stack.last_event("iris")
    assert (last["kind"], last["reason"], last["to_version"]) == ("rollback", "v2 and v3 are bad", v1)
    assert cli.main(["rollback", "iris"]) == 1
    assert "nothing to roll back to" in capsys.readouterr().err


def test_rollback_with_no_production_version_is_a_clear_error(stack, capsys):
    assert cli.main(["rollback", "iris"]) == 1
    assert capsys.readouterr().err == ("shipyard: model 'iris' has no production version; "
                                       "there is nothing to roll back\n")


def test_no_alias_move_when_sts_cannot_say_who_the_caller_is(stack, capsys, monkeypatch):
    from botocore.client import BaseClient
    from botocore.exceptions import EndpointConnectionError

    v1 = _candidate(stack)
    real = BaseClient._make_api_call

    def sts_unreachable(self, operation, params):
        if operation == "GetCallerIdentity":
            raise EndpointConnectionError(endpoint_url="https://sts.amazonaws.com/")
        return real(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", sts_unreachable)
    assert cli.main(["promote", "iris", str(v1)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("shipyard: cannot tell who you are (STS GetCallerIdentity failed: Could not connect")
    assert "nothing was changed" in err
    assert stack.get_alias("iris") is None and stack.history("iris") == []


def test_missing_stack_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        assert cli.main(["--stack", "Nope", "models"]) == 1
    err = capsys.readouterr().err
    assert "'Nope' not found" in err and "cdk deploy" in err


def test_read_instances_from_csv_and_json(tmp_path):
    from infra.predict import PredictError, read_table

    csv_file = tmp_path / "x.csv"
    csv_file.write_text("a,colour\n1.5,red\n,blue\n")
    assert read_table(csv_file).instances == [{"a": 1.5, "colour": "red"}, {"a": None, "colour": "blue"}]
    json_file = tmp_path / "x.json"
    json_file.write_text(json.dumps({"instances": [[1, "red"]]}))
    assert read_table(json_file).instances == [[1, "red"]]
    for name, text, expected in [("empty.csv", "", "header row"), ("bad.json", "{", "not valid JSON"),
                                 ("obj.json", '{"x": 1}', "instances"), ("x.txt", "a", ".csv or .json")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(PredictError, match=expected):
            read_table(tmp_path / name)


def test_read_instances_csv_follows_the_training_data_rules(tmp_path):
    import gzip

    from infra.predict import read_table

    expected = [{"a": 1.5, "colour": "red"}, {"a": None, "colour": None}, {"a": 2.0, "colour": "blue"}]
    # A BOM (Excel's "CSV UTF-8"), semicolons, and pandas' missing markers.
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfa;colour\r\n1.5;red\r\nNA;null\r\n2;blue\r\n")
    assert read_table(bom).instances == expected
    tab = tmp_path / "tab.csv"
    tab.write_text("a\tcolour\n1.5\tred\nN/A\t\n2\tblue\n")
    assert read_table(tab).instances == expected
    packed = tmp_path / "x.csv.gz"
    packed.write_bytes(gzip.compress(b"a|colour\n1.5|red\n#N/A|None\n2|blue\n"))
    assert read_table(packed).instances == expected
    # Values stay text unless they are plain numbers: "1_000" and "inf" are sent as written.
    text = tmp_path / "text.csv"
    text.write_text("a,b\n1_000,inf\n")
    assert read_table(text).instances == [{"a": "1_000", "b": "inf"}]


@pytest.mark.parametrize("content, expected", [
    (b"a,b\n1,2,3\n", "line 2 has 3 fields, expected 2"),
    (b",a,b\n0,1,2\n", "looks like an index column written by pandas"),
    (b"a,b\n\xe9,1\n", "not UTF-8"),
    (b"\x1f\x8b\x08junk", "gzip"),
])
def test_read_instances_csv_errors_name_the_file_and_the_problem(tmp_path, content, expected):
    from infra.predict import PredictError, read_table

    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(PredictError, match=expected) as exc:
        read_table(path)
    assert str(exc.value).startswith(f"{path}: ")


class _SigV4CheckingApi(BaseHTTPRequestHandler):
    """An API stand-in that recomputes the SigV4 signature the way API Gateway does."""
    seen: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        url = f"http://{self.headers['Host']}{self.path}"
        replay = AWSRequest(method="POST", url=url, data=body, headers={
            "Content-Type": self.headers["Content-Type"], "Accept": self.headers["Accept"],
            "X-Amz-Date": self.headers["X-Amz-Date"], "X-Amz-Security-Token": self.headers["X-Amz-Security-Token"]})
        signer = SigV4Auth(Credentials("testing", "testing", "testing"), "execute-api", "us-east-1")
        replay.context["timestamp"] = self.headers["X-Amz-Date"]
        signer.add_auth(replay)
        valid = replay.headers["Authorization"] == self.headers.get("Authorization")
        self.seen.append({"path": self.path, "body": json.loads(body), "valid": valid})
        status, answer = (200, {"model": "iris", "version": 3, "predictions": ["setosa"],
                                "probabilities": [[0.9, 0.05, 0.05]], "classes": ["setosa", "b", "c"]}) \
            if valid else (403, {"message": "The request signature we calculated does not match"})
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def signed_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SigV4CheckingApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _SigV4CheckingApi.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_predict_sends_a_valid_sigv4_signature(signed_api, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "x.csv"
    data.write_text("sepal_length,colour\n5.1,red\n")
    assert cli.main(["predict", "iris", str(data), "--api-url", signed_api, "--auth", "iam",
                     "--version", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 3
    (seen,) = _SigV4CheckingApi.seen
    assert seen["valid"] and seen["path"] == "/models/iris/predict?version=3"
    assert seen["body"] == {"instances": [{"sepal_length": 5.1, "colour": "red"}]}


def test_predict_reports_the_api_error(signed_api, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")  # a bad signature: the API refuses it
    data = tmp_path / "x.json"
    data.write_text('[{"a": 1}]')
    assert cli.main(["predict", "iris", str(data), "--api-url", signed_api, "--auth", "iam"]) == 1
    assert "403" in capsys.readouterr().err


def test_aws_region_is_honoured_and_a_missing_region_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert cli.main(["models"]) == 1
    err = capsys.readouterr().err
    assert "region" in err and "AWS_REGION" in err and "Traceback" not in err

    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    with mock_aws():
        assert cli.main(["models"]) == 1  # no stack there, but the region was used
    assert "'Shipyard' not found" in capsys.readouterr().err


def test_predict_leaves_out_the_target_column_of_a_training_shaped_csv(signed_api, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"context": {"shipyard": {"models": {"iris": {"target": "species"}}}}}
    (tmp_path / "cdk.json").write_text(json.dumps(config))
    data = tmp_path / "train.csv"
    data.write_text("sepal_length,species\n5.1,setosa\n")
    assert cli.main(["predict", "iris", str(data), "--api-url", signed_api, "--auth", "iam"]) == 0
    assert _SigV4CheckingApi.seen[-1]["body"] == {"instances": [{"sepal_length": 5.1}]}
    assert "leaving out column 'species'" in capsys.readouterr().err


def test_layers_build_defaults_to_the_configured_architecture(tmp_path, monkeypatch):
    from layers import builder

    seen = []
    monkeypatch.setattr(builder, "main", lambda argv: seen.append(argv) or 0)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"shipyard": {"architecture": "x86_64"}}}))
    assert cli.main(["layers", "build"]) == 0
    assert cli.main(["layers", "build", "--arch", "arm64", "--layer", "inference"]) == 0
    assert seen == [["build", "--arch", "x86_64"], ["build", "--arch", "arm64", "--layer", "inference"]]


def test_a_typo_in_the_model_name_names_the_model_meant(tmp_path, monkeypatch, capsys):
    # found by hand: `shipyard batch penguin nightly.csv` said only "not configured"
    from infra import cli

    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"shipyard": {
        "stack_name": "S", "models": {"penguins": {"target": "species"}, "iris": {"target": "species"}}}}}))
    (tmp_path / "x.csv").write_text("a\n1\n")
    monkeypatch.chdir(tmp_path)
    for argv in (["batch", "penguin", "x.csv"], ["train", "Penguin"]):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert "is not configured in cdk.json (configured: penguins, iris); did you mean 'penguins'?" in err, err
    assert cli.main(["batch", "zzz", "x.csv"]) == 1
    assert "did you mean" not in capsys.readouterr().err
