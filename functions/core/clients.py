"""AWS clients and the registry, built once per warm Lambda and shared by a function's handler.

A Lambda process runs one handler, so one cache serves it; the pipeline's handlers pass their
retry configuration (``functions/pipeline/runtime.py``), the others take boto3's defaults.
Tests hand in their own clients by replacing ``_cache``.
"""
from __future__ import annotations

from typing import Any

import boto3

from functions.core.registry import Registry

_cache: dict[str, Any] = {}


def client(service: str, *, config: Any = None):
    """The boto3 client of ``service`` (the first call's ``config`` holds for the process)."""
    if service not in _cache:
        _cache[service] = boto3.client(service, config=config)
    return _cache[service]


def registry(*, config: Any = None) -> Registry:
    """The registry of ``REGISTRY_TABLE`` over :func:`client` ``("dynamodb")``."""
    if "registry" not in _cache:
        _cache["registry"] = Registry.from_env(client=client("dynamodb", config=config))
    return _cache["registry"]

