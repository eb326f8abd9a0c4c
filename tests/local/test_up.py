"""`shipyard local up` as a user runs it: a process that prints its endpoints, serves, and stops on a signal."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parents[2]


def test_local_up_prints_endpoints_serves_the_stack_and_stops_on_sigterm(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "local", "up", "--aws-port", "0", "--api-port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines, deadline = [], time.time() + 180
        while time.time() < deadline:
            line = proc.stdout.readline()
            assert line, f"local up exited early: {proc.stderr.read()[-2000:]}"
            lines.append(line.strip())
            if line.strip() == "ready":
                break
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
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0
