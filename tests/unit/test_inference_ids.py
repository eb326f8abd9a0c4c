"""Inference ids (issue 16): every prediction answered and captured with an id, the caller's or generated.

Through the Lambda handler (the serving resolver, ``plain.py``'s fast path) and the validating resolver
(``openapi.py``) alike, with real ONNX models; DynamoDB and S3 are moto, Firehose a recorder.
"""
import json

import boto3
import pytest
from moto import mock_aws

from functions.core.artifacts import write_artifact
from functions.core.capture import Capture
from functions.core.registry import Registry
from functions.inference import handler, service
from functions.inference.openapi import openapi_schema, validating_app
from tests import models
from tests.models import LambdaContext, rest_event
from tests.support import RecordingFirehose, create_artifact_bucket, create_registry_table

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")
MODELS = ["iris", "prices"]


Firehose = RecordingFirehose


@pytest.fixture(scope="module")
def clf():
    return models.classifier()


@pytest.fixture(scope="module")
def reg():
    return models.regressor()


@pytest.fixture(scope="module")
def aws(clf, reg):
    mp = pytest.MonkeyPatch()
    with mock_aws():
        ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
        create_registry_table(ddb)
        create_artifact_bucket(s3)
        mp.setenv("REGISTRY_TABLE", "registry")
        mp.setenv("ARTIFACT_BUCKET", "artifacts")
        mp.setenv("SHIPYARD_MODELS", json.dumps(MODELS))
        mp.setenv("CAPTURE_STREAMS", "{}")
        registry = Registry("registry", client=ddb, known_models=MODELS)
        for name, trained in (("iris", clf), ("prices", reg)):
            version = registry.allocate_version(name, estimator="test", params={})["version"]
            key = f"models/{name}/v{version}/model.onnx"
            written = write_artifact(s3, "artifacts", key, trained.onnx)
            registry.record_candidate(name, version, artifact_key=key, artifact_sha256=written["sha256"],
                                      artifact_version_id=written["version_id"], schema=trained.schema.to_dict(),
                                      metrics={"accuracy": 0.9})
            registry.promote(name, version, reason="test", actor="tests")
        yield
    mp.undo()


@pytest.fixture
def firehose(aws):
    recorder = Firehose()
    service.reset(capture=Capture({"iris": "cap-iris", "prices": "cap-prices"}, client=recorder))
    yield recorder
    service.reset()


def event_of(body, *, request_id="req-1", name="iris", query=None):
    text = body if isinstance(body, str) else json.dumps(body)
    event = rest_event("POST", f"/models/{name}/predict", body=text, query=query)
    if request_id is None:
        del event["requestContext"]["requestId"]
    else:
        event["requestContext"]["requestId"] = request_id
    return event


def serve(event):
    """The handler's answer (it chooses the resolver) as (status, body)."""
    response = handler.lambda_handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def validate(event):
    """The validating resolver's answer to the same event."""
    response = validating_app().resolve(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


BOTH = pytest.mark.parametrize("call", [serve, validate], ids=["serving", "validating"])


# ---- generated ids ------------------------------------------------------------------------------


@BOTH
def test_generated_ids_are_the_request_id_and_the_index(firehose, clf, call):
    status, body = call(event_of({"instances": clf.records(4)}, request_id="7c6f0e1a-req"))
    assert status == 200, body
    assert body["inference_ids"] == ["7c6f0e1a-req-0", "7c6f0e1a-req-1", "7c6f0e1a-req-2", "7c6f0e1a-req-3"]
    assert firehose.lines[-1]["inference_ids"] == body["inference_ids"]


def test_generated_ids_are_unique_across_instances_and_requests(firehose, clf):
    seen = []
    for _ in range(5):  # rest_event gives each request its own API Gateway request id (a UUID)
        status, body = serve(event_of({"instances": clf.records(30)}, request_id=rest_event("GET", "/")[
            "requestContext"]["requestId"]))
        assert status == 200
        seen += body["inference_ids"]
    assert len(seen) == 150 == len(set(seen))


def test_without_a_request_id_the_ids_are_a_random_hex_and_the_index(firehose, clf):
    _, a = serve(event_of({"instances": clf.records(2)}, request_id=None))
    _, b = serve(event_of({"instances": clf.records(2)}, request_id=None))
    prefix = a["inference_ids"][0].rsplit("-", 1)[0]
    assert len(prefix) == 32 and int(prefix, 16) >= 0
    assert a["inference_ids"] == [f"{prefix}-0", f"{prefix}-1"]
    assert not set(a["inference_ids"]) & set(b["inference_ids"])


@BOTH
def test_null_ids_are_ids_not_sent(firehose, clf, call):
    status, body = call(event_of({"instances": clf.records(2), "ids": None}, request_id="r"))
    assert status == 200 and body["inference_ids"] == ["r-0", "r-1"]


# ---- the caller's ids ---------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize("shape", ["records", "arrays"])
def test_caller_ids_are_answered_and_captured_in_order(firehose, clf, call, shape):
    instances = clf.records(3) if shape == "records" else clf.arrays(3)
    ids = ["order-9", "order-1", "ü 17"]
    status, body = call(event_of({"instances": instances, "ids": ids}))
    assert status == 200, body
    assert body["inference_ids"] == ids
    line = firehose.lines[-1]
    assert line["inference_ids"] == ids and line["instances"] == instances
    assert line["predictions"] == body["predictions"]


def test_the_fast_path_takes_requests_with_ids(firehose, clf):
    body = {"instances": clf.records(2), "ids": ["a", "b"]}
    resolver, context = handler.resolver_for(event_of(body))
    assert resolver is handler.app and context["prediction"].ids == ["a", "b"]
    # bad ids are still the fast path's (service.inference_ids words the 400 on both)
    resolver, _ = handler.resolver_for(event_of({"instances": [], "ids": 3}))
    assert resolver is handler.app
    # another key beside them is not plainly valid: pydantic's message
    resolver, _ = handler.resolver_for(event_of({"instances": [], "ids": [], "x": 1}))
    assert resolver is not handler.app


BAD_IDS = [
    (["a", "b", "c"], '"ids" has 3 entries but "instances" has 4; send one id per instance'),
    (["a"], '"ids" has 1 entry but "instances" has 4; send one id per instance'),
    (["a", "b", "c", "a"], "ids[3] is repeated (the same as ids[0]); ids must be unique within a request"),
    (["a", "b", "b", "b"], "ids[2] is repeated (the same as ids[1])"),
    ([17, "b", "c", "d"], 'ids[0] must be a string of 1 to 128 printable characters, got a number: '
                          'send ids as strings, e.g. "17"'),
    (["a", 2.5, "c", "d"], 'ids[1] must be a string of 1 to 128 printable characters, got a number: '
                           'send ids as strings, e.g. "2.5"'),
    (["", "b", "c", "d"], "ids[0] must be a string of 1 to 128 printable characters, got an empty string"),
    (["a", "b", "x" * 129, "d"], "ids[2] must be a string of 1 to 128 printable characters, got 129 characters"),
    (["a", "b", "c", "tab\there"], "ids[3] must be a string of 1 to 128 printable characters, got a string "
                                   "with unprintable characters"),
    (["a", None, "c", "d"], "ids[1] must be a string of 1 to 128 printable characters, got null"),
    (["a", "b", True, "d"], "ids[2] must be a string of 1 to 128 printable characters, got a boolean"),
    (["a", "b", "c", ["d"]], "ids[3] must be a string of 1 to 128 printable characters, got an array"),
    ("abcd", '"ids" must be a list of strings, one per instance (got a string)'),
    ({"0": "a"}, '"ids" must be a list of strings, one per instance (got an object)'),
    (4, '"ids" must be a list of strings, one per instance (got a number)'),
]


@BOTH
@pytest.mark.parametrize("ids, message", BAD_IDS)
def test_bad_ids_are_a_400_that_says_what_was_expected_and_nothing_is_captured(firehose, clf, call, ids, message):
    status, body = call(event_of({"instances": clf.records(4), "ids": ids}))
    assert status == 400 and set(body) == {"message"}, body
    assert message in body["message"]
    assert firehose.lines == []


@pytest.mark.parametrize("ids, message", BAD_IDS[:5])
def test_both_resolvers_word_bad_ids_alike(firehose, clf, ids, message):
    event = event_of({"instances": clf.arrays(4), "ids": ids})
    assert serve(event) == validate(event)


def test_an_id_of_128_printable_characters_is_accepted(firehose, clf):
    ids = ["x" * 128, "  spaced  ", "é✓", "17"]
    status, body = serve(event_of({"instances": clf.records(4), "ids": ids}))
    assert status == 200 and body["inference_ids"] == ids


# ---- the capture line ---------------------------------------------------------------------------


def test_the_capture_line_aligns_ids_instances_predictions_probabilities_and_classes(firehose, clf, reg):
    instances = clf.records(5)
    status, body = serve(event_of({"instances": instances}, request_id="cap"))
    assert status == 200
    line = firehose.lines[-1]
    assert set(line) == {"model", "version", "captured_at", "inference_ids", "instances", "predictions",
                         "probabilities", "classes"}
    assert line["inference_ids"] == [f"cap-{i}" for i in range(5)]
    assert len(line["instances"]) == len(line["predictions"]) == len(line["probabilities"]) == 5
    assert line["classes"] == body["classes"] == models.CLASSES
    for row, predicted in zip(line["probabilities"], line["predictions"]):  # readable without the model
        assert line["classes"][row.index(max(row))] == predicted
    status, body = serve(event_of({"instances": reg.records(3), "ids": ["p1", "p2", "p3"]}, name="prices"))
    assert status == 200
    line = firehose.lines[-1]
    assert set(line) == {"model", "version", "captured_at", "inference_ids", "instances", "predictions"}
    assert line["model"] == "prices" and line["inference_ids"] == ["p1", "p2", "p3"]


def test_the_answer_carries_inference_ids_for_every_prediction(firehose, clf):
    status, body = serve(event_of({"instances": clf.records(7)}, request_id="n"))
    assert status == 200
    assert list(body) == ["model", "version", "predictions", "probabilities", "classes", "inference_ids"]
    assert len(body["inference_ids"]) == len(body["predictions"]) == 7


# ---- the OpenAPI document -----------------------------------------------------------------------


def test_the_openapi_document_describes_ids_and_inference_ids():
    doc = openapi_schema()
    request = doc["components"]["schemas"]["PredictRequest"]
    assert request["required"] == ["instances"]
    assert request["properties"]["ids"]["type"] == "array"
    assert request["properties"]["ids"]["items"] == {"type": "string", "minLength": 1, "maxLength": 128}
    answer = doc["paths"]["/models/{name}/predict"]["post"]["responses"]["200"]["content"]["application/json"]
    assert "inference_ids" in answer["schema"]["required"]
    assert answer["schema"]["properties"]["inference_ids"]["items"] == {"type": "string"}
