"""A local cloud you can live in: relative assemblies, temporary directories, concurrency, payload and
memory limits, the payload hash of a signed request, media types (issue 13)."""
import concurrent.futures
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

HANDLERS = textwrap.dedent('''
    import json, os, subprocess, sys, time

    def echo(event, context):
        body = event.get("body") or ""
        if body.startswith("{") and json.loads(body).get("sleep"):
            time.sleep(json.loads(body)["sleep"])
        return {"statusCode": 200, "body": json.dumps({"length": len(body), "pid": os.getpid()})}

    def big(event, context):  # a result over Lambda's 6 MB synchronous response quota
        return "x" * (6 * 2**20 + 300_000)

    def child_hog(event, context):  # 300 MB in a child process, from a 128 MB function
        subprocess.run([sys.executable, "-c", "x = b'x' * (300 * 2**20)"], check=True)
        return "survived"

    def numpy_hog(event, context):  # 300 MB of numpy, freed before the function returns
        import numpy as np
        a = np.ones(300 * 2**20 // 8)
        total = float(a[::4096].sum())
        del a
        return total

    def hold(event, context):
        time.sleep(event.get("sleep", 1))
        return "held"
''')


def _fn(handler, memory=128, timeout=30, reserved=None, key="app.zip"):
    props = {"Code": {"S3Bucket": "cdk-assets", "S3Key": key}, "Handler": f"limits_app.{handler}",
             "Runtime": "python3.12", "Timeout": timeout, "MemorySize": memory,
             "Role": {"Fn::GetAtt": ["Role", "Arn"]}}
    if reserved is not None:
        props["ReservedConcurrentExecutions"] = reserved
    return {"Type": "AWS::Lambda::Function", "Properties": props}


def _method(resource, auth, function="Echo"):
    return {"Type": "AWS::ApiGateway::Method", "Properties": {
        "RestApiId": {"Ref": "RestApi"}, "ResourceId": {"Ref": resource}, "HttpMethod": "POST",
        "AuthorizationType": auth,
        "Integration": {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "Uri": {"Fn::Sub":
            "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${" + function + ".Arn}"
            "/invocations"}}}}


TEMPLATE = {
    "Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "lambda.amazonaws.com"}}]}}},
        "Echo": _fn("echo"),
        "Big": _fn("big", key="zipped.zip"),  # a pre-built zip asset: run from an extract
        "ChildHog": _fn("child_hog"),
        "NumpyHog": _fn("numpy_hog"),
        "Reserved": _fn("hold", reserved=1),
        "EchoFromApiGateway": {"Type": "AWS::Lambda::Permission", "Properties": {
            "FunctionName": {"Ref": "Echo"}, "Action": "lambda:InvokeFunction",
            "Principal": "apigateway.amazonaws.com"}},
        "RestApi": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "limits-api"}},
        "Signed": {"Type": "AWS::ApiGateway::Resource", "Properties": {
            "RestApiId": {"Ref": "RestApi"}, "ParentId": {"Fn::GetAtt": ["RestApi", "RootResourceId"]},
            "PathPart": "signed"}},
        "Open": {"Type": "AWS::ApiGateway::Resource", "Properties": {
            "RestApiId": {"Ref": "RestApi"}, "ParentId": {"Fn::GetAtt": ["RestApi", "RootResourceId"]},
            "PathPart": "open"}},
        "Held": {"Type": "AWS::ApiGateway::Resource", "Properties": {
            "RestApiId": {"Ref": "RestApi"}, "ParentId": {"Fn::GetAtt": ["RestApi", "RootResourceId"]},
            "PathPart": "held"}},
        "ReservedFromApiGateway": {"Type": "AWS::Lambda::Permission", "Properties": {
            "FunctionName": {"Ref": "Reserved"}, "Action": "lambda:InvokeFunction",
            "Principal": "apigateway.amazonaws.com"}},
        "SignedPost": _method("Signed", "AWS_IAM"),
        "OpenPost": _method("Open", "NONE"),
        "HeldPost": _method("Held", "NONE", function="Reserved"),
        "Deployment": {"Type": "AWS::ApiGateway::Deployment", "Properties": {"RestApiId": {"Ref": "RestApi"}},
                       "DependsOn": ["SignedPost", "OpenPost", "HeldPost"]},
        "Stage": {"Type": "AWS::ApiGateway::Stage", "Properties": {
            "RestApiId": {"Ref": "RestApi"}, "DeploymentId": {"Ref": "Deployment"}, "StageName": "prod"}},
    },
    "Outputs": {"ApiUrl": {"Value": {"Fn::Join": ["", ["https://", {"Ref": "RestApi"}, ".execute-api.",
                                                       {"Ref": "AWS::Region"}, ".amazonaws.com/prod/"]]}}},
}

# A CDK app in miniature: writes the template, its asset manifest, a directory asset (as CDK's
# Code.from_asset) and a zip file asset to CDK_OUTDIR.
APP = textwrap.dedent('''
    import json, os, pathlib, zipfile
    here = pathlib.Path(__file__).parent
    out = pathlib.Path(os.environ["CDK_OUTDIR"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "Limits.template.json").write_text((here / "template.json").read_text())
    (out / "asset.app").mkdir()
    (out / "asset.app" / "limits_app.py").write_text((here / "limits_app.py").read_text())
    with zipfile.ZipFile(out / "asset.zipped.zip", "w") as zf:
        zf.writestr("limits_app.py", (here / "limits_app.py").read_text())
    (out / "Limits.assets.json").write_text(json.dumps({"version": "36.0.0", "files": {
        "app": {"source": {"path": "asset.app", "packaging": "zip"},
                "destinations": {"d": {"bucketName": "cdk-assets", "objectKey": "app.zip"}}},
        "zipped": {"source": {"path": "asset.zipped.zip", "packaging": "file"},
                   "destinations": {"d": {"bucketName": "cdk-assets", "objectKey": "zipped.zip"}}}}}))
    (out / "manifest.json").write_text(json.dumps({"version": "36.0.0", "artifacts": {"Limits": {
        "type": "aws:cloudformation:stack", "properties": {"templateFile": "Limits.template.json"}}}}))
''')


def _project(root: Path, template: dict = TEMPLATE) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cdk.json").write_text(json.dumps({"app": f"{sys.executable} app.py"}))
    (root / "app.py").write_text(APP)
    (root / "template.json").write_text(json.dumps(template))
    (root / "limits_app.py").write_text(HANDLERS)
    return root


def _assembly(project: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "app.py"], cwd=project, env=dict(os.environ, CDK_OUTDIR=str(out)), check=True)
    return out


def _signed(url, body, headers=None, send=None):
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(req)
    return requests.post(url, data=body if send is None else send, headers=dict(req.headers), timeout=120)


@pytest.fixture(scope="class")
def cloud(tmp_path_factory):
    from localcloud import LocalCloud, Template

    out = _assembly(_project(tmp_path_factory.mktemp("limits")), tmp_path_factory.mktemp("limits-out"))
    lines = []
    saved = {k: os.environ.get(k) for k in ("LOCALCLOUD_LAMBDA_CONCURRENCY",)}
    os.environ["LOCALCLOUD_LAMBDA_CONCURRENCY"] = "4"  # cheap on a shared machine; the default is 10
    c = LocalCloud(Template.load(out), aws_port=0, api_port=0, clock=False, log=lines.append)
    c.log_lines = lines
    try:
        c.start()
        yield c
    finally:
        c.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- 1. relative --assembly


def test_a_relative_assembly_runs_its_functions(tmp_path, monkeypatch):
    from infra.localstart import start_local_cloud

    _assembly(_project(tmp_path / "project"), tmp_path / "cdk.out")
    monkeypatch.chdir(tmp_path)
    cloud = start_local_cloud(0, 0, assembly="cdk.out", log=lambda msg: None)
    try:
        os.chdir("/")  # the shell's directory is not the workers' concern once started
        resp = cloud.client("lambda").invoke(FunctionName=cloud.physical_ids["Echo"], Payload=b'{"body": "hi"}')
        assert "FunctionError" not in resp, resp["Payload"].read()
        assert json.loads(json.loads(resp["Payload"].read())["body"])["length"] == 2
    finally:
        cloud.stop()


def test_a_missing_asset_fails_start_up_naming_the_resource_and_path(tmp_path, monkeypatch):
    from infra.localstart import LocalStartError, start_local_cloud

    out = _assembly(_project(tmp_path / "project"), tmp_path / "cdk.out")
    shutil.rmtree(out / "asset.app")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LocalStartError) as info:
        start_local_cloud(0, 0, assembly="cdk.out", log=lambda msg: None).stop()
    message = str(info.value)
    assert "Echo" in message and str(out / "asset.app") in message and "does not exist" in message, message


# --------------------------------------------------------------------------- 2. temporary directories


def test_start_and_stop_leave_no_temporary_directories(tmp_path, monkeypatch):
    from infra.localstart import start_local_cloud

    project = _project(tmp_path / "project")
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    cloud = start_local_cloud(0, 0, project_dir=str(project), log=lambda msg: None)
    try:
        lam = cloud.client("lambda")
        assert "FunctionError" not in lam.invoke(FunctionName=cloud.physical_ids["Echo"], Payload=b"{}")
        assert lam.invoke(FunctionName=cloud.physical_ids["Big"], Payload=b"{}")["FunctionError"]  # too big
        # a function created through the API runs from an extract of its zip
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("api_fn.py", "def handler(event, context):\n    return 'ok'\n")
        lam.create_function(FunctionName="from-api", Runtime="python3.12", Handler="api_fn.handler",
                            Role=cloud.client("iam").get_role(RoleName=cloud.physical_ids["Role"])["Role"]["Arn"],
                            Code={"ZipFile": buf.getvalue()})
        assert json.loads(lam.invoke(FunctionName="from-api", Payload=b"{}")["Payload"].read()) == "ok"
        assert any(private.iterdir())  # the synthesized assembly and the extracts are there
    finally:
        cloud.stop()
    assert sorted(p.name for p in private.iterdir()) == []


def test_local_up_removes_its_temporary_directories_on_sigterm(tmp_path):
    import signal

    project = _project(tmp_path / "project")
    private = tmp_path / "tmp"
    private.mkdir()
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, TMPDIR=str(private), PYTHONPATH=str(root),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with open(tmp_path / "stderr", "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "local", "up", "--aws-port", "0",
                                 "--api-port", "0"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=stderr,
                                text=True)
    try:
        deadline = time.time() + 120
        for line in proc.stdout:
            if line.strip() == "ready" or time.time() > deadline:
                break
        assert any(private.iterdir()), (tmp_path / "stderr").read_text()[-2000:]  # the synthesized cdk.out
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        proc.stdout.close()
    assert code == 0, (tmp_path / "stderr").read_text()[-2000:]
    assert sorted(p.name for p in private.iterdir()) == []


def _worker_processes(handler: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if any(part.endswith(b"_worker.py") for part in cmdline) and handler.encode() in cmdline:
            try:  # this process's workers only
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == os.getpid():
                pids.append(int(entry.name))
    return pids


def _backlog(port: int) -> int | None:
    """The listen backlog of a local port, as `ss` shows it (Send-Q of a listening socket)."""
    if not shutil.which("ss"):
        return None
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout.split()
    return int(out[2]) if len(out) > 2 else None


class TestOnOneCloud:
    """Tests sharing one local cloud of the hand-written stack (class-scoped: other tests start their own)."""

    # ----------------------------------------------------------------------- 3. concurrency


    def test_twenty_concurrent_signed_requests_no_errors_and_bounded_workers(self, cloud):
        url = cloud.outputs["ApiUrl"] + "signed"
        body = json.dumps({"sleep": 0.3}).encode()

        def one(_):
            return _signed(url, body).status_code

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(one, range(20)))  # a connection error raises here
        assert statuses == [200] * 20
        assert len(_worker_processes("limits_app.echo")) <= 4  # the cap (LOCALCLOUD_LAMBDA_CONCURRENCY)
        name = cloud.physical_ids["Echo"]
        assert cloud.runtime.peak_workers[name] <= 4
        assert cloud.runtime.workers(name) <= 4
        assert cloud.runtime.reap(now=time.time() + 3600) >= 1  # idle workers are recycled
        assert cloud.runtime.workers(name) == 0


    def test_the_listen_backlog_takes_a_burst_of_connections(self, cloud):
        import socket

        for port in (cloud.api_port, cloud.aws_port):
            assert _backlog(port) in (None, 128), port

        # 60 connections opened at once, before any is served: a backlog of 5 refuses or resets some
        socks = [socket.create_connection(("127.0.0.1", cloud.api_port), timeout=10) for _ in range(60)]
        try:
            for s in socks:
                s.sendall(b"POST /prod/open HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            answers = []
            for s in socks:
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                answers.append(data.split(b"\r\n", 1)[0])
        finally:
            for s in socks:
                s.close()
        assert answers == [b"HTTP/1.1 200 OK"] * 60


    def test_a_function_at_its_reserved_concurrency_is_throttled(self, cloud):
        lam = cloud.client("lambda")
        name = cloud.physical_ids["Reserved"]
        first = threading.Thread(target=lambda: lam.invoke(FunctionName=name, Payload=b'{"sleep": 5}'))
        first.start()
        time.sleep(1.5)
        try:
            with pytest.raises(ClientError) as info:
                cloud.bus.client("lambda").invoke(FunctionName=name, Payload=b'{"sleep": 0}')
            assert info.value.response["Error"]["Code"] == "TooManyRequestsException"
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            # through API Gateway (a Lambda proxy integration): its integration failure, a 500
            resp = requests.post(cloud.outputs["ApiUrl"] + "held", data=b"{}", timeout=60)
            assert resp.status_code == 500 and resp.json() == {"message": "Internal server error"}
        finally:
            first.join()
        assert json.loads(lam.invoke(FunctionName=name, Payload=b'{"sleep": 0}')["Payload"].read()) == "held"


    # ----------------------------------------------------------------------- 4. payload limits


    def test_an_invoke_request_over_6_mb_is_refused(self, cloud):
        payload = json.dumps({"data": "x" * (6 * 2**20)}).encode()
        with pytest.raises(ClientError) as info:
            cloud.bus.client("lambda").invoke(FunctionName=cloud.physical_ids["Echo"], Payload=payload)
        assert info.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
        assert "6291456 bytes" in info.value.response["Error"]["Message"]


    def test_a_response_over_6_mb_is_a_function_error(self, cloud):
        resp = cloud.client("lambda").invoke(FunctionName=cloud.physical_ids["Big"], Payload=b"{}")
        assert resp["FunctionError"] == "Unhandled"
        error = json.loads(resp["Payload"].read())
        assert error["errorType"] == "Function.ResponseSizeTooLarge", error
        assert "6291556 bytes" in error["errorMessage"]


    def test_an_api_request_over_10_mb_is_413(self, cloud):
        url = cloud.outputs["ApiUrl"] + "open"
        resp = requests.post(url, data=b"x" * (10 * 2**20 + 1), timeout=120)
        assert resp.status_code == 413 and resp.json() == {"message": "Request Too Long"}
        # between Lambda's 6 MB and API Gateway's 10 MB: the invocation is refused, API Gateway says 500
        resp = requests.post(url, data=b"x" * (7 * 2**20), timeout=120)
        assert resp.status_code == 500 and resp.json() == {"message": "Internal server error"}


    # ----------------------------------------------------------------------- 5. memory


    @pytest.mark.parametrize("function", ["ChildHog", "NumpyHog"])
    def test_memory_over_the_memory_size_is_out_of_memory(self, cloud, function):
        resp = cloud.client("lambda").invoke(FunctionName=cloud.physical_ids[function], Payload=b"{}")
        error = json.loads(resp["Payload"].read())
        assert resp.get("FunctionError") == "Unhandled", error
        assert error["errorType"] == "Runtime.OutOfMemory", error


    # ----------------------------------------------------------------------- 6. the payload hash


    def test_a_signed_body_swapped_for_another_is_403(self, cloud):
        url = cloud.outputs["ApiUrl"] + "signed"
        signed = b'{"amount": 1}'
        sha = {"x-amz-content-sha256": hashlib.sha256(signed).hexdigest()}
        assert _signed(url, signed, sha).status_code == 200
        resp = _signed(url, signed, sha, send=b'{"amount": 1000}')
        assert resp.status_code == 403, resp.text
        assert resp.json()["message"].startswith("The request signature we calculated does not match")
        assert resp.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
        unsigned = _signed(url, signed, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        assert unsigned.status_code == 403


# --------------------------------------------------------------------------- 7. media types


def test_media_types_are_case_insensitive_through_the_api(shipyard_assembly):
    from localcloud import LocalCloud, Template

    cloud = LocalCloud(Template.load(shipyard_assembly), aws_port=0, api_port=0, clock=False, log=lambda m: None)
    cloud.start()
    try:
        url = cloud.outputs["ApiUrl"] + "models/iris/predict"
        body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()
        for content_type in ("application/json", "APPLICATION/JSON", "Application/Json; charset=UTF-8"):
            resp = _signed(url, body, {"Content-Type": content_type})
            # no model is trained: 409 (no production version), not 400 (unsupported content type)
            assert resp.status_code == 409, (content_type, resp.status_code, resp.text)
    finally:
        cloud.stop()
