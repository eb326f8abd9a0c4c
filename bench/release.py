"""Release benchmark: what a canary and a shadow release add to a warm prediction.

One warm ModelServer (moto registry and bucket, as bench/inference.py), three models trained on the
Palmer penguins (tests/realdata.py), each a production v1 and a candidate v2 (random forests of 50
trees, two seeds: a retrain): ``none`` has no release, ``canary`` a 50 % canary, ``shadow`` a shadow
release. The same request goes through ``lambda_handler`` for each, interleaved; the figures are
ratios against the no-release model in the same run. The shadow's candidate is loaded before
timing (its first load is off the request path by design: see docs/api.md, "Releases").
"""
from __future__ import annotations

import csv
import io
import json
import os
from unittest import mock

from bench.common import interleaved, ratio, summary
from bench.inference import ENV

MODELS = ("rel-none", "rel-canary", "rel-shadow")
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]
BATCHES = (1, 100)


def _penguins():
    from tests.realdata import penguins

    rows = []
    for r in csv.DictReader(io.StringIO(penguins().decode())):
        if r["species"] == "NA":
            continue
        row = []
        for c in FEATURES:
            v = r[c]
            row.append(None if v == "NA" else (v if c in ("island", "sex") else float(v)))
        rows.append(row + [r["species"]])
    return FEATURES + ["species"], rows


def _train(seed: int):
    from tests.models import train

    return train(*_penguins(), "species", "classification", "sklearn.ensemble.RandomForestClassifier",
                 {"n_estimators": 50, "max_depth": 8, "random_state": seed})


def run(*, rounds: int = 10, per_round: int = 30, log=print) -> dict:
    import boto3
    from moto import mock_aws

    from functions.core.artifacts import put_artifact
    from functions.core.registry import Registry
    from tests.models import LambdaContext, rest_event
    from tests.support import create_artifact_bucket, create_registry_table

    production, candidate = _train(0), _train(1)
    env = {**ENV, "SHIPYARD_MODELS": json.dumps(list(MODELS))}
    with mock.patch.dict(os.environ, env), mock_aws():
        ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
        create_registry_table(ddb)
        create_artifact_bucket(s3)
        registry = Registry("registry", client=ddb, known_models=list(MODELS))
        for model in MODELS:
            for trained in (production, candidate):
                v = registry.allocate_version(model, estimator="rf", params={})["version"]
                key = f"models/{model}/v{v}/model.onnx"
                digest = put_artifact(s3, "artifacts", key, trained.onnx)
                registry.record_candidate(model, v, artifact_key=key, artifact_sha256=digest,
                                          schema=trained.schema.to_dict(), metrics={}, lineage={})
            registry.promote(model, 1, reason="bench", actor="bench")
        registry.start_release("rel-canary", 2, mode="canary", release_id="c", expected_production=1,
                               execution_arn="arn", percent=50, actor="bench", reason="bench")
        registry.start_release("rel-shadow", 2, mode="shadow", release_id="s", expected_production=1,
                               execution_arn="arn", actor="bench", reason="bench")
        from functions.inference import handler as shipyard
        from functions.inference import service

        service.reset()
        context = LambdaContext()
        records = production.records(len(production.rows))
        sink = open(os.devnull, "w")  # EMF lines: serialized as on Lambda, not printed
        out: dict = {"model": "RandomForestClassifier, 50 trees depth 8, Palmer penguins (6 features), "
                              "candidate: the same with another seed", "batches": {}}
        import contextlib

        try:
            with contextlib.redirect_stdout(sink):
                for batch in BATCHES:
                    body = {"instances": [records[i % len(records)] for i in range(batch)]}
                    calls = {}
                    for model in MODELS:
                        event = rest_event("POST", f"/models/{model}/predict", body=json.dumps(body))

                        def call(event=event):
                            response = shipyard.lambda_handler(event, context)
                            assert response["statusCode"] == 200, response
                        calls[model] = call
                    for fn in calls.values():
                        fn()
                    service.server().join_loads()  # the shadow's candidate, loaded off the path
                    times = interleaved(calls, rounds=rounds, per_round=per_round, warmup=5)
                    stats = {m.split("-")[1]: summary(times[m]) for m in MODELS}
                    entry = {**stats}
                    for mode in ("canary", "shadow"):
                        for stat in ("median", "p99"):
                            entry[f"{mode}_vs_none_{stat}"] = ratio(stats[mode][f"{stat}_ms"],
                                                                    stats["none"][f"{stat}_ms"])
                        entry[f"{mode}_added_median_ms"] = round(stats[mode]["median_ms"]
                                                                 - stats["none"]["median_ms"], 3)
                        entry[f"{mode}_added_p99_ms"] = round(stats[mode]["p99_ms"] - stats["none"]["p99_ms"], 3)
                    out["batches"][str(batch)] = entry
                    log(f"  batch {batch}: none {stats['none']['median_ms']:.3f} ms, canary "
                        f"{entry['canary_vs_none_median']}x, shadow {entry['shadow_vs_none_median']}x (median)")
        finally:
            sink.close()
            service.reset()
    return out
