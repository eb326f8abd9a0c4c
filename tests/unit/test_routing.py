"""Progressive release on the serving path (docs/api.md, "Releases"): canary routing by a stable
hash of the caller's key, shadow scoring that never touches the answer, per-version metrics.

Through the Lambda handler with real ONNX models; DynamoDB and S3 are moto.
"""
import json
import math
import uuid

import boto3
import pytest
from moto import mock_aws

from functions.core.artifacts import write_artifact
from functions.core.capture import Capture
from functions.core.registry import Registry
from functions.inference import service
from tests import models
from tests.models import invoke
from tests.support import RecordingFirehose, create_artifact_bucket, create_registry_table

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")
MODELS = ["iris", "prices"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


Firehose = RecordingFirehose


@pytest.fixture(scope="module")
def clf():
    return models.classifier()


@pytest.fixture(scope="module")
def clf2():
    """Another classifier of the same features: disagrees with ``clf`` on some instances."""
    return models.train(*models.classification_table(seed=7, n=60), "species", "classification",
                        "sklearn.tree.DecisionTreeClassifier", {"max_depth": 2})


@pytest.fixture(scope="module")
def reg():
    return models.regressor()


@pytest.fixture(scope="module")
def reg2():
    return models.train(*models.regression_table(seed=5, n=40), "price", "regression",
                        "sklearn.linear_model.Ridge", {"alpha": 50.0})


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
        create_registry_table(ddb)
        create_artifact_bucket(s3)
        monkeypatch.setenv("REGISTRY_TABLE", "registry")
        monkeypatch.setenv("ARTIFACT_BUCKET", "artifacts")
        monkeypatch.setenv("SHIPYARD_MODELS", json.dumps(MODELS))
        monkeypatch.setenv("CAPTURE_STREAMS", "{}")
        yield {"registry": Registry("registry", client=ddb, known_models=MODELS), "s3": s3}


@pytest.fixture
def firehose():
    return Firehose()


@pytest.fixture
def clock(aws, firehose):
    c = Clock()
    service.reset(clock=c, capture=Capture({"iris": "cap-iris", "prices": "cap-prices"}, client=firehose))
    yield c
    service.reset()


def publish(aws, name, trained, promote=True, tamper=False) -> int:
    registry, s3 = aws["registry"], aws["s3"]
    version = registry.allocate_version(name, estimator="test", params={})["version"]
    key = f"models/{name}/v{version}/model.onnx"
    written = write_artifact(s3, "artifacts", key, trained.onnx)
    registry.record_candidate(name, version, artifact_key=key, artifact_sha256=written["sha256"],
                              artifact_version_id=None if tamper else written["version_id"],
                              schema=trained.schema.to_dict(), metrics={"accuracy": 0.9},
                              lineage={"dataset": {"bucket": "data", "key": f"datasets/{name}/a.csv"}})
    if tamper:  # bytes that are not the recorded sha256's: the version can never be loaded
        s3.put_object(Bucket="artifacts", Key=key, Body=b"not the model")
    if promote:
        registry.promote(name, version, reason="test", actor="tests")
    return version


def start(aws, name, version, mode="canary", percent=10.0, release_id="rel-1", **extra):
    production = aws["registry"].get_alias(name)
    release = aws["registry"].start_release(name, version, mode=mode, release_id=release_id,
                                            expected_production=production, execution_arn="arn:exec",
                                            percent=percent, bake=1800, actor="tests", reason="test")
    if extra:  # what the release loop may add to the item (e.g. a regression's tolerance)
        aws["registry"].client.update_item(
            TableName="registry", Key={"pk": {"S": "MODELS"}, "sk": {"S": name}},
            UpdateExpression="SET #r.#t = :t", ExpressionAttributeNames={"#r": "release", "#t": "tolerance"},
            ExpressionAttributeValues={":t": {"N": str(extra["tolerance"])}})
    return release


def predict(name, instances, key=None, query=None, request_id=None):
    headers = {"X-Routing-Key": key} if key is not None else None
    if request_id is not None:
        return _invoke_with_request_id(name, instances, request_id, query)
    return invoke("POST", f"/models/{name}/predict", body={"instances": instances}, query=query, headers=headers)


def _invoke_with_request_id(name, instances, request_id, query=None):
    from functions.inference.handler import lambda_handler
    from tests.lambda_context import LambdaContext
    from tests.models import rest_event

    event = rest_event("POST", f"/models/{name}/predict", body=json.dumps({"instances": instances}), query=query)
    event["requestContext"]["requestId"] = request_id
    response = lambda_handler(event, LambdaContext())
    headers = dict(response.get("headers") or {})
    headers.update({k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items() if v})
    return response["statusCode"], headers, json.loads(response["body"])


def emf_docs(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]


def metric_values(docs, metric, **dims) -> list[float]:
    """Every value of ``metric`` in documents whose dimension set is exactly ``dims``."""
    found = []
    for d in docs:
        for directive in d["_aws"]["CloudWatchMetrics"]:
            names = [m["Name"] for m in directive["Metrics"]]
            for dim_set in directive["Dimensions"]:
                if metric in names and set(dim_set) == set(dims) and all(d[k] == v for k, v in dims.items()):
                    v = d[metric]
                    found += v if isinstance(v, list) else [v]
    return found


# ---- canary routing ----------------------------------------------------------------------------


def test_routing_weight_within_a_5_sigma_binomial_bound():
    release = {"id": "rel-w", "mode": "canary", "percent": 10}
    n = 20_000
    hits = sum(service.canary_takes(release, f"customer-{i}") for i in range(n))
    sigma = math.sqrt(n * 0.1 * 0.9)
    assert abs(hits - n * 0.1) <= 5 * sigma, hits
    # and at other weights, with request-id-like keys
    for percent in (1, 50, 99):
        hits = sum(service.canary_takes({"id": "r", "percent": percent}, str(uuid.UUID(int=i))) for i in range(n))
        p = percent / 100
        assert abs(hits - n * p) <= 5 * math.sqrt(n * p * (1 - p)), (percent, hits)
    assert not any(service.canary_takes({"id": "r", "percent": 0}, str(i)) for i in range(1000))
    assert all(service.canary_takes({"id": "r", "percent": 100}, str(i)) for i in range(1000))


def test_a_new_release_reshuffles_who_is_routed():
    a = {str(i) for i in range(2000) if service.canary_takes({"id": "A", "percent": 10}, str(i))}
    b = {str(i) for i in range(2000) if service.canary_takes({"id": "B", "percent": 10}, str(i))}
    assert a and b and a != b


def test_canary_routes_callers_by_weight_through_the_handler(clock, aws, clf, clf2):
    publish(aws, "iris", clf)
    v2 = publish(aws, "iris", clf2, promote=False)
    start(aws, "iris", v2, percent=30)
    served = [predict("iris", clf.records(1), request_id=f"req-{i}")[2]["version"] for i in range(400)]
    share = served.count(v2) / len(served)
    assert abs(share - 0.3) <= 5 * math.sqrt(0.3 * 0.7 / 400), share
    assert set(served) == {1, v2}


def test_sticky_per_caller_key_across_requests_and_containers(clock, aws, clf, clf2):
    publish(aws, "iris", clf)
    v2 = publish(aws, "iris", clf2, promote=False)
    start(aws, "iris", v2, percent=50)
    keys = [f"customer-{i}" for i in range(40)]
    first = {k: predict("iris", clf.records(1), key=k)[2]["version"] for k in keys}
    assert set(first.values()) == {1, v2}  # both versions serve someone
    for _ in range(5):
        for k in keys:
            status, headers, body = predict("iris", clf.records(2), key=k)
            assert status == 200 and body["version"] == first[k] and headers["X-Model-Version"] == str(first[k])
    service.reset(clock=clock)  # a new container: the same callers see the same versions
    assert {k: predict("iris", clf.records(1), key=k)[2]["version"] for k in keys} == first
    # the header is matched whatever its case (API Gateway passes it as the caller wrote it)
    k = keys[0]
    lower = invoke("POST", "/models/iris/predict", body={"instances": clf.records(1)},
                   headers={"x-routing-key": k})[2]["version"]
    assert lower == first[k]


def test_answers_carry_the_version_that_made_them(clock, aws, clf, clf2):
    publish(aws, "iris", clf)
    v2 = publish(aws, "iris", clf2, promote=False)
    start(aws, "iris", v2, percent=100)
    records = clf.records(20)
    status, headers, body = predict("iris", records, key="anyone")
    assert status == 200 and body["version"] == v2 and headers["X-Model-Version"] == str(v2)
    assert body["predictions"] == clf2.pipeline.predict(clf2.sklearn_matrix(records)).tolist()


def test_a_pinned_version_is_never_rerouted(clock, aws, clf, clf2):
    publish(aws, "iris", clf)
    v2 = publish(aws, "iris", clf2, promote=False)
    start(aws, "iris", v2, percent=100)
    for i in range(20):
        status, headers, body = predict("iris", clf.records(1), key=f"k{i}", query={"version": "1"})
        assert status == 200 and body["version"] == 1 and headers["X-Model-Version"] == "1"
    # and a pinned candidate is the candidate, not production
    assert predict("iris", clf.records(1), query={"version": str(v2)})[2]["version"] == v2


def test_the_release_rides_on_the_cached_model_read(clock, aws, clf, clf2):
    publish(aws, "iris", clf)
    v2 = publish(aws, "iris", clf2, promote=False)
    assert predict("iris", clf.records(1), key="k")[2]["version"] == 1  # production cached, no release
    start(aws, "iris", v2, percent=100)
    assert predict("iris", clf.records(1), key="k")[2]["version"] == 1  # within the TTL: as cached
    assert invoke("GET", "/models")[0] == 200  # reads aliases only: the cached (absent) release is kept
    assert predict("iris", clf.records(1), key="k")[2]["version"] == 1
    clock.now += 61
    assert predict("iris", clf.records(1), key="k")[2]["version"] == v2  # one model read: the release
    reads = []
    real = aws["registry"].get_model
    aws["registry"].get_model = lambda name: reads.append(name) or real(name)
    service.server().registry = aws["registry"]
    for i in range(50):
        predict("iris", clf.records(1), key=f"k{i}")
    assert reads == []  # no registry read per request while the release runs
    # GET /models/{name} shows the release (no execution ARN) and refreshes it at once
    status, _, body = invoke("GET", "/models/iris")
    assert status == 200 and body["release"]["mode"] == "canary" and body["release"]["version"] == v2
    assert body["release"]["percent"] == 100 and "execution_arn" not in body["release"]
    aws["registry"].end_release("iris", "rel-1", reason="test", actor="tests")
    assert invoke("GET", "/models/iris")[2]["release"] is None
    assert predict("iris", clf.records(1), key="k")[2]["version"] == 1  # the GET's read is served at once


# ---- shadow --------------------------------------------------------------------------------------


def test_shadow_never_changes_the_answer_and_captures_both_outputs(clock, aws, clf, clf2, firehose, capsys):
    publish(aws, "iris", clf)
    records = clf.records(40)
    rid = "req-shadow"  # one request id: the same generated inference ids, so whole answers compare
    before = predict("iris", records, request_id=rid)
    v2 = publish(aws, "iris", clf2, promote=False)
    start(aws, "iris", v2, mode="shadow", percent=None)
    clock.now += 61
    first = predict("iris", records, request_id=rid)  # starts the candidate's load off the request path: not shadowed
    service.server().join_loads()
    capsys.readouterr()
    status, headers, body = predict("iris", records, request_id=rid)
    assert (status, headers["X-Model-Version"], body) == (before[0], "1", before[2]) == (first[0], "1", first[2])
    assert "shadow" not in firehose.lines[-2]
    line = firehose.lines[-1]
    assert line["version"] == 1 and line["predictions"] == body["predictions"]
    assert line["inference_ids"] == body["inference_ids"] == [f"{rid}-{i}" for i in range(40)]
    assert line["probabilities"] == body["probabilities"]
    expected = clf2.pipeline.predict(clf2.sklearn_matrix(records)).tolist()
    assert line["shadow"]["version"] == v2 and line["shadow"]["predictions"] == expected
    assert len(line["shadow"]["probabilities"]) == 40
    # the shadow's metrics, dimensions exactly Model and Version (the candidate)
    docs = emf_docs(capsys.readouterr().out)
    dims = {"Model": "iris", "Version": str(v2)}
    assert metric_values(docs, "ShadowPredictions", **dims) == [40]
    agreement = metric_values(docs, "ShadowAgreement", **dims)
    assert agreement == [1 if a == b else 0 for a, b in zip(body["predictions"], expected)]
    assert 0 < sum(agreement) < 40  # the two models disagree somewhere: the test can tell
    (latency,) = metric_values(docs, "ShadowLatency", **dims)
    assert latency > 0
    assert metric_values(docs, "ShadowErrors", **dims) == []
    assert metric_values(docs, "VersionPredictions", Model="iris", Version="1") == [40]
    assert metric_values(docs, "VersionPredictions", **dims) == []  # the shadow answered nobody


def test_a_broken_shadow_never_changes_the_answer_and_counts_shadow_errors(clock, aws, clf, firehose, capsys):
    publish(aws, "iris", clf)
    records = clf.records(10)
    before = predict("iris", records, request_id="req-broken")
    v2 = publish(aws, "iris", clf, promote=False, tamper=True)
    start(aws, "iris", v2, mode="shadow", percent=None)
    clock.now += 61
    for _ in range(3):
        status, headers, body = predict("iris", records, request_id="req-broken")
        service.server().join_loads()
        assert (status, headers["X-Model-Version"], body) == (before[0], "1", before[2])
    docs = emf_docs(capsys.readouterr().out)
    # the first request started the load; the two after it met the failed load
    assert metric_values(docs, "ShadowErrors", Model="iris", Version=str(v2)) == [1, 1]
    assert "shadow" not in firehose.lines[-1]


def test_a_shadow_that_raises_while_scoring_is_caught(clock, aws, clf, clf2, capsys, monkeypatch):
    publish(aws, "iris", clf)
    v2 = publish(aws, "iris", clf2, promote=False)
    start(aws, "iris", v2, mode="shadow", percent=None)
    clock.now += 61
    predict("iris", clf.records(1))
    service.server().join_loads()
    candidate = service.server().shadow_model("iris", v2)

    def boom(feeds):
        raise RuntimeError("scoring exploded")
    monkeypatch.setattr(candidate, "predict", boom)
    capsys.readouterr()
    status, _, body = predict("iris", clf.records(3))
    assert status == 200 and body["version"] == 1 and len(body["predictions"]) == 3
    assert metric_values(emf_docs(capsys.readouterr().out), "ShadowErrors", Model="iris", Version=str(v2)) == [1]


def test_regression_shadow_differences_and_tolerance(clock, aws, reg, reg2, firehose, capsys):
    publish(aws, "prices", reg)
    v2 = publish(aws, "prices", reg2, promote=False)
    start(aws, "prices", v2, mode="shadow", percent=None, tolerance=1.0)
    records = reg.records(30)
    predict("prices", records)
    service.server().join_loads()
    capsys.readouterr()
    status, _, body = predict("prices", records)
    assert status == 200 and body["version"] == 1
    docs = emf_docs(capsys.readouterr().out)
    dims = {"Model": "prices", "Version": str(v2)}
    theirs = reg2.pipeline.predict(reg2.sklearn_matrix(records))
    diffs = metric_values(docs, "ShadowDifference", **dims)
    assert diffs == pytest.approx([abs(b - a) for a, b in zip(body["predictions"], theirs)], abs=1e-3)
    assert max(diffs) > 0
    assert metric_values(docs, "ShadowAgreement", **dims) == [1 if d <= 1.0 else 0 for d in diffs]
    assert firehose.lines[-1]["shadow"]["predictions"] == pytest.approx(theirs.tolist(), abs=1e-3)
    assert "probabilities" not in firehose.lines[-1]["shadow"]


def test_regression_shadow_without_tolerance_stores_the_difference_only(clock, aws, reg, reg2, capsys):
    publish(aws, "prices", reg)
    v2 = publish(aws, "prices", reg2, promote=False)
    start(aws, "prices", v2, mode="shadow", percent=None)
    predict("prices", reg.records(5))
    service.server().join_loads()
    capsys.readouterr()
    predict("prices", reg.records(5))
    docs = emf_docs(capsys.readouterr().out)
    assert len(metric_values(docs, "ShadowDifference", Model="prices", Version=str(v2))) == 5
    assert metric_values(docs, "ShadowAgreement", Model="prices", Version=str(v2)) == []


# ---- per-version metrics -----------------------------------------------------------------------


def test_per_version_metrics_of_every_answer(clock, aws, clf, reg, capsys):
    publish(aws, "iris", clf)
    publish(aws, "prices", reg)
    records = clf.records(30)
    capsys.readouterr()
    status, _, body = predict("iris", records)
    docs = emf_docs(capsys.readouterr().out)
    v = {"Model": "iris", "Version": "1"}
    assert metric_values(docs, "VersionPredictions", **v) == [30]
    (latency,) = metric_values(docs, "VersionLatency", **v)
    assert latency > 0
    counts = {}
    for p in body["predictions"]:
        counts[p] = counts.get(p, 0) + 1
    for cls, count in counts.items():
        assert metric_values(docs, "PredictedClass", **v, Class=cls) == [count]
    assert len(counts) > 1
    assert metric_values(docs, "VersionErrors", **v) == []
    # regression: the predicted values, over 100 split across documents (EMF takes 100 per metric)
    _, _, body = predict("prices", reg.records(150))
    docs = emf_docs(capsys.readouterr().out)
    values = metric_values(docs, "PredictedValue", Model="prices", Version="1")
    assert values == pytest.approx(body["predictions"])
    assert all(len(d.get("PredictedValue", [])) <= 100 for d in docs)


def test_version_errors_count_server_failures_not_the_callers(clock, aws, clf, capsys):
    publish(aws, "iris", clf)
    bad = publish(aws, "iris", clf, promote=False, tamper=True)
    capsys.readouterr()
    assert predict("iris", [{"nope": 1}])[0] == 400
    assert predict("iris", clf.records(1), query={"version": "99"})[0] == 404
    docs = emf_docs(capsys.readouterr().out)
    assert metric_values(docs, "VersionErrors", Model="iris", Version="1") == []
    assert metric_values(docs, "VersionErrors", Model="iris", Version="99") == []
    assert predict("iris", clf.records(1), query={"version": str(bad)})[0] == 503
    docs = emf_docs(capsys.readouterr().out)
    assert metric_values(docs, "VersionErrors", Model="iris", Version=str(bad)) == [1]


def test_the_predictions_metric_is_kept(clock, aws, clf, capsys):
    publish(aws, "iris", clf)
    capsys.readouterr()
    predict("iris", clf.records(4))
    docs = emf_docs(capsys.readouterr().out)
    assert metric_values(docs, "Predictions", model="iris", service=service.SERVICE_NAME) == [4.0]
