"""The inference API's OpenAPI document, generated from the handler's routes (docs, fuzz tests)."""
from __future__ import annotations

import json
from typing import Any

TITLE = "Shipyard inference API"
VERSION = "1.0.0"
DESCRIPTION = (
    "Predictions from the production (or a pinned) version of each model. Errors are JSON "
    '{"message": "..."}: 400 malformed body / wrong features / wrong types / non-finite numbers, '
    "404 unknown model, version or route, 409 no production version yet, 413 too many instances, "
    "503 artifact failed its sha256 check."
)


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI 3 document as a dict."""
    from functions.inference.handler import app

    doc = json.loads(app.get_openapi_json_schema(title=TITLE, version=VERSION, description=DESCRIPTION))
    # Powertools documents its default 422 for validation errors; this API answers 400 instead.
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas = doc.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(unused, None)
    return doc


def openapi_json() -> str:
    """The OpenAPI 3 document as JSON text."""
    return json.dumps(openapi_schema(), indent=2)


if __name__ == "__main__":
    print(openapi_json())
