"""Per-version metrics as CloudWatch Embedded Metric Format lines, written straight to stdout.

The service's Powertools ``Metrics`` object has one dimension set per flush (``model``, for
``Predictions``); the per-version metrics need others (``Model``+``Version``, ``Model``+``Version``
+``Class``), one EMF document each. Powertools' ``single_metric`` would build, validate and print a
document per metric; this writes a request's documents in one ``write``, serialized by orjson.
Names and dimensions: ``functions/core/layout.py`` (docs/release.md). CloudWatch takes at most 100
values per metric in a document: longer value lists are split over several documents.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

from functions.core.jsonio import dumps
from functions.core.layout import VERSION_DIMENSION

NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Shipyard")
MAX_VALUES = 100  # EMF: at most 100 values per metric per document


def documents(dims: dict[str, str], values: dict[str, tuple[str, Any]], *, at_ms: int | None = None) -> list[dict]:
    """EMF documents of ``values`` ({metric: (unit, number or list of numbers)}) with dimensions
    ``dims`` (all of them, one dimension set); lists longer than 100 are split."""
    at_ms = int(time.time() * 1000) if at_ms is None else at_ms
    chunks: list[dict[str, Any]] = [{}]
    for name, (unit, value) in values.items():
        if isinstance(value, list):
            if not value:
                continue
            for i in range(0, len(value), MAX_VALUES):
                if i // MAX_VALUES >= len(chunks):
                    chunks.append({})
                chunks[i // MAX_VALUES][name] = (unit, value[i:i + MAX_VALUES])
        else:
            chunks[0][name] = (unit, value)
    docs = []
    for chunk in chunks:
        if not chunk:
            continue
        doc: dict[str, Any] = {"_aws": {"Timestamp": at_ms, "CloudWatchMetrics": [{
            "Namespace": NAMESPACE, "Dimensions": [list(dims)],
            "Metrics": [{"Name": n, "Unit": u} for n, (u, _) in chunk.items()]}]}}
        doc.update(dims)
        doc.update({n: v for n, (_, v) in chunk.items()})
        docs.append(doc)
    return docs


def version_dims(model: str, version: int) -> dict[str, str]:
    return {"Model": model, VERSION_DIMENSION: str(int(version))}


def emit(docs: list[dict]) -> None:
    """Write the documents, one line each, in one write (never raises: metrics never fail a request)."""
    if not docs:
        return
    try:
        sys.stdout.write("".join(dumps(d) + "\n" for d in docs))
    except Exception:  # noqa: BLE001
        pass
