"""`shipyard local up` as a user runs it: a process that prints its endpoints, serves, and stops on a signal."""
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support import local_up_kwargs

ROOT = Path(__file__).resolve().parents[2]


def _lines(stream) -> "queue.Queue[str | None]":
    """stdout's lines on a queue (None at EOF), so the test can wait for them with a deadline."""
    lines: queue.Queue = queue.Queue()

    def read():
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True, name="local-up-stdout").start()
    return lines


def test_local_up_prints_endpoints_serves_the_stack_and_stops_on_sigterm(tmp_path, shipyard_assembly):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    stderr_path = tmp_path / "local-up.stderr"
    with open(stderr_path, "w") as stderr:  # a file: a PIPE nobody reads can fill up and block the process
        proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "local", "up", "--aws-port", "0",
                                 "--api-port", "0", "--assembly", str(shipyard_assembly)],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        _serve_and_check(_lines(proc.stdout), stderr_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise
        proc.stdout.close()
    assert code == 0, stderr_path.read_text()[-2000:]
    assert "IAM: enforced for the functions' roles" in stderr_path.read_text()


@pytest.mark.parametrize(("flag", "enforced"), [([], True), (["--iam", "on"], True), (["--iam", "off"], False)])
def test_local_up_passes_the_iam_choice_to_the_local_cloud(monkeypatch, capsys, flag, enforced):
    from infra import cli

    assert local_up_kwargs(monkeypatch, *flag)["iam"] is enforced
    with pytest.raises(SystemExit):
        cli.main(["local", "up", "--iam", "maybe"])
    assert "invalid choice: 'maybe'" in capsys.readouterr().err


def _serve_and_check(stdout, stderr_path):
    lines, deadline = [], time.monotonic() + 180
    while not lines or lines[-1] != "ready":
        try:
            line = stdout.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no 'ready' from local up within 180 s; printed {lines}; stderr:\n"
                                 + stderr_path.read_text()[-2000:]) from None
        assert line is not None, f"local up exited early: {stderr_path.read_text()[-2000:]}"
        lines.append(line.strip())
    assert len(lines) == 3 and lines[2] == "ready", lines
    aws = re.fullmatch(r"aws: (http://127\.0\.0\.1:\d+)", lines[0]).group(1)
    api = re.fullmatch(r"api: (http://127\.0\.0\.1:\d+)", lines[1]).group(1)

    cfn = boto3.client("cloudformation", endpoint_url=aws, region_name="us-east-1")
    outputs = {o["OutputKey"] for o in cfn.describe_stacks(StackName="Shipyard")["Stacks"][0]["Outputs"]}
    assert {"ApiUrl", "DataBucketName", "RegistryTableName"} <= outputs

    request = AWSRequest(method="GET", url=f"{api}/models")
    SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(request)
    answer = requests.get(f"{api}/models", headers=dict(request.headers), timeout=30)
    assert answer.status_code == 200
    assert {"name": "iris", "production": None} in answer.json()["models"]
    assert requests.get(f"{api}/models", timeout=30).status_code == 403  # IAM auth: unsigned is refused
