"""The local cloud's API under concurrency: signed ``POST /models/iris/predict`` on ``shipyard local up``'s
stack (Shipyard's own project, the iris model trained and promoted by the pipeline, as the demo does).

Latency of one client (sequential requests: the baseline, measured in the same run) and of 20
concurrent clients (each a new connection per request, as a CLI or a load test opens them), p50 and
p99, with the number of connection errors (refused or reset connections; must be 0) and of answers
other than 200. Ratios: p50@20 / p50@1 and p99@20 / p99@1, with warm workers (the first burst of 20,
which starts the workers, is reported apart). With the default worker cap (10 per
function) 20 clients queue for workers, so the ratio is ~ 20 / min(10, cores) on a small machine.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import time

from bench.common import percentile, ratio

CLIENTS = 20


def _signed_post(url: str, body: bytes, credentials) -> int:
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(credentials, "execute-api", os.environ.get("AWS_REGION", "us-east-1")).add_auth(req)
    return requests.post(url, data=body, headers=dict(req.headers), timeout=120).status_code


def _stats(seconds: list[float]) -> dict:
    return {"p50_ms": round(percentile(seconds, 50) * 1e3, 2), "p99_ms": round(percentile(seconds, 99) * 1e3, 2),
            "n": len(seconds)}


def measure(url: str, body: bytes, credentials, *, requests_1: int, per_client: int,
            clients: int = CLIENTS) -> dict:
    """Latencies at 1 and `clients` concurrent clients against `url`."""
    import requests

    errors = {"connection": 0, "status": {}}

    def one() -> float | None:
        start = time.perf_counter()
        try:
            status = _signed_post(url, body, credentials)
        except (requests.ConnectionError, ConnectionError):
            errors["connection"] += 1
            return None
        if status != 200:
            errors["status"][str(status)] = errors["status"].get(str(status), 0) + 1
        return time.perf_counter() - start

    for _ in range(3):  # warm workers
        one()
    single = [t for t in (one() for _ in range(requests_1)) if t is not None]

    def client(_: int) -> list[float]:
        return [t for t in (one() for _ in range(per_client)) if t is not None]

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        # the first burst starts the workers (cold starts, up to the cap): reported apart, not in the figures
        first_burst = [t for t in pool.map(lambda _: one(), range(clients)) if t is not None]
        started = time.perf_counter()
        concurrent_times = [t for ts in pool.map(client, range(clients)) for t in ts]
    wall = time.perf_counter() - started
    one_client, many = _stats(single), _stats(concurrent_times)
    return {
        "clients": clients,
        "one_client": one_client,
        f"clients_{clients}": many,
        f"clients_{clients}_requests_per_s": round(len(concurrent_times) / wall, 1) if wall else None,
        "first_burst_with_cold_starts": _stats(first_burst),
        "connection_errors": errors["connection"],
        "non_200": errors["status"],
        "p50_ratio": ratio(many["p50_ms"], one_client["p50_ms"]),
        "p99_ratio": ratio(many["p99_ms"], one_client["p99_ms"]),
    }


def run(*, requests_1: int = 60, per_client: int = 10, log=print) -> dict:
    """Start Shipyard's stack locally, train the iris model (the demo's first steps), measure."""
    from botocore.credentials import Credentials

    from infra.demo import FEATURES, MODEL, PROJECT_ROOT, Demo, iris_rows
    from infra.localstart import start_local_cloud

    started = time.perf_counter()
    cloud = start_local_cloud(0, 0, project_dir=str(PROJECT_ROOT), log=lambda msg: None)
    try:
        log(f"  local cloud up in {time.perf_counter() - started:.0f} s; training {MODEL}")
        demo = Demo(cloud, out=lambda line: None)
        demo.upload()
        demo.first_version()
        url = cloud.outputs["ApiUrl"].rstrip("/") + f"/models/{MODEL}/predict"
        body = json.dumps({"instances": [dict(zip(FEATURES, r)) for r in iris_rows()[0][:5].tolist()]}).encode()
        creds = cloud.session.get_credentials()
        result = measure(url, body, Credentials(creds.access_key, creds.secret_key),
                         requests_1=requests_1, per_client=per_client)
        result["worker_cap"] = cloud.runtime.concurrency
        result["peak_workers"] = max(cloud.runtime.peak_workers.values(), default=0)
        log(f"  1 client p50 {result['one_client']['p50_ms']} ms p99 {result['one_client']['p99_ms']} ms; "
            f"{CLIENTS} clients p50 {result[f'clients_{CLIENTS}']['p50_ms']} ms "
            f"p99 {result[f'clients_{CLIENTS}']['p99_ms']} ms; {result['connection_errors']} connection errors")
        return result
    finally:
        cloud.stop()


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
