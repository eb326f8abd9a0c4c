"""Pure pieces of the local cloud: intrinsic functions, creation order, event patterns, input templates."""
import pytest

from localcloud.clock import next_fire
from localcloud.events import matches, render_template, target_input
from localcloud.template import Resolver, Template, TemplateError, creation_order

EVENT = {"source": "aws.s3", "detail-type": "Object Created", "time": "2024-01-01T00:00:00Z",
         "detail": {"bucket": {"name": "data"}, "object": {"key": "datasets/iris/a.csv", "size": 10},
                    "tags": ["a", "b"]}}


def test_intrinsics_and_order():
    tpl = Template.from_dict({
        "Conditions": {"Yes": {"Fn::And": [{"Fn::Equals": ["a", "a"]}, {"Fn::Not": [{"Fn::Equals": [1, 2]}]}]}},
        "Mappings": {"M": {"us-east-1": {"v": "mapped"}}},
        "Resources": {"B": {"Type": "T", "Properties": {"X": {"Ref": "A"}}},
                      "A": {"Type": "T"}, "C": {"Type": "T", "DependsOn": "B",
                                                "Properties": {"S": {"Fn::Sub": "${A.Arn}-${B}"}}}}}, "S")
    assert creation_order(tpl.resources) == ["A", "B", "C"]
    r = Resolver(tpl)
    r.physical_ids.update(A="a", B="b")
    r.attributes.update(A={"Arn": "arn:a"}, B={})
    assert r.resolve({"Fn::Sub": "${A.Arn}/${B}/${AWS::Region}/${!Literal}"}) == "arn:a/b/us-east-1/${Literal}"
    assert r.resolve({"Fn::Sub": ["${x}-${AWS::AccountId}", {"x": {"Ref": "A"}}]}) == "a-123456789012"
    assert r.resolve({"Fn::Select": [1, {"Fn::Split": [",", "p,q"]}]}) == "q"
    assert r.resolve({"Fn::If": ["Yes", "y", {"Ref": "AWS::NoValue"}]}) == "y"
    no_value = {"Ref": "AWS::NoValue"}
    assert r.resolve({"k": {"Fn::If": ["Yes", no_value, 1]}, "l": [1, no_value]}) == {"l": [1]}
    assert r.resolve({"Fn::FindInMap": ["M", {"Ref": "AWS::Region"}, "v"]}) == "mapped"
    with pytest.raises(TemplateError, match="Nope"):
        r.resolve({"Ref": "Nope"}, "C.Properties")
    with pytest.raises(TemplateError, match="B.Missing"):
        r.resolve({"Fn::GetAtt": ["B", "Missing"]})


@pytest.mark.parametrize("pattern, expected", [
    ({"source": ["aws.s3"], "detail": {"object": {"key": [{"prefix": "datasets/"}]}}}, True),
    ({"detail": {"object": {"key": [{"prefix": "capture/"}]}}}, False),
    ({"detail": {"object": {"key": [{"suffix": ".csv"}]}}}, True),
    ({"detail": {"object": {"size": [{"numeric": [">", 5, "<=", 10]}]}}}, True),
    ({"detail": {"object": {"size": [{"numeric": [">", 10]}]}}}, False),
    ({"detail": {"bucket": {"name": [{"anything-but": ["data"]}]}}}, False),
    ({"detail": {"bucket": {"name": [{"anything-but": {"prefix": "x"}}]}}}, True),
    ({"detail": {"missing": [{"exists": False}]}}, True),
    ({"detail": {"bucket": [{"exists": True}]}}, False),  # exists applies to leaves
    ({"detail": {"tags": ["b"]}}, True),
    ({"detail-type": [{"equals-ignore-case": "object created"}]}, True),
    ({"detail": {"object": {"key": [{"wildcard": "datasets/*/a.csv"}]}}}, True),
    ({"$or": [{"source": ["x"]}, {"detail-type": ["Object Created"]}]}, True),
])
def test_event_patterns(pattern, expected):
    assert matches(pattern, EVENT) is expected


def test_input_transformations():
    t = {"InputTransformer": {"InputPathsMap": {"k": "$.detail.object.key", "s": "$.detail.object.size"},
                              "InputTemplate": '{"key": <k>, "size": <s>, "uri": "s3://x/<k>"}'}}
    assert target_input(t, EVENT) == {"key": "datasets/iris/a.csv", "size": 10, "uri": "s3://x/datasets/iris/a.csv"}
    assert target_input({"InputPath": "$.detail.bucket"}, EVENT) == {"name": "data"}
    assert target_input({"Input": '{"a": 1}'}, EVENT) == {"a": 1}
    assert render_template("key is <k>", {"k": "v"}) == "key is v"


def test_schedule_expressions():
    assert next_fire("rate(1 hour)", 0, 3599) is None and next_fire("rate(1 hour)", 0, 3600) == 3600
    assert next_fire("cron(0 12 * * ? *)", 0, 86400) == 12 * 3600
    assert next_fire("cron(15 * ? * MON-FRI *)", 0, 86400) == 900  # 1970-01-01 was a Thursday
    assert next_fire("cron(0 0 ? * SAT *)", 0, 86400 * 7) == 2 * 86400


@pytest.mark.parametrize("code, expected", [
    ("AccessDeniedException", "NO_PERMISSIONS"), ("StateMachineDoesNotExist", "NO_RESOURCE"),
    ("ResourceNotFoundException", "NO_RESOURCE"), ("ThrottlingException", "THROTTLING"),
    ("TooManyRequestsException", "THROTTLING"), ("ExecutionAlreadyExists", "RESOURCE_ALREADY_EXISTS"),
    ("InvalidExecutionInput", "INVALID_PARAMETER"), ("ServiceException", "SDK_CLIENT_ERROR"),
])
def test_dead_letters_carry_eventbridges_error_codes(code, expected):
    from botocore.exceptions import ClientError, EndpointConnectionError

    from localcloud.events import dead_letter_error_code

    assert dead_letter_error_code(ClientError({"Error": {"Code": code, "Message": "m"}}, "Op")) == expected
    assert dead_letter_error_code(EndpointConnectionError(endpoint_url="http://x")) == "CONNECTION_FAILURE"


def test_synthesizing_a_project_without_its_app_says_what_is_missing(tmp_path):
    import json

    from localcloud.cloud import synthesize

    (tmp_path / "cdk.json").write_text(json.dumps({"app": "python3 app.py", "context": {"shipyard": {}}}))
    with pytest.raises(TemplateError,
                       match=r"app\.py does not exist: the app cdk\.json names must be next to it"):
        synthesize(tmp_path)
