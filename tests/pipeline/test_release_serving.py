"""Progressive release on the real serving path of the local cloud: API Gateway -> the inference
function -> registry, with the release written into the registry directly (the release loop is
its own state machine). Canary routing per caller key through the real API, then a shadow
release's numbers read back from CloudWatch by ``shipyard release status``."""
from __future__ import annotations

import csv
import io
import json
import time
import urllib.request

import pytest

from tests.pipeline.conftest import CONFIG, Run, data


def _records(n: int) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(data.animals(seed=5).decode())))[:n]
    out = []
    for r in rows:
        r.pop("species", None)
        rec = {}
        for k, v in r.items():
            try:
                rec[k] = None if v == "" else float(v)
            except ValueError:
                rec[k] = v
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def served(cloud):
    from functions.core.registry import Registry

    r = Run(cloud, "animals", data.animals(seed=11), "release.csv")
    assert r.execution()["status"] == "SUCCEEDED"
    registry = Registry(cloud.outputs["RegistryTableName"], client=cloud.client("dynamodb"),
                        audit_table=cloud.outputs["AuditTableName"], known_models=["animals"])
    production = registry.get_alias("animals")
    assert production
    return registry, int(production)


def candidate_copy(registry, production: int) -> int:
    """A candidate version with production's artifact (what a retrain on the same data gives)."""
    record = registry.get_version("animals", production)
    v = registry.allocate_version("animals", estimator="copy", params={})["version"]
    registry.record_candidate("animals", v, artifact_key=record["artifact_key"],
                              artifact_sha256=record["artifact_sha256"],
                              artifact_version_id=record.get("artifact_version_id"),
                              schema=record["schema"], metrics={}, lineage={})
    return v


def call(cloud, method, path, body=None, key=None):
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    url = cloud.outputs["ApiUrl"].rstrip("/") + path
    data_ = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if key is not None:
        headers["X-Routing-Key"] = key
    env = cloud.environment()
    session = boto3.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                            aws_session_token=env.get("AWS_SESSION_TOKEN"), region_name="us-east-1")
    req = AWSRequest(method=method, url=url, data=data_, headers=headers)
    SigV4Auth(session.get_credentials(), "execute-api", env.get("AWS_REGION") or "us-east-1").add_auth(req)
    r = urllib.request.Request(url, data=data_, method=method, headers=dict(req.headers.items()))
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_canary_routes_per_caller_key_through_api_gateway(cloud, served):
    registry, production = served
    v = candidate_copy(registry, production)
    registry.start_release("animals", v, mode="canary", release_id="canary-1", expected_production=production,
                           execution_arn="arn:test", percent=30, bake=600, actor="tests", reason="test")
    status, _, model = call(cloud, "GET", "/models/animals")  # this container serves the release at once
    assert status == 200 and model["release"]["mode"] == "canary" and model["release"]["version"] == v
    assert "execution_arn" not in model["release"]
    records = _records(2)
    seen = {}
    for i in range(60):
        status, headers, body = call(cloud, "POST", "/models/animals/predict", {"instances": records}, key=f"c{i}")
        assert status == 200, body
        assert str(body["version"]) == headers.get("X-Model-Version")
        seen[f"c{i}"] = body["version"]
    assert set(seen.values()) == {production, v}
    for k in list(seen)[:15]:  # sticky
        assert call(cloud, "POST", "/models/animals/predict", {"instances": records}, key=k)[2]["version"] == seen[k]
    status, _, body = call(cloud, "POST", "/models/animals/predict?version=" + str(production),
                           {"instances": records}, key=next(k for k, s in seen.items() if s == v))
    assert body["version"] == production  # pinned: never rerouted
    registry.end_release("animals", "canary-1", reason="test over", actor="tests")


def test_release_status_shows_a_shadow_releases_numbers(cloud, served, monkeypatch, tmp_path, capsys):
    from infra import cli

    registry, production = served
    v = candidate_copy(registry, production)
    registry.start_release("animals", v, mode="shadow", release_id="shadow-1", expected_production=production,
                           execution_arn="arn:test", bake=600, actor="tests", reason="test")
    assert call(cloud, "GET", "/models/animals")[2]["release"]["mode"] == "shadow"
    records = _records(5)
    for i in range(12):
        status, headers, body = call(cloud, "POST", "/models/animals/predict", {"instances": records})
        assert status == 200 and body["version"] == production, body
        if i == 0:
            time.sleep(1.0)  # the candidate loads off the request path
    cloud.wait_idle()
    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"shipyard": CONFIG}}))
    monkeypatch.chdir(tmp_path)
    for k, val in cloud.environment().items():
        monkeypatch.setenv(k, val)
    assert cli.main(["release", "status", "animals", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    numbers = doc["numbers"]
    assert numbers["production"]["version"] == production
    assert numbers["production"]["predictions"] >= 12 * 5 and numbers["production"]["errors"] == 0
    shadow = numbers["shadow"]
    assert shadow["version"] == v and shadow["errors"] == 0
    assert 5 * 8 <= shadow["samples"] <= 12 * 5  # every request after the load was shadowed
    assert shadow["agreement"] == 1.0  # the candidate is production's artifact
    assert cli.main(["release", "status", "animals"]) == 0
    out = capsys.readouterr().out
    assert f"shadow release shadow-1 of v{v} against production v{production}" in out
    assert "agreement with production: 100.00%" in out
