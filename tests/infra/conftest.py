"""The infra tests' extra synthesis (api_key variant); the default one is shared by every suite
(tests/conftest.py: ``synth``, ``default_config``)."""
from __future__ import annotations

import json

import pytest

from tests.synth import Synth, synthesize  # noqa: F401 (Synth: type of the fixtures)


@pytest.fixture(scope="session")
def synth_api_key(tmp_path_factory, default_config) -> Synth:
    """The one extra synthesis: api.auth = api_key, a regression model with its own training
    memory (two Train functions), x86_64, alarm e-mail."""
    config = json.loads(json.dumps(default_config))
    config["api"] = {"auth": "api_key", "rate_limit": 10, "burst_limit": 20}
    config["architecture"] = "x86_64"
    config["alarm_email"] = "ml-team@example.com"
    config["models"]["house-prices"] = {"target": "price", "task": "regression", "compute": {"memory": 6144}}
    return synthesize(tmp_path_factory.mktemp("cdk.out.api_key"), config)
