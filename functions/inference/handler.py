"""Inference function: the Shipyard HTTP API (API Gateway REST proxy -> Powertools resolver).

Thin by design: the serving resolver's routes and ``lambda_handler``, nothing else. What the
routes do, the warm serving state and the error answers are in ``functions/inference/service.py``;
the rules (registry, artifacts, schema, ONNX model) in ``functions.core``.

Two resolvers, one behaviour (see docs/api.md, "Request validation"). ``lambda_handler`` chooses
one per request, before resolving it (``functions/inference/plain.py``):

- ``app`` (this module) answers every plainly valid request — a JSON object body
  ``{"instances": [...]}`` (and optionally ``"ids"``), parsed once by the choice and handed to the route in the routing
  context, ``version`` absent or plain decimal digits — and ``FeatureSchema.to_feeds`` does the
  real validation of the instances. It has no pydantic/OpenAPI validation.
- Anything else (a body that is not such an object, a bad ``version``, an odd content type or
  encoding) goes to the validating resolver of ``functions/inference/openapi.py``
  (``enable_validation=True``, pydantic, the routes' OpenAPI document), built on first need, so
  malformed requests get exactly the answers and messages they always got.
"""
from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from functions.core.jsonio import loads
from functions.inference import service
from functions.inference.plain import PREDICTION, plain_request
from functions.inference.service import logger, metrics

# Building a Tracer imports the X-Ray SDK (~110 ms of cold start) even when tracing is disabled:
# build it only when Powertools would trace (in Lambda, POWERTOOLS_TRACE_DISABLED not set).
tracer: Tracer | None = None if Tracer._is_tracer_disabled() else Tracer(service=service.SERVICE_NAME)

app = APIGatewayRestResolver(json_body_deserializer=loads)


@app.get("/models")
def list_models_route():
    return service.list_models()


@app.get("/models/<name>")
def get_model_route(name: str):
    return service.get_model(name)


@app.get("/models/<name>/versions/<version>")
def get_version_route(name: str, version: str):
    return service.get_version(name, int(version))  # plain digits: plain_request chose this resolver


@app.post("/models/<name>/predict")
def predict_route(name: str):
    instances, version, ids = app.context[PREDICTION]  # parsed once, by plain_request
    return service.predict(name, instances, version, app.current_event.raw_event, ids)


service.install_error_handlers(app)


def resolver_for(event: Any) -> tuple[APIGatewayRestResolver, dict[str, Any]]:
    """The resolver that answers ``event`` and the routing context it gets: ``app`` for a plainly
    valid request, else the validating resolver (imported and built on first need)."""
    plain = plain_request(event)
    if plain is not None:
        return app, plain
    from functions.inference.openapi import validating_app

    return validating_app(), {}


def _handle(event: dict, context: Any) -> dict:
    # Named as before for Tracer.capture_lambda_handler: its subsegment is "## lambda_handler".
    try:
        resolver, routing_context = resolver_for(event)
        if routing_context:
            resolver.append_context(**routing_context)
        return resolver.resolve(event, context)
    except Exception:  # an error outside any route (e.g. a malformed event): still JSON, no traceback
        logger.exception("unexpected error outside a route")
        return {"statusCode": 500, "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"message": "internal error; the request was logged"}),
                "isBase64Encoded": False}


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: Any) -> dict:
    # The correlation id of correlation_paths.API_GATEWAY_REST, read directly: the JMESPath
    # query costs ~10% of a one-instance prediction.
    context_of_request = event.get("requestContext") if isinstance(event, dict) else None
    logger.set_correlation_id(context_of_request.get("requestId") if isinstance(context_of_request, dict) else None)
    return _traced(event, context)


_handle.__name__ = _handle.__qualname__ = "lambda_handler"
_traced = tracer.capture_lambda_handler(_handle) if tracer is not None else _handle
handler = lambda_handler
