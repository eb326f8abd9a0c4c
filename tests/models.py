"""Small synthetic models for tests: real scikit-learn, converted to ONNX by functions.core.convert."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import numpy as np

from functions.core import convert
from functions.core.schema import FeatureSchema
from tests.lambda_context import LambdaContext  # noqa: F401 - re-exported for the tests

CLASSES = ["cat", "dog", "fish"]
COLOURS = ["blue", "green", "red"]
REGIONS = ["north", "south"]


@dataclass
class Trained:
    schema: FeatureSchema
    pipeline: Any
    onnx: bytes
    columns: list[str]
    rows: list[list[Any]]  # training table, target included (as a CSV reader would give, but typed)

    def records(self, n: int = 5, start: int = 0) -> list[dict]:
        """Feature records (no target) taken from the training table."""
        idx = {c: i for i, c in enumerate(self.columns)}
        return [{f: r[idx[f]] for f in self.schema.names} for r in self.rows[start:start + n]]

    def arrays(self, n: int = 5, start: int = 0) -> list[list]:
        return [[rec[f] for f in self.schema.names] for rec in self.records(n, start)]

    def sklearn_matrix(self, records: list[dict]) -> np.ndarray:
        return convert.matrix(self.schema, records)


def classification_table(n: int = 240, seed: int = 0) -> tuple[list[str], list[list[Any]]]:
    """Mixed numeric + string features, string class labels, a few missing cells."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(2.0, 3.0, size=n)
    colour = rng.choice(COLOURS, size=n)
    score = x1 + 0.3 * x2 + np.where(colour == "red", 1.5, np.where(colour == "blue", -1.0, 0.0))
    score += rng.normal(0, 0.3, size=n)
    label = np.where(score > 1.2, "fish", np.where(score > 0.0, "dog", "cat"))
    rows = [[float(a), float(b), str(c), str(t)] for a, b, c, t in zip(x1, x2, colour, label)]
    rows[3][0] = None  # missing number: imputed by the pipeline
    rows[7][2] = None  # missing string: imputed by the pipeline
    return ["x1", "x2", "colour", "species"], rows


def regression_table(n: int = 200, seed: int = 1) -> tuple[list[str], list[list[Any]]]:
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, 10, size=n)
    region = rng.choice(REGIONS, size=n)
    x2 = rng.normal(size=n)
    y = 3.0 * x1 - 2.0 * x2 + np.where(region == "north", 5.0, -5.0) + rng.normal(0, 0.1, size=n)
    rows = [[str(r), float(a), float(b), float(t)] for r, a, b, t in zip(region, x1, x2, y)]
    return ["region", "x1", "x2", "price"], rows


def train(columns, rows, target, task, estimator, params=None) -> Trained:
    schema = FeatureSchema.from_rows(columns, rows, target, task)
    X = convert.matrix(schema, rows, columns)
    y = convert.target(schema, rows, columns)
    pipeline = convert.build_pipeline(schema, estimator, params or {}).fit(X, y)
    return Trained(schema, pipeline, convert.to_onnx(pipeline, schema), list(columns), rows)


def classifier() -> Trained:
    return train(*classification_table(), "species", "classification",
                 "sklearn.linear_model.LogisticRegression", {"max_iter": 500})


def regressor() -> Trained:
    return train(*regression_table(), "price", "regression", "sklearn.linear_model.Ridge", {"alpha": 0.5})


# ---- API Gateway REST proxy events ---------------------------------------------------------------

ROUTES = ["/models", "/models/{name}", "/models/{name}/versions/{version}", "/models/{name}/predict"]


def _resource(path: str) -> tuple[str, dict | None]:
    """The API Gateway resource a path matches, and its path parameters.

    As REST APIs do: ``path`` stays percent-encoded, ``pathParameters`` are decoded.
    """
    parts = path.strip("/").split("/")
    for route in ROUTES:
        template = route.strip("/").split("/")
        if len(template) == len(parts) and all(t == p or t.startswith("{") for t, p in zip(template, parts)):
            params = {t[1:-1]: unquote(p) for t, p in zip(template, parts) if t.startswith("{")}
            return route, params or None
    return "/{proxy+}", {"proxy": unquote(path.lstrip("/"))}


def rest_event(method: str, path: str, *, body: str | None = None, query: dict | None = None,
               headers: dict | None = None, base64: bool = False) -> dict:
    """An API Gateway REST API (v1) Lambda proxy event, shaped as API Gateway sends it.

    ``path`` is the request path as sent on the wire (percent-encoded where needed).
    """
    import uuid

    resource, params = _resource(path)
    headers = {"Accept": "application/json", "Host": "abc123.execute-api.us-east-1.amazonaws.com",
               "User-Agent": "pytest", **({"Content-Type": "application/json"} if body is not None else {}),
               **(headers or {})}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": params,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": str(uuid.uuid4()),
            "extendedRequestId": "abc=",
            "accountId": "123456789012",
            "apiId": "abc123",
            "protocol": "HTTP/1.1",
            "requestTime": "01/Jan/2025:00:00:00 +0000",
            "requestTimeEpoch": 1735689600000,
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest", "accountId": None, "caller": None,
                         "user": None, "userArn": None, "accessKey": None},
        },
        "body": body,
        "isBase64Encoded": base64,
    }


def invoke(method: str, path: str, *, body: Any = None, raw_body: str | None = None,
           query: dict | None = None, headers: dict | None = None) -> tuple[int, dict, Any]:
    """Call the inference Lambda handler; returns (status, headers, parsed JSON body)."""
    from functions.inference.handler import lambda_handler

    text = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    response = lambda_handler(rest_event(method, path, body=text, query=query, headers=headers), LambdaContext())
    headers = dict(response.get("headers") or {})
    headers.update({k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items() if v})
    return response["statusCode"], headers, json.loads(response["body"])
