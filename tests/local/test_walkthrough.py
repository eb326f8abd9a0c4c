"""docs/cli.md's walk-through, run as written: `shipyard init` → the local cloud → the stock `aws`
CLI, `shipyard` and curl → `python app.py`. Two commands are not run here, and the test checks they
are the only ones: the install (tests/local/test_init.py installs Shipyard's wheel into a fresh
project) and `cdk deploy` (it needs an AWS account). The default ports are swapped for free ones.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## From `shipyard init` to a deployed stack"
NOT_RUN = (re.compile(r"^python3 -m venv \.venv && \.venv/bin/pip install -r requirements\.txt"),
           re.compile(r"^npx --yes aws-cdk@[\d.]+ deploy"))


def walkthrough() -> list[str]:
    """The commands of the section's shell block, continuation lines joined, comments kept."""
    text = (ROOT / "docs" / "cli.md").read_text()
    section = text[text.index(HEADING):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_walkthrough_lists_the_steps_a_user_needs():
    commands = walkthrough()
    assert commands[0].startswith("shipyard init ")
    assert [c for c in commands if any(p.match(c) for p in NOT_RUN)] == [c for c in commands if
                                                                          c.startswith(("python3 -m venv", "npx"))]
    assert sum(bool(p.match(c)) for c in commands for p in NOT_RUN) == 2
    for step in ("shipyard local up", "aws s3 cp data/iris.csv", "shipyard wait iris", "shipyard runs iris",
                 "shipyard logs train", "shipyard predict iris", "shipyard evaluate iris", "curl ", "python app.py"):
        assert any(c.startswith(step) for c in commands), step


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path):
    aws_port, api_port = _free_port(), _free_port()
    script = ["set -euo pipefail"]
    for command in walkthrough():
        if any(p.match(command) for p in NOT_RUN):
            continue
        command = command.replace("shipyard local up", f"shipyard local up --aws-port {aws_port} --api-port {api_port}")
        command = command.replace("127.0.0.1:5000", f"127.0.0.1:{aws_port}").replace("127.0.0.1:3000",
                                                                                     f"127.0.0.1:{api_port}")
        script.append(command)
    bin_dir = str(Path(sys.executable).parent)  # shipyard, aws and python from this project's virtualenv
    env = {"PATH": os.pathsep.join([bin_dir, "/usr/bin", "/bin"]), "HOME": os.environ.get("HOME", str(tmp_path)),
           "OPENBLAS_NUM_THREADS": "1", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
           # what `cdk synth` in CI would pass; no layer build in a test
           "CDK_CONTEXT_JSON": '{"shipyard:build_layers": "false"}'}
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    log = tmp_path / "churn" / "local.log"
    served = log.read_text()[-3000:] if log.exists() else ""
    detail = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}\nlocal.log:\n{served}"
    assert proc.returncode == 0, detail
    out = proc.stdout
    assert re.search(r"iris v1 promoted", out), detail
    assert re.search(r'"predictions":\s*\["setosa"\]', out), detail  # curl's answer
    predictions = (tmp_path / "churn" / "predictions.csv").read_text().splitlines()
    assert len(predictions) == 151 and "prediction" in predictions[0]
    assert (tmp_path / "churn" / "cdk.out" / "churn.template.json").exists()
    assert (tmp_path / "churn" / ".state").is_dir()
