"""One cold start: ``python -m bench.cold ort|sklearn EVENT.json`` (spawned by bench.inference).

Imports the handler, answers the one request (which loads the model from S3), and prints the
import and first-request times as the last line of stdout, JSON.
"""
import time

_start = time.perf_counter()

import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

from tests.lambda_context import LambdaContext  # noqa: E402 - imports nothing (tests.models loads scikit-learn)


def main() -> None:
    path, event_file = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    if path == "ort":
        from functions.inference.handler import lambda_handler
    elif path == "sklearn":
        from bench.sklearn_handler import lambda_handler
    else:
        raise SystemExit(f"unknown path {path!r}; expected ort or sklearn")
    t1 = time.perf_counter()
    with open(event_file, encoding="utf-8") as fh:
        event = json.load(fh)
    t2 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        response = lambda_handler(event, LambdaContext())
    t3 = time.perf_counter()
    if response["statusCode"] != 200:
        raise SystemExit(f"{path}: {response}")
    print(json.dumps({"import_ms": round((t1 - t0) * 1e3, 1), "first_request_ms": round((t3 - t2) * 1e3, 1),
                      "since_interpreter_ready_ms": round((t3 - _start) * 1e3, 1)}), flush=True)


main()
