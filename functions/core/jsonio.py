"""JSON writing at orjson's speed, with the standard library as the fallback.

orjson is in the inference layer only (layers/inference.in): import this module from code that
runs in the inference function (the HTTP handler, capture), never from the training or drift side.
"""
from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(obj: Any) -> str:
    """``obj`` as compact JSON text (one line)."""
    # orjson writes 1000 predictions with probabilities in ~0.1 ms (json: ~1.8 ms). What it cannot
    # write (integers beyond 64 bits, say a huge metric read back from DynamoDB) json writes.
    # Answers hold no NaN (OnnxModel refuses non-finite outputs; DynamoDB stores none).
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(obj, allow_nan=False)
