"""The HTTP API end to end through the Lambda handler: API Gateway REST events in, JSON out.

Real scikit-learn -> skl2onnx -> onnxruntime models; S3, DynamoDB and Firehose are moto.
"""
import json
import os
from datetime import UTC

import boto3
import numpy as np
import pytest
from moto import mock_aws

from functions.core.artifacts import put_artifact, write_artifact
from functions.core.registry import Registry
from tests import models
from tests.models import invoke
from tests.support import create_artifact_bucket, create_registry_table

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")

CONFIGURED = ["iris", "prices", "empty"]


class Clock:
    """Injected monotonic clock: tests move time instead of sleeping."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def clf():
    return models.classifier()


@pytest.fixture(scope="module")
def reg():
    return models.regressor()


@pytest.fixture(scope="module")
def aws(clf, reg):
    """One moto account for the module: table, bucket, capture stream, two served models."""
    mp = pytest.MonkeyPatch()
    with mock_aws():
        ddb, s3, firehose = boto3.client("dynamodb"), boto3.client("s3"), boto3.client("firehose")
        create_registry_table(ddb)
        create_artifact_bucket(s3)
        firehose.create_delivery_stream(
            DeliveryStreamName="capture-iris",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "BucketARN": "arn:aws:s3:::artifacts",
                "Prefix": "capture/iris/",
            },
        )
        mp.setenv("REGISTRY_TABLE", "registry")
        mp.setenv("ARTIFACT_BUCKET", "artifacts")
        mp.setenv("SHIPYARD_MODELS", json.dumps(CONFIGURED))
        mp.setenv("CAPTURE_STREAMS", json.dumps({"iris": "capture-iris", "prices": "no-such-stream"}))
        registry = Registry("registry", client=ddb, known_models=CONFIGURED)
        publish(registry, s3, "iris", clf)
        publish(registry, s3, "prices", reg)
        yield {"registry": registry, "s3": s3, "firehose": firehose}
    mp.undo()


def publish(registry, s3, name, trained, promote=True, legacy=False) -> int:
    """What the training pipeline does: allocate, upload once with sha256, record (with the S3
    version id; ``legacy``: without, as versions recorded before version ids were), promote."""
    version = registry.allocate_version(name, estimator="test", params={})["version"]
    key = f"models/{name}/v{version}/model.onnx"
    written = write_artifact(s3, "artifacts", key, trained.onnx)
    registry.record_candidate(name, version, artifact_key=key, artifact_sha256=written["sha256"],
                              artifact_version_id=None if legacy else written["version_id"],
                              schema=trained.schema.to_dict(), metrics={"accuracy": 0.9},
                              lineage={"dataset": {"bucket": "data", "key": f"datasets/{name}/a.csv"}})
    if promote:
        registry.promote(name, version, reason="test", actor="tests")
    return version


@pytest.fixture
def clock(aws):
    from functions.inference import service

    c = Clock()
    service.reset(clock=c)
    yield c
    service.reset()


def predict(name, body, query=None):
    return invoke("POST", f"/models/{name}/predict", body=body, query=query)


# ---- predictions -------------------------------------------------------------------------------


def test_classifier_predicts_string_classes_with_probabilities(clock, clf):
    records = clf.records(30)
    status, headers, body = predict("iris", {"instances": records})
    assert status == 200, body
    assert headers["X-Model-Version"] == "1"
    assert body["model"] == "iris" and body["version"] == 1
    assert body["classes"] == models.CLASSES
    X = clf.sklearn_matrix(records)
    assert body["predictions"] == clf.pipeline.predict(X).tolist()
    probs = np.array(body["probabilities"])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, clf.pipeline.predict_proba(X), atol=1e-4)


def test_records_and_arrays_give_identical_predictions(clock, clf):
    _, _, a = predict("iris", {"instances": clf.records(20)})
    _, _, b = predict("iris", {"instances": clf.arrays(20)})
    assert a.pop("inference_ids") != b.pop("inference_ids")  # generated per request
    assert a == b


def test_regressor_matches_sklearn(clock, reg):
    records = reg.records(25)
    status, headers, body = predict("prices", {"instances": records})
    assert status == 200, body
    assert set(body) == {"model", "version", "predictions", "inference_ids"}
    np.testing.assert_allclose(body["predictions"], reg.pipeline.predict(reg.sklearn_matrix(records)),
                               rtol=1e-4, atol=1e-4)


def test_unknown_category_and_nulls_are_tolerated(clock, clf):
    records = [{"x1": 0.1, "x2": 2.0, "colour": "ultraviolet"}, {"x1": None, "x2": None, "colour": None}]
    status, _, body = predict("iris", {"instances": records})
    assert status == 200, body
    np.testing.assert_allclose(body["probabilities"], clf.pipeline.predict_proba(clf.sklearn_matrix(records)),
                               atol=1e-4)


def test_version_pinning(clock, aws, clf):
    v2 = publish(aws["registry"], aws["s3"], "iris", clf, promote=False)
    status, headers, body = predict("iris", {"instances": clf.records(2)}, query={"version": str(v2)})
    assert status == 200, body
    assert body["version"] == v2 and headers["X-Model-Version"] == str(v2)
    status, headers, body = predict("iris", {"instances": clf.records(2)})
    assert body["version"] == 1 and headers["X-Model-Version"] == "1"


def test_session_cache_does_not_download_again(clock, clf):
    from functions.inference import service

    gets = []
    service.server().s3.meta.events.register("before-call.s3.GetObject", lambda **kw: gets.append(1))
    for _ in range(3):
        assert predict("iris", {"instances": clf.records(1)})[0] == 200
    assert len(gets) == 1


def test_alias_move_is_visible_after_the_ttl(clock, aws, clf):
    registry, s3 = aws["registry"], aws["s3"]
    v1 = publish(registry, s3, "ttl", clf)
    assert predict("ttl", {"instances": clf.records(1)})[2]["version"] == v1
    v2 = publish(registry, s3, "ttl", clf)  # promoted now
    clock.now += 59
    assert predict("ttl", {"instances": clf.records(1)})[2]["version"] == v1  # cached alias
    clock.now += 1
    status, headers, body = predict("ttl", {"instances": clf.records(1)})
    assert body["version"] == v2 and headers["X-Model-Version"] == str(v2)


def test_one_registry_read_per_ttl_and_unknown_models_are_cached_too(clock, aws, clf, monkeypatch):
    from functions.inference import service

    ddb = service.server().registry.client
    reads = []
    original = ddb.get_item
    monkeypatch.setattr(ddb, "get_item", lambda **kw: reads.append(kw["Key"]["sk"]["S"]) or original(**kw))
    assert predict("iris", {"instances": clf.records(1)})[0] == 200
    assert reads.count("iris") == 1  # the model item once: alias and existence from one GetItem
    for _ in range(3):
        assert_error(predict("nope", {"instances": clf.records(1)}), 404, "'nope'")
        assert_error(predict("empty", {"instances": clf.records(1)}), 409, "no production version")
    assert reads.count("nope") == 1 and reads.count("empty") == 1  # not-found and 409 cached for the TTL
    clock.now += 60
    assert_error(predict("nope", {"instances": clf.records(1)}), 404, "'nope'")
    assert predict("iris", {"instances": clf.records(1)})[0] == 200
    assert reads.count("nope") == 2 and reads.count("iris") == 2


@pytest.fixture
def registry_reads(clock, monkeypatch):
    """The registry GetItem calls of the warm server, by sort key (the model item's is the model name)."""
    from functions.inference import service

    ddb = service.server().registry.client
    reads = []
    original = ddb.get_item
    monkeypatch.setattr(ddb, "get_item", lambda **kw: reads.append(kw["Key"]["sk"]["S"]) or original(**kw))
    return reads


def configure(monkeypatch, name):
    """``name`` as if configured in cdk.json (SHIPYARD_MODELS) for the warm server: 409 before its first version."""
    from functions.inference import service

    registry = service.server().registry
    monkeypatch.setattr(registry, "known_models", (*registry.known_models, name))


def test_a_promotion_seen_through_get_is_served_at_once(clock, aws, clf, monkeypatch, registry_reads):
    configure(monkeypatch, "fresh")
    assert_error(predict("fresh", {"instances": clf.records(1)}), 409, "no production version")
    v1 = publish(aws["registry"], aws["s3"], "fresh", clf)  # trained and promoted; the clock does not move
    assert_error(predict("fresh", {"instances": clf.records(1)}), 409)  # the miss is cached (briefly)
    status, _, body = invoke("GET", "/models/fresh")
    assert status == 200 and body["aliases"] == {"production": v1}
    reads = len(registry_reads)
    status, headers, body = predict("fresh", {"instances": clf.records(1)})
    assert status == 200 and body["version"] == v1 and headers["X-Model-Version"] == str(v1)
    assert registry_reads.count("fresh") == reads  # served from what GET read: no read of its own


def test_a_promotion_seen_through_the_model_list_is_served_at_once(clock, aws, clf, monkeypatch):
    configure(monkeypatch, "listed")
    assert_error(predict("listed", {"instances": clf.records(1)}), 409)
    v1 = publish(aws["registry"], aws["s3"], "listed", clf)
    status, _, body = invoke("GET", "/models")
    assert status == 200 and {"name": "listed", "production": v1} in body["models"]
    assert predict("listed", {"instances": clf.records(1)})[2]["version"] == v1


def test_no_production_version_is_cached_only_a_few_seconds(clock, aws, clf, monkeypatch, registry_reads):
    from functions.inference import service

    assert service.server().alias_miss_ttl == 2.0
    configure(monkeypatch, "soon")
    assert_error(predict("soon", {"instances": clf.records(1)}), 409, "no production version")
    assert_error(predict("nowhere", {"instances": clf.records(1)}), 404, "'nowhere'")
    v1 = publish(aws["registry"], aws["s3"], "soon", clf)
    publish(aws["registry"], aws["s3"], "nowhere", clf)  # an unknown model gets its first version
    clock.now += 1.9
    assert_error(predict("soon", {"instances": clf.records(1)}), 409)
    assert_error(predict("nowhere", {"instances": clf.records(1)}), 404)
    assert registry_reads.count("soon") == 1 and registry_reads.count("nowhere") == 1
    clock.now += 0.1  # 2 s after the miss, no GET in between
    assert predict("soon", {"instances": clf.records(1)})[2]["version"] == v1
    assert predict("nowhere", {"instances": clf.records(1)})[0] == 200
    assert registry_reads.count("soon") == 2 and registry_reads.count("nowhere") == 2


def test_a_production_version_is_still_cached_for_the_alias_ttl(clock, aws, clf, registry_reads):
    registry, s3 = aws["registry"], aws["s3"]
    v1 = publish(registry, s3, "steady", clf)
    for _ in range(5):
        assert predict("steady", {"instances": clf.records(1)})[2]["version"] == v1
    assert registry_reads.count("steady") == 1  # one read of the model item, not one per request
    publish(registry, s3, "steady", clf)  # moved without a GET: seen after the TTL, as before
    clock.now += 59.9
    assert predict("steady", {"instances": clf.records(1)})[2]["version"] == v1
    assert registry_reads.count("steady") == 1


def test_a_rollback_seen_through_get_is_served_at_once(clock, aws, clf):
    registry, s3 = aws["registry"], aws["s3"]
    v1 = publish(registry, s3, "back", clf)
    v2 = publish(registry, s3, "back", clf)
    assert predict("back", {"instances": clf.records(1)})[2]["version"] == v2
    registry.rollback("back", reason="bad model", actor="tests")
    assert predict("back", {"instances": clf.records(1)})[2]["version"] == v2  # cached, clock not moved
    status, _, body = invoke("GET", "/models/back")
    assert status == 200 and body["aliases"]["production"] == v1
    status, headers, body = predict("back", {"instances": clf.records(1)})
    assert body["version"] == v1 and headers["X-Model-Version"] == str(v1)


def test_the_miss_ttl_is_configurable_and_never_longer_than_the_alias_ttl(aws, monkeypatch):
    from functions.inference import service

    monkeypatch.setenv("ALIAS_MISS_TTL_SECONDS", "5")
    try:
        assert service.reset(clock=Clock()).alias_miss_ttl == 5.0
        monkeypatch.setenv("ALIAS_TTL_SECONDS", "1")
        assert service.reset(clock=Clock()).alias_miss_ttl == 1.0
    finally:
        service.reset()


def test_capture_writes_a_json_line(clock, aws, clf):
    s3 = aws["s3"]
    before = {o["Key"] for o in s3.list_objects_v2(Bucket="artifacts", Prefix="capture/iris/").get("Contents", [])}
    records = clf.records(3)
    status, _, body = predict("iris", {"instances": records})
    assert status == 200
    new = [o["Key"] for o in s3.list_objects_v2(Bucket="artifacts", Prefix="capture/iris/").get("Contents", [])
           if o["Key"] not in before]
    assert len(new) == 1
    line = json.loads(s3.get_object(Bucket="artifacts", Key=new[0])["Body"].read().decode().strip())
    assert line["model"] == "iris" and line["version"] == body["version"]
    assert line["instances"] == records and line["predictions"] == body["predictions"]
    assert line["inference_ids"] == body["inference_ids"] and line["classes"] == body["classes"]


def test_broken_capture_never_fails_a_prediction(clock, reg):
    # "prices" captures to a stream that does not exist: put_record fails, the answer does not.
    status, _, body = predict("prices", {"instances": reg.records(2)})
    assert status == 200 and len(body["predictions"]) == 2


def test_capture_is_sampled_and_configured_from_env(aws, monkeypatch):
    from functions.core.capture import Capture

    draws = iter([0.1, 0.3])
    capture = Capture({"iris": "capture-iris"}, 0.25, client=aws["firehose"], rng=lambda: next(draws))
    assert capture.record("iris", 1, [[1]], {"predictions": ["cat"]}) is True   # 0.1 < 0.25
    assert capture.record("iris", 1, [[1]], {"predictions": ["cat"]}) is False  # 0.3 >= 0.25
    assert capture.record("other", 1, [[1]], {"predictions": ["cat"]}) is False  # no stream
    monkeypatch.setenv("CAPTURE_STREAMS", "not json")
    assert Capture.from_env().streams == {}  # a bad setting turns capture off, it does not break serving
    monkeypatch.setenv("CAPTURE_STREAMS", '{"iris": "s"}')
    monkeypatch.setenv("CAPTURE_SAMPLE_RATE", "0.1")
    assert Capture.from_env().sample_rate == 0.1


def test_capture_record_is_one_json_document_per_line():
    from datetime import datetime

    from functions.core.capture import Capture

    class Firehose:
        def __init__(self):
            self.data = []

        def put_record(self, DeliveryStreamName, Record):
            self.data.append(Record["Data"])

    fh = Firehose()
    capture = Capture({"iris": "s"}, 1.0, client=fh, rng=lambda: 0.0,
                      clock=lambda: datetime(2025, 3, 4, 12, 0, tzinfo=UTC))
    instances = [{"a": 1.5, "s": "ü\u2028"}, [2**70, None]]  # the second goes to json's fallback
    for response in ({"predictions": ["x", "y"], "probabilities": [[0.25, 0.75], [1.0, 0.0]], "classes": ["n", "y"]},
                     {"predictions": [0.5, 1e-07]}):
        assert capture.record("iris", 3, instances, response, inference_ids=["r-0", "r-1"]) is True
    first, second = (json.loads(data.decode("utf-8")) for data in fh.data)
    assert all(data.endswith(b"\n") and data.count(b"\n") == 1 for data in fh.data)
    head = {"model": "iris", "version": 3, "captured_at": "2025-03-04T12:00:00+00:00", "instances": instances,
            "inference_ids": ["r-0", "r-1"]}
    assert first == {**head, "predictions": ["x", "y"], "probabilities": [[0.25, 0.75], [1.0, 0.0]],
                     "classes": ["n", "y"]}
    assert second == {**head, "predictions": [0.5, 1e-07]}


def test_artifacts_are_written_once_and_read_at_their_recorded_version(aws):
    from functions.core.artifacts import ArtifactConflict, IntegrityError, get_verified, sha256_hex

    s3, key = aws["s3"], "models/once/v1/model.onnx"
    first = write_artifact(s3, "artifacts", key, b"model bytes")
    assert first == {"key": key, "sha256": sha256_hex(b"model bytes"),
                     "version_id": s3.head_object(Bucket="artifacts", Key=key)["VersionId"]}
    assert write_artifact(s3, "artifacts", key, b"model bytes") == first  # a retried step carries on
    with pytest.raises(ArtifactConflict, match="written once"):
        write_artifact(s3, "artifacts", key, b"other bytes")
    versions = s3.list_object_versions(Bucket="artifacts", Prefix=key)["Versions"]
    assert [x["VersionId"] for x in versions] == [first["version_id"]]  # nothing was overwritten
    # an overwrite behind the registry's back: the recorded version still reads, and is verified
    later = s3.put_object(Bucket="artifacts", Key=key, Body=b"overwritten")["VersionId"]
    assert get_verified(s3, "artifacts", key, first["sha256"], first["version_id"]) == b"model bytes"
    with pytest.raises(IntegrityError, match=later):
        get_verified(s3, "artifacts", key, first["sha256"], later)
    with pytest.raises(IntegrityError):  # no version id (recorded before them): the current object
        get_verified(s3, "artifacts", key, first["sha256"])


def test_artifacts_are_verified(aws):
    from functions.core.artifacts import IntegrityError, get_verified, sha256_hex

    s3 = aws["s3"]
    digest = put_artifact(s3, "artifacts", "models/x/v1/model.onnx", b"bytes")
    assert digest == sha256_hex(b"bytes")
    assert get_verified(s3, "artifacts", "models/x/v1/model.onnx", digest) == b"bytes"
    with pytest.raises(IntegrityError) as err:
        get_verified(s3, "artifacts", "models/x/v1/model.onnx", "0" * 64)
    assert "models/x/v1/model.onnx" in str(err.value) and "0" * 64 in str(err.value) and digest in str(err.value)


# ---- reads -------------------------------------------------------------------------------------


def test_list_models(clock):
    status, _, body = invoke("GET", "/models")
    assert status == 200
    by_name = {m["name"]: m["production"] for m in body["models"]}
    assert by_name["iris"] == 1 and by_name["prices"] == 1 and by_name["empty"] is None
    assert set(body) == {"models"} and all(set(m) == {"name", "production"} for m in body["models"])


def test_get_model(clock):
    status, _, body = invoke("GET", "/models/prices")
    assert status == 200
    assert body == {
        "name": "prices",
        "aliases": {"production": 1},
        "versions": [{"version": 1, "status": "production", "metrics": {"accuracy": 0.9},
                      "created_at": body["versions"][0]["created_at"]}],
        "release": None,
    }
    assert invoke("GET", "/models/pr%69ces")[2]["name"] == "prices"  # REST APIs pass the path still encoded
    status, _, body = invoke("GET", "/models/empty")
    assert status == 200 and body == {"name": "empty", "aliases": {"production": None}, "versions": [],
                                      "release": None}


def test_get_version_includes_lineage(clock, reg):
    status, _, body = invoke("GET", "/models/prices/versions/1")
    assert status == 200
    assert body["version"] == 1 and body["status"] == "production"
    assert body["lineage"]["dataset"]["key"] == "datasets/prices/a.csv"
    assert body["schema"] == reg.schema.to_dict()


# ---- errors: every row of the contract's error table ------------------------------------------


def assert_error(response, status, *words):
    got, _, body = response
    assert got == status, body
    assert set(body) == {"message"}, body
    for w in words:
        assert w in body["message"], body["message"]


@pytest.mark.parametrize("raw, words", [
    ('{"instances": [', ["not valid JSON"]),
    ("not json", ["not valid JSON"]),
    ("", ["body", "expected a JSON object"]),
    ("[1, 2]", ["expected a JSON object"]),
    ('{"instances": 3}', ["instances", "valid list"]),
    ('{"rows": []}', ["instances", "Field required"]),
    ('{"instances": [], "extra": 1}', ["extra"]),
    ("[" * 100000 + "]" * 100000, ["not valid JSON"]),
    ('{"instances": [[' + "9" * 5000 + ', 1, "red"]]}', ["not valid JSON"]),
])
def test_400_malformed_body(clock, raw, words):
    assert_error(invoke("POST", "/models/iris/predict", raw_body=raw), 400, *words)


@pytest.mark.parametrize("instances, words", [
    ([], ["'instances' is empty"]),
    ([{"x1": 1, "x2": 2}], ["missing features ['colour']", "expected exactly ['x1', 'x2', 'colour']"]),
    ([{"x1": 1, "x2": 2, "colour": "red", "x3": 0}], ["unknown features ['x3']"]),
    ([[1, 2]], ["array has 2 values, expected 3"]),
    ([[1, 2, 3]], ["'colour' must be a string"]),
    ([["1", 2, "red"]], ["'x1' must be a number", "got string '1'"]),
    ([[True, 2, "red"]], ["'x1' must be a number", "got boolean"]),
    (["x"], ["instance 0: expected a record"]),
    ([[1e300, 1, "red"]], ["out of range"]),
])
def test_400_wrong_features_or_types(clock, instances, words):
    assert_error(predict("iris", {"instances": instances}), 400, *words)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_400_non_finite_numbers(clock, literal):
    raw = '{"instances": [[' + literal + ', 1.0, "red"]]}'
    assert_error(invoke("POST", "/models/iris/predict", raw_body=raw), 400, "'x1' must be a finite number")


def test_400_inputs_that_overflow_the_model(clock):
    # Finite float32 inputs whose prediction overflows: JSON cannot carry inf, so say why instead.
    assert_error(predict("prices", {"instances": [{"region": "north", "x1": 3e38, "x2": 0}]}), 400,
                 "instances [0] gave non-finite outputs")


def test_400_bad_version_parameter(clock, clf):
    assert_error(predict("iris", {"instances": clf.records(1)}, query={"version": "abc"}), 400, "version")
    assert_error(predict("iris", {"instances": clf.records(1)}, query={"version": "0"}), 400, "version")
    assert_error(invoke("GET", "/models/iris/versions/x"), 400, "version")


def test_404_unknown_model(clock, clf):
    assert_error(predict("nope", {"instances": clf.records(1)}), 404, "'nope'", "GET /models")
    assert_error(invoke("GET", "/models/nope"), 404, "'nope'")
    assert_error(invoke("GET", "/models/nope/versions/1"), 404, "'nope'")
    assert_error(invoke("GET", "/models/a%23b"), 404, "without '#'")  # '#' would clash with registry keys
    assert_error(invoke("GET", "/models/a#b"), 404)
    assert_error(predict("nope", {"instances": clf.records(1)}, query={"version": "1"}), 404,
                 "'nope' is not configured")


def test_404_unknown_version(clock, clf):
    assert_error(predict("iris", {"instances": clf.records(1)}, query={"version": "99"}), 404, "no version 99")
    assert_error(invoke("GET", "/models/iris/versions/99"), 404, "no version 99")
    assert_error(invoke("GET", "/models/iris/versions/123456789012345678901234567890"), 404, "no version")


def test_404_unknown_route(clock):
    assert_error(invoke("GET", "/nope"), 404, "no route for GET /nope", "POST /models/{name}/predict")
    assert_error(invoke("DELETE", "/models/iris"), 404, "no route")
    assert_error(invoke("GET", "/models/iris/predict"), 404)


def test_409_configured_model_without_production(clock, clf):
    assert_error(predict("empty", {"instances": clf.records(1)}), 409, "'empty' has no production version")


def test_404_pinned_version_without_artifact(clock, aws, clf):
    v = aws["registry"].allocate_version("empty")["version"]
    assert_error(predict("empty", {"instances": clf.records(1)}, query={"version": str(v)}), 404, "no model artifact")


def test_413_too_many_instances(clock, clf):
    assert_error(predict("iris", {"instances": clf.records(1) * 1001}), 413, "1001 instances", "at most 1000")
    assert predict("iris", {"instances": clf.records(1) * 1000})[0] == 200


def test_503_tampered_artifact_of_a_version_recorded_without_version_id_is_never_served(clock, aws, clf):
    registry, s3 = aws["registry"], aws["s3"]
    v = publish(registry, s3, "tampered", clf, legacy=True)
    key = f"models/tampered/v{v}/model.onnx"
    s3.put_object(Bucket="artifacts", Key=key, Body=clf.onnx[:-1] + bytes([clf.onnx[-1] ^ 1]))
    for _ in range(2):  # a failed check is not cached as a good model
        status, headers, body = predict("tampered", {"instances": clf.records(1)})
        assert status == 503 and set(body) == {"message"}
        assert "sha256" in body["message"] and key in body["message"]
        assert "predictions" not in body and "X-Model-Version" not in headers


def _integrity_metrics(out: str) -> list[dict]:
    """The EMF documents of the captured stdout that carry ArtifactIntegrityFailures."""
    docs = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]
    return [d for d in docs if "ArtifactIntegrityFailures" in d]


def test_an_overwritten_artifact_is_never_served_the_recorded_version_is(clock, aws, clf, capsys):
    from functions.inference import service

    registry, s3 = aws["registry"], aws["s3"]
    v = publish(registry, s3, "overwritten", clf)
    key = f"models/overwritten/v{v}/model.onnx"
    recorded = registry.get_version("overwritten", v)["artifact_version_id"]
    assert recorded == s3.head_object(Bucket="artifacts", Key=key)["VersionId"]
    s3.put_object(Bucket="artifacts", Key=key, Body=b"not the model")  # an overwrite, bypassing write-once
    for _ in range(2):  # a cold container each time: nothing cached
        service.reset(clock=clock)
        status, headers, body = predict("overwritten", {"instances": clf.records(3)})
        assert status == 200, body
        assert headers["X-Model-Version"] == str(v) and len(body["predictions"]) == 3
    assert _integrity_metrics(capsys.readouterr().out) == []


def test_503_and_the_metric_when_the_recorded_version_has_other_bytes(clock, aws, clf, capsys):
    registry, s3 = aws["registry"], aws["s3"]
    v = publish(registry, s3, "swapped", clf)
    key = f"models/swapped/v{v}/model.onnx"
    other = s3.put_object(Bucket="artifacts", Key=key, Body=b"other bytes")["VersionId"]
    # the version record tampered with: it names the other object version
    boto3.client("dynamodb").update_item(
        TableName="registry", Key={"pk": {"S": "MODEL#swapped"}, "sk": {"S": f"V#{v:010d}"}},
        UpdateExpression="SET artifact_version_id = :o", ExpressionAttributeValues={":o": {"S": other}})
    capsys.readouterr()
    status, headers, body = predict("swapped", {"instances": clf.records(1)})
    assert status == 503 and "sha256" in body["message"] and other in body["message"]
    assert "X-Model-Version" not in headers
    (doc,) = _integrity_metrics(capsys.readouterr().out)
    assert doc["ArtifactIntegrityFailures"] == [1.0] or doc["ArtifactIntegrityFailures"] == 1.0
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Shipyard"
    # the dimensions the stack's alarm watches (infra/endpoint.py metric_artifact_integrity_failures)
    assert directive["Dimensions"] == [["service"]] and doc["service"] == "shipyard-inference"


def test_unexpected_errors_do_not_leak(clock, aws, monkeypatch):
    from functions.inference import service

    def boom(*a, **kw):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service.server().registry, "list_models", boom)
    status, _, body = invoke("GET", "/models")
    assert status == 500 and body == {"message": "internal error; the request was logged"}


def test_openapi_document_describes_the_routes():
    from functions.inference.openapi import openapi_schema

    doc = openapi_schema()
    assert set(doc["paths"]) == {"/models", "/models/{name}", "/models/{name}/versions/{version}",
                                 "/models/{name}/predict"}
    post = doc["paths"]["/models/{name}/predict"]["post"]
    assert {"200", "400", "404", "409", "413", "503"} <= set(post["responses"])
    assert "422" not in json.dumps(doc["paths"])


def test_the_function_needs_no_training_stack():
    # The inference layer ships onnxruntime, not scikit-learn/skl2onnx/pandas.
    import subprocess
    import sys

    code = ("import sys, functions.inference.handler, functions.inference.openapi; "
            "print(sorted(m for m in ('sklearn', 'skl2onnx', 'pandas', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- the serving resolver answers exactly as the validating one --------------------------------


@pytest.mark.parametrize("method, path, body, query, headers, encoded", [
    ("GET", "/models", None, None, {}, False),
    ("GET", "/models/iris", None, None, {}, False),
    ("GET", "/models/nope", None, None, {}, False),
    ("GET", "/models/iris/versions/1", None, None, {}, False),
    ("GET", "/models/iris/versions/01", None, None, {}, False),
    ("GET", "/models/iris/versions/0", None, None, {}, False),
    ("GET", "/models/iris/versions/99", None, None, {}, False),
    ("GET", "/models/iris/versions/%2B1", None, None, {}, False),
    ("GET", "/models/iris/versions/123456789012345678901234567890", None, None, {}, False),
    ("POST", "/models/iris/predict", "RECORDS", None, {}, False),
    ("POST", "/models/iris/predict", "ARRAYS", {"version": "1"}, {}, False),
    ("POST", "/models/iris/predict", "RECORDS", {"version": "01"}, {}, False),
    ("POST", "/models/iris/predict", "RECORDS", {"version": " 1"}, {}, False),
    ("POST", "/models/iris/predict", "RECORDS", {"version": "1,1"}, {}, False),
    ("POST", "/models/iris/predict", "RECORDS", {"version": "99999999999"}, {}, False),
    ("POST", "/models/iris/predict", "RECORDS", {"other": "x"}, {}, False),
    ("POST", "/models/iris/predict", "RECORDS", None, {"Content-Type": "application/json; charset=utf-8"}, False),
    ("POST", "/models/iris/predict", "RECORDS", None, {"Content-Type": "text/plain"}, False),
    ("POST", "/models/iris/predict", "RECORDS", None, {}, True),
    ("POST", "/models/iris/predict", '{"instances": [[1, 2, "red"]], "instances": [[1, 2, "blue"]]}', None, {}, False),
    ("POST", "/models/iris/predict", '{"instances": [[1, 2, "red"]], "x": 1}', None, {}, False),
    ("POST", "/models/iris/predict", '{"instances": {"x1": 1}}', None, {}, False),
    ("POST", "/models/iris/predict", '[{"instances": []}]', None, {}, False),
    ("POST", "/models/iris/predict", '{"instances": [[1, "2", "red"]]}', None, {}, False),
    ("POST", "/models/iris/predict", None, None, {}, False),
    ("POST", "/models/nope/predict", "RECORDS", None, {}, False),
    ("POST", "/models/empty/predict", "RECORDS", None, {}, False),
])
def test_serving_resolver_answers_as_the_validating_resolver(clock, clf, method, path, body, query, headers, encoded):
    import base64

    from functions.inference import handler
    from functions.inference.openapi import validating_app
    from tests.models import LambdaContext, rest_event

    body = {"RECORDS": json.dumps({"instances": clf.records(3)}),
            "ARRAYS": json.dumps({"instances": clf.arrays(3)})}.get(body, body)
    if encoded:
        body = base64.b64encode(body.encode()).decode()
    event = rest_event(method, path, body=body, query=query, headers=headers, base64=encoded)
    ours = handler.lambda_handler(event, LambdaContext())
    theirs = validating_app().resolve(event, LambdaContext())
    assert (ours["statusCode"], json.loads(ours["body"])) == (theirs["statusCode"], json.loads(theirs["body"]))
    assert ours.get("multiValueHeaders") == theirs.get("multiValueHeaders")
    assert ours["statusCode"] < 500


def test_plain_requests_never_build_the_validating_resolver(clock, clf):
    # Well-formed requests are answered by the serving resolver alone (no pydantic on that path).
    import subprocess
    import sys

    code = ("import sys, functions.inference.handler as h; "
            "print(sorted(m for m in ('pydantic', 'functions.inference.openapi', 'aws_xray_sdk') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "POWERTOOLS_TRACE_DISABLED": "true"})
    assert out.stdout.strip() == "[]"
    from functions.inference import handler
    from tests.models import rest_event

    for request in ({"instances": clf.records(5)}, {"instances": clf.arrays(5)}):
        event = rest_event("POST", "/models/iris/predict", body=json.dumps(request), query={"version": "1"})
        resolver, routing_context = handler.resolver_for(event)
        assert resolver is handler.app
        assert routing_context["prediction"] == (request["instances"], 1, None)
        assert predict("iris", request, query={"version": "1"})[0] == 200


@pytest.mark.parametrize("method, path, body, query, headers, plain", [
    ("GET", "/models", None, None, {}, True),
    ("GET", "/models/iris", None, {"version": "x"}, {"Content-Type": "text/plain"}, True),
    ("GET", "/models/iris/versions/7", None, None, {}, True),
    ("GET", "/models/iris/versions/07", None, None, {}, False),
    ("GET", "/models/iris/versions/7/x", None, None, {}, False),  # no route either way: the same 404
    ("get", "/models/iris/versions/%37", None, None, {}, False),
    ("POST", "/models/iris/predict", '{"instances": []}', None, {}, True),
    ("POST", "/models/iris/predict", '{"instances": []}', {"version": "1"}, {"content-type": "application/json"}, True),
    ("POST", "/models/iris/predict", '{"instances": []}', {"version": "0"}, {}, False),
    ("POST", "/models/iris/predict", '{"instances": []}', None, {"Content-Type": "text/json"}, False),
    ("POST", "/models/iris/predict", '{"instances": {}}', None, {}, False),
    ("POST", "/models/iris/predict", "{", None, {}, False),
    ("POST", "/models/iris/predict", None, None, {}, False),
    ("POST", "/models", "{", None, {}, True),  # no route takes a body there: the serving resolver's 404
    ("PUT", "/models/iris/predict", "{", None, {}, True),
])
def test_the_resolver_is_chosen_before_resolving(method, path, body, query, headers, plain):
    from functions.inference import handler
    from tests.models import rest_event

    resolver, _ = handler.resolver_for(rest_event(method, path, body=body, query=query, headers=headers))
    assert (resolver is handler.app) == plain


def test_malformed_events_go_to_the_serving_resolver_and_fail_as_before():
    from functions.inference import handler
    from tests.models import LambdaContext

    for event in ({}, {"httpMethod": 1, "path": "/models"}, {"httpMethod": "GET", "path": None}):
        assert handler.resolver_for(event)[0] is handler.app
    answer = handler.lambda_handler({"httpMethod": "POST"}, LambdaContext())
    assert answer["statusCode"] == 500
    assert json.loads(answer["body"]) == {"message": "internal error; the request was logged"}


@pytest.mark.parametrize("raw", [
    '{"instances": [[1, 2.5, "red"]]}', '{"a": 1, "a": 2}', "NaN", "[Infinity, -Infinity]", "[1e400]",
    '{"a": "\\ud800"}', "[18446744073709551615]", "[" + "9" * 400 + "]",
    "[-0.0, 1.5e-400, 1E5]",
])
def test_body_parsing_reads_what_the_standard_library_reads(raw):
    # orjson on the hot path; what it refuses (NaN, infinities, lone surrogates, huge integers)
    # goes to json, so every body means what it always meant.
    from functions.core.jsonio import loads

    assert repr(loads(raw)) == repr(json.loads(raw))


def test_body_parsing_errors_are_json_decode_errors():
    from functions.core.jsonio import loads

    for raw in ["{", "[" * 100_000, '{"a": 1} x']:
        with pytest.raises(json.JSONDecodeError):
            loads(raw)


def test_answers_are_written_as_json_writes_them():
    from functions.core.jsonio import dumps as _dumps

    body = {"predictions": ["setosa", 2, 0.1], "probabilities": [[0.1, 0.9], [1e-300, 1.0]], "version": 3,
            "name": "ü \u2028 \x00", "classes": [], "aliases": {"production": None}}
    assert json.loads(_dumps(body)) == body
    written = '{"a":[0.30000000000000004,1e-7,123456789.125]}'
    assert _dumps({"a": [0.30000000000000004, 1e-07, 123456789.125]}) == written


@pytest.mark.parametrize("depth", [995, 1100, 100_000])
def test_deeply_nested_bodies_are_a_400(clock, depth):
    for raw in ['{"instances": ' + "[" * depth + "]" * depth + "}", "[" * depth + "]" * depth]:
        status, _, body = invoke("POST", "/models/iris/predict", raw_body=raw)
        assert status == 400 and body["message"], (depth, body)


def test_integers_beyond_64_bits_are_written_too():
    from functions.core.jsonio import dumps as _dumps

    assert json.loads(_dumps({"mse": 30000000000000000000, "n": 1})) == {"mse": 30000000000000000000, "n": 1}


def test_integers_beyond_64_bits_are_read_as_the_float_the_model_sees():
    from functions.core.jsonio import loads

    assert loads("[-9223372036854775809]") == [float(-9223372036854775809)]


def test_log_lines_carry_the_api_request_id_as_correlation_id(clock, clf):
    from functions.inference import handler
    from tests.models import LambdaContext, rest_event

    event = rest_event("GET", "/models")
    event["requestContext"]["requestId"] = "req-correlation-1"
    assert handler.lambda_handler(event, LambdaContext())["statusCode"] == 200
    assert handler.logger.get_correlation_id() == "req-correlation-1"
    # a malformed event (no requestContext) is still answered, and carries no stale id
    assert handler.lambda_handler({"httpMethod": "GET", "path": "/models"}, LambdaContext())["statusCode"] == 200
    assert handler.logger.get_correlation_id() is None
