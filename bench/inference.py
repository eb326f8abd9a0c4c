"""Inference benchmarks: warm handler vs bare onnxruntime and vs the JSON floor, the handler's
stages, the scikit-learn handler, cold starts.

The world is the one the tests use (tests/unit/test_inference_api.py): a registry table and an
artifacts bucket on moto, a real scikit-learn pipeline converted by ``functions.core.convert``,
registered and promoted the way the training pipeline does it, and real API Gateway REST proxy
events (``tests.models.rest_event``). Capture is off (no Firehose on the measured path), and
X-Ray tracing is disabled (no daemon here).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from bench.common import interleaved, ratio, summary

ROOT = Path(__file__).resolve().parents[1]
MODEL = "bench"
FOREST = "bench-forest"  # a model whose inference outweighs the JSON around it (batch 1000 only)
BATCHES = (1, 16, 1000)
STAGE_BATCHES = ("1", "1000")  # where the handler's time goes, stage by stage
ENV = {
    "REGISTRY_TABLE": "registry",
    "ARTIFACT_BUCKET": "artifacts",
    "SHIPYARD_MODELS": json.dumps([MODEL, FOREST]),
    "CAPTURE_STREAMS": "{}",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "shipyard-inference",
    "POWERTOOLS_METRICS_NAMESPACE": "Shipyard",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def _trained():
    from tests.models import classifier

    return classifier()  # LogisticRegression over x1, x2 (numbers) and colour (string), 3 classes


def _forest():
    from tests.models import classification_table, train

    # 100 trees of depth 12 over the same features: ~20x the logistic regression's inference
    return train(*classification_table(n=4000, seed=3), "species", "classification",
                 "sklearn.ensemble.RandomForestClassifier",
                 {"n_estimators": 100, "max_depth": 12, "random_state": 0})


def _publish(ddb, s3, trained, model: str = MODEL, *, create: bool = True) -> int:
    """Create table + bucket (``create``) and register one promoted version of ``model``:
    model.onnx and model.joblib."""
    import joblib

    from functions.core.artifacts import put_artifact
    from functions.core.registry import Registry
    from tests.support import create_artifact_bucket, create_registry_table

    if create:
        create_registry_table(ddb)
        create_artifact_bucket(s3)
    registry = Registry("registry", client=ddb, known_models=[MODEL, FOREST])
    version = registry.allocate_version(model, estimator=type(trained.pipeline[-1]).__module__ + "."
                                        + type(trained.pipeline[-1]).__name__, params={})["version"]
    prefix = f"models/{model}/v{version}"
    digest = put_artifact(s3, "artifacts", f"{prefix}/model.onnx", trained.onnx)
    buffer = io.BytesIO()
    joblib.dump(trained.pipeline, buffer)
    put_artifact(s3, "artifacts", f"{prefix}/model.joblib", buffer.getvalue())
    registry.record_candidate(model, version, artifact_key=f"{prefix}/model.onnx", artifact_sha256=digest,
                              schema=trained.schema.to_dict(), metrics={"accuracy": 0.9},
                              lineage={"dataset": {"bucket": "data", "key": f"datasets/{model}/a.csv"}})
    registry.promote(model, version, reason="bench", actor="bench")
    return version


def _records(trained, n: int) -> list[dict]:
    pool = trained.records(len(trained.rows))
    return [pool[i % len(pool)] for i in range(n)]


def _event(records: list[dict], model: str = MODEL) -> dict:
    from tests.models import rest_event

    return rest_event("POST", f"/models/{model}/predict", body=json.dumps({"instances": records}))


def warm(*, rounds: int = 10, budget_seconds: float = 60.0, log=print) -> dict:
    """Warm Shipyard handler vs bare InferenceSession.run vs the scikit-learn handler."""
    import boto3
    from moto import mock_aws

    from tests.models import LambdaContext

    trained = _trained()
    with mock.patch.dict(os.environ, ENV):
        with mock_aws():
            _publish(boto3.client("dynamodb"), boto3.client("s3"), trained)
            from bench import sklearn_handler
            from functions.inference import handler as shipyard
            from functions.inference import service

            service.reset()
            context = LambdaContext()
            session = _session(trained)
            results: dict = {"model": "LogisticRegression (tests.models.classifier: 2 numeric + 1 string "
                                      "feature, 3 classes), ONNX via functions.core.convert",
                             "batches": {}}
            sink = open(os.devnull, "w")  # EMF metrics lines: serialized as on Lambda, not printed
            try:
                per_batch_budget = budget_seconds / len(BATCHES)
                for batch in BATCHES:
                    records = _records(trained, batch)
                    event = _event(records)
                    feeds = trained.schema.to_feeds(records)

                    def handler_call(event=event):
                        response = shipyard.lambda_handler(event, context)
                        assert response["statusCode"] == 200, response
                        return response

                    def sklearn_call(event=event):
                        response = sklearn_handler.lambda_handler(event, context)
                        assert response["statusCode"] == 200, response
                        return response

                    def bare_call(feeds=feeds):
                        return session.run(None, feeds)

                    floor_call = _floor(event["body"], trained, session)
                    with contextlib.redirect_stdout(sink):
                        ours = json.loads(handler_call()["body"])
                        theirs = json.loads(sklearn_call()["body"])
                    assert ours["predictions"] == theirs["predictions"], "ONNX and sklearn disagree"
                    assert json.loads(floor_call())["predictions"] == ours["predictions"], "the floor answers otherwise"
                    times = _measure({"handler": handler_call, "ort": bare_call, "floor": floor_call,
                                      "sklearn_handler": sklearn_call},
                                     sink, rounds, per_batch_budget, most=500)
                    entry = {name: summary(values) for name, values in times.items()}
                    entry["handler_vs_ort_median"] = ratio(entry["handler"]["median_ms"], entry["ort"]["median_ms"])
                    entry["handler_vs_ort_p99"] = ratio(entry["handler"]["p99_ms"], entry["ort"]["p99_ms"])
                    entry["handler_vs_floor_median"] = ratio(entry["handler"]["median_ms"], entry["floor"]["median_ms"])
                    entry["handler_vs_floor_p99"] = ratio(entry["handler"]["p99_ms"], entry["floor"]["p99_ms"])
                    entry["sklearn_handler_vs_handler_median"] = ratio(entry["sklearn_handler"]["median_ms"],
                                                                       entry["handler"]["median_ms"])
                    entry["request_bytes"] = len(event["body"])
                    results["batches"][str(batch)] = entry
                    log(f"  batch {batch:>4}: handler {entry['handler']['median_ms']:.3f} ms, "
                        f"ort {entry['ort']['median_ms']:.3f} ms, floor {entry['floor']['median_ms']:.3f} ms, "
                        f"sklearn handler {entry['sklearn_handler']['median_ms']:.3f} ms (n={entry['handler']['n']})")
                    if str(batch) in STAGE_BATCHES:
                        entry["stages"] = _stages(shipyard, event, context, trained, session, sink, rounds,
                                                  per_batch_budget / 2, log)
                results["forest_b1000"] = _forest_b1000(shipyard, context, sink, rounds, per_batch_budget / 2, log)
            finally:
                sink.close()
            service.reset()
            return results


def _floor(body: str, trained, session):
    """The floor any JSON API over this model must pay: ``orjson.loads`` of the body, the feeds
    built from the records by the project's own ``FeatureSchema.to_feeds``, ``session.run``, and
    ``orjson.dumps`` of the answer (labels as a list, probabilities straight from numpy): no
    routing, no checks beyond ``to_feeds``', no logging or metrics, no float64 widening."""
    import orjson

    schema, classes = trained.schema, list(trained.schema.classes or ())

    def floor_call(body=body):
        instances = orjson.loads(body)["instances"]
        labels, probabilities = session.run(None, schema.to_feeds(instances))
        return orjson.dumps({"model": MODEL, "version": 1, "predictions": labels.tolist(),
                             "probabilities": probabilities, "classes": classes},
                            option=orjson.OPT_SERIALIZE_NUMPY)

    return floor_call


def _stages(shipyard, event: dict, context, trained, session, sink, rounds: int, budget_seconds: float,
            log) -> dict:
    """Where the handler's time goes: each stage of a prediction timed on its own, interleaved.

    Nested stages (each includes the ones above it in the list of ``derived``) give the cost of
    each layer as a difference of medians; the floor's own parts are timed beside them.
    """
    import orjson

    from functions.core.jsonio import dumps, loads
    from functions.inference import service
    from functions.inference.plain import plain_request

    body = event["body"]
    instances = orjson.loads(body)["instances"]
    schema = trained.schema
    model = service.server().model(MODEL, service.server().production(MODEL))
    feeds = schema.to_feeds(instances)
    answer = {"model": MODEL, "version": 1, **model.predict(feeds)}
    labels, probabilities = session.run(None, feeds)
    floor_answer = {"model": MODEL, "version": 1, "predictions": labels.tolist(),
                    "probabilities": probabilities, "classes": list(schema.classes or ())}

    def resolve():  # lambda_handler without its decorators: the choice of resolver and Powertools
        resolver, routing_context = shipyard.resolver_for(event)
        resolver.append_context(**routing_context)
        return resolver.resolve(event, context)

    calls = {
        "orjson_loads": lambda: orjson.loads(body),
        "to_feeds": lambda: schema.to_feeds(instances),
        "session_run": lambda: session.run(None, feeds),
        "orjson_dumps_floor": lambda: orjson.dumps(floor_answer, option=orjson.OPT_SERIALIZE_NUMPY),
        "plain_request": lambda: plain_request(event),  # header scan + jsonio.loads + shape checks
        "model_predict": lambda: model.predict(feeds),  # session.run + float64, finiteness, tolist
        "dumps_answer": lambda: dumps(answer),  # jsonio.dumps of the handler's answer (Python lists)
        "service_predict": lambda: service.predict(MODEL, instances, None),  # the route's work
        "resolve": resolve,
        "handler": lambda: shipyard.lambda_handler(event, context),
    }
    assert loads(body) == orjson.loads(body)
    times = _measure(calls, sink, rounds, budget_seconds, most=300)
    medians = {name: summary(values)["median_ms"] for name, values in times.items()}
    m = medians
    derived = {
        "floor_parts_sum": m["orjson_loads"] + m["to_feeds"] + m["session_run"] + m["orjson_dumps_floor"],
        "choice_beyond_loads": m["plain_request"] - m["orjson_loads"],
        "model_predict_beyond_run": m["model_predict"] - m["session_run"],
        "answer_dumps_beyond_floor_dumps": m["dumps_answer"] - m["orjson_dumps_floor"],
        "route_beyond_feeds_predict_dumps": m["service_predict"] - m["to_feeds"] - m["model_predict"]
        - m["dumps_answer"],
        "powertools_resolver": m["resolve"] - m["plain_request"] - m["service_predict"],
        "decorators": m["handler"] - m["resolve"],
    }
    out = {"median_ms": medians, "derived_ms": {k: round(v, 4) for k, v in derived.items()},
           "n": summary(times["handler"])["n"]}
    log("    stages (median ms): " + ", ".join(f"{k} {v:.3f}" for k, v in medians.items()))
    log("    derived (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in out["derived_ms"].items()))
    return out


def _session(trained):
    """A bare InferenceSession with the options the handler's sessions get (OnnxModel.from_bytes)."""
    from functions.core.onnx_model import OnnxModel

    return OnnxModel.from_bytes(trained.onnx, trained.schema).session


def _measure(calls: dict, sink, rounds: int, budget_seconds: float, *, most: int) -> dict[str, list[float]]:
    """Interleaved timings of ``calls``, the loop sized to the budget from one timed pass of each."""
    with contextlib.redirect_stdout(sink):  # EMF lines: serialized as on Lambda, not printed
        for call in calls.values():
            call()  # warm
        start = time.perf_counter()
        for call in calls.values():
            call()
        one = max(time.perf_counter() - start, 1e-6)
        per_round = max(3, min(most, int(budget_seconds / one / rounds)))
        return interleaved(calls, rounds=rounds, per_round=per_round)


def _forest_b1000(shipyard, context, sink, rounds: int, budget_seconds: float, log) -> dict:
    """Batch 1000 on a 100-tree forest: the same handler, where inference outweighs the JSON."""
    import boto3

    trained = _forest()
    _publish(boto3.client("dynamodb"), boto3.client("s3"), trained, FOREST, create=False)
    records = _records(trained, 1000)
    event = _event(records, FOREST)
    feeds = trained.schema.to_feeds(records)
    session = _session(trained)

    def handler_call():
        response = shipyard.lambda_handler(event, context)
        assert response["statusCode"] == 200, response
        return response

    times = _measure({"handler": handler_call, "ort": lambda: session.run(None, feeds)}, sink, rounds,
                     budget_seconds, most=200)
    entry = {name: summary(values) for name, values in times.items()}
    entry["model"] = "RandomForestClassifier (100 trees, max_depth 12) over the same features"
    entry["handler_vs_ort_median"] = ratio(entry["handler"]["median_ms"], entry["ort"]["median_ms"])
    log(f"  forest batch 1000: handler {entry['handler']['median_ms']:.3f} ms, "
        f"ort {entry['ort']['median_ms']:.3f} ms (n={entry['handler']['n']})")
    return entry


# --------------------------------------------------------------------------- cold start


def cold(*, runs: int = 5, log=print) -> dict:
    """Fresh processes importing a handler, loading the model and answering one request.

    S3 and DynamoDB are moto behind the local cloud's HTTP endpoint in this process (both paths
    talk to it over HTTP, as a fresh Lambda talks to AWS). Each run is ``python -m bench.cold <path>``;
its wall time from
    spawn to answer is the figure (interpreter start included, the same for both; its exit is not:
    a Lambda sandbox does not exit after its first request), with the
    child's own import / first-request split beside it. Paths alternate run by run.
    """
    import boto3
    from moto import mock_aws

    from localcloud.server import AwsServer  # moto's backends over HTTP, without Flask

    trained = _trained()
    samples: dict[str, list[dict]] = {"ort": [], "sklearn": []}
    with mock_aws():
        server = AwsServer(port=0)
        server.start()
        tmp = tempfile.TemporaryDirectory(prefix="shipyard-bench-cold-")  # not in the repository
        request = Path(tmp.name) / "cold-event.json"
        try:
            endpoint = f"http://127.0.0.1:{server.port}"
            env = {**os.environ, **ENV, "AWS_ENDPOINT_URL": endpoint}
            env.pop("AWS_PROFILE", None)
            _publish(boto3.client("dynamodb", region_name="us-east-1"), boto3.client("s3", region_name="us-east-1"),
                     trained)
            request.write_text(json.dumps(_event(_records(trained, 1))))
            for path in samples:  # one unmeasured run each: the OS file cache is warm for both
                _cold_run(path, request, env)
            for _ in range(runs):
                for path in samples:
                    samples[path].append(_cold_run(path, request, env))
        finally:
            tmp.cleanup()
            server.stop()
    out: dict = {"runs": runs}
    for path, values in samples.items():
        out[path] = {
            "wall_ms_median": round(statistics.median(v["wall_ms"] for v in values), 1),
            "import_ms_median": round(statistics.median(v["import_ms"] for v in values), 1),
            "first_request_ms_median": round(statistics.median(v["first_request_ms"] for v in values), 1),
            "wall_ms": [v["wall_ms"] for v in values],
            "exit_ms_median": round(statistics.median(v["exit_ms"] for v in values), 1),
        }
        log(f"  cold {path:>7}: {out[path]['wall_ms_median']:.0f} ms (import {out[path]['import_ms_median']:.0f} ms, "
            f"first request {out[path]['first_request_ms_median']:.0f} ms)")
    out["ort_vs_sklearn"] = ratio(out["ort"]["wall_ms_median"], out["sklearn"]["wall_ms_median"])
    out["ort_vs_sklearn_to_exit"] = ratio(out["ort"]["exit_ms_median"], out["sklearn"]["exit_ms_median"])
    return out


def _cold_run(path: str, request: Path, env: dict) -> dict:
    """One fresh process: wall time from spawn to its answer (``wall_ms``, the figure) and to its
    exit (``exit_ms``). A Lambda sandbox does not exit after its first request, so the teardown of
    the interpreter is reported, not counted."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.cold", path, str(request)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answer = proc.stdout.readline()  # the child prints its timings right after answering, flushed
    answered = time.perf_counter()
    try:
        rest, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    exited = time.perf_counter()
    if proc.returncode or not answer.strip():
        raise RuntimeError(f"cold start ({path}) failed:\n{(err or '')[-3000:]}")
    timings = json.loads(answer)
    return {"wall_ms": round((answered - start) * 1e3, 1), "exit_ms": round((exited - start) * 1e3, 1), **timings}
