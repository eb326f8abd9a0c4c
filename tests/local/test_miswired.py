"""A wiring mistake in the template fails locally, as it would in AWS, with an error that names it."""
import json

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def test_function_missing_its_table_variable_fails_with_a_clear_error(shipyard_assembly):
    from localcloud import LocalCloud, Template

    template = Template.load(shipyard_assembly)
    body = json.loads(json.dumps(template.body))
    (fn,) = [r for r in body["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
             and r["Properties"].get("Handler") == "functions.inference.handler.handler"]
    assert "REGISTRY_TABLE" in fn["Properties"]["Environment"]["Variables"]
    del fn["Properties"]["Environment"]["Variables"]["REGISTRY_TABLE"]
    lines = []
    broken = Template(body=body, stack_name=template.stack_name, directory=template.directory, assets=template.assets)
    with LocalCloud(broken, aws_port=0, api_port=0, clock=False, log=lines.append) as cloud:
        url = cloud.outputs["ApiUrl"] + "models"
        req = AWSRequest(method="GET", url=url)
        SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(req)
        r = requests.get(url, headers=dict(req.headers), timeout=120)
        assert r.status_code >= 500, r.text
        # the handler catches the error and answers 500; the local cloud shows what the function logged
        problems = [e["errorMessage"] or "" for e in cloud.function_errors] + [e["line"] for e in cloud.error_logs]
        assert any("REGISTRY_TABLE" in p for p in problems), problems
        assert any("REGISTRY_TABLE" in line for line in lines)
