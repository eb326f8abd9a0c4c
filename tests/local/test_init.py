"""`shipyard init DIR`: a project of one's own, with Shipyard installed into it as a normal dependency.

The end-to-end test builds Shipyard's wheel, installs it (not editable) into a fresh virtualenv
whose dependencies come from this one, and works in a temporary project the way a user would:
`shipyard init`, `python app.py` (what `cdk synth` runs), `shipyard demo` — with folders named
`infra/` and `functions/` of the user's own in the project, which must not shadow Shipyard's.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from infra.config import load_config
from infra.project import CDK_CLI_VERSION, FILES, SAMPLE, ProjectError, create_project, shipyard_requirement

ROOT = Path(__file__).resolve().parents[2]


def _clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """What a user's shell has: the project's virtualenv first; no PYTHONPATH, no AWS settings."""
    path = os.pathsep.join([str(venv / "bin"), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    return {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "OPENBLAS_NUM_THREADS": "1",
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1", **extra}


def _run(args, cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtualenv with Shipyard's wheel installed (its dependencies: this virtualenv's)."""
    tmp = tmp_path_factory.mktemp("shipyard-install")
    src = tmp / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build")
    for package in ("infra", "functions", "layers", "localcloud"):
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "wheels"),
          str(src)], tmp, dict(os.environ))
    (wheel,) = (tmp / "wheels").glob("shipyard-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, dict(os.environ))
    site = Path(_run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp, _clean_env(venv)).stdout.strip())
    # the dependencies (aws-cdk-lib, moto, scikit-learn…) from this virtualenv, not its editable Shipyard
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-q",
          str(wheel)], tmp, dict(os.environ))
    return venv


@pytest.mark.slow
def test_a_new_project_synthesizes_and_runs_the_demo_with_shipyard_installed(installed, tmp_path):
    venv = installed
    env = _clean_env(venv)
    out = _run([str(venv / "bin" / "shipyard"), "init", "churn"], tmp_path, env).stdout
    project = tmp_path / "churn"
    assert "wrote cdk.json" in out and "shipyard demo" in out
    # the installed Shipyard, not the checkout, is what the project imports
    where = "import infra, functions; print(infra.__file__, functions.__file__)"
    shown = _run([str(venv / "bin" / "python"), "-c", where], project, env).stdout
    assert str(ROOT) not in shown and str(venv) in shown
    # folders of the user's own named like Shipyard's packages do not shadow them
    for name in ("infra", "functions"):
        (project / name).mkdir()
        (project / name / "__init__.py").write_text(f"raise ImportError('the folder {name}/ shadowed Shipyard')\n")
    requirement = (project / "requirements.txt").read_text().strip().splitlines()[-1]
    assert requirement.startswith("shipyard[cdk,local,runtime,training] @ file://") and requirement.endswith(".whl")

    # what `cdk synth` runs: the app reads the project's cdk.json
    _run([str(venv / "bin" / "python"), "app.py"], project,
         _clean_env(venv, CDK_CONTEXT_JSON=json.dumps({"shipyard:build_layers": "false"})))
    template = json.loads((project / "cdk.out" / "churn.template.json").read_text())
    assert any(k.startswith("PipelineUploadiris") for k in template["Resources"])
    assets = [d for d in (project / "cdk.out").glob("asset.*") if (d / "functions").is_dir()]
    assert assets and (assets[0] / "functions" / "pipeline" / "train.py").read_bytes() == (
        ROOT / "functions" / "pipeline" / "train.py").read_bytes()

    demo = _run([str(venv / "bin" / "shipyard"), "demo"], project, env, timeout=900)
    assert "demo complete" in demo.stdout and "churn-iris-drift → ALARM" in demo.stdout


def test_init_writes_every_file_and_refuses_to_overwrite(tmp_path):
    written = create_project(tmp_path / "p")
    assert sorted(p.relative_to(tmp_path / "p").as_posix() for p in written) == sorted([*FILES.values(), SAMPLE])
    (tmp_path / "p" / "cdk.json").write_text("{}")
    with pytest.raises(ProjectError, match=r"already has cdk\.json.*--force"):
        create_project(tmp_path / "p")
    assert (tmp_path / "p" / "cdk.json").read_text() == "{}"  # nothing written on refusal
    create_project(tmp_path / "p", force=True)
    assert json.loads((tmp_path / "p" / "cdk.json").read_text())["context"]["shipyard"]["stack_name"] == "p"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProjectError, match="is a file"):
        create_project(tmp_path / "file")


@pytest.mark.parametrize("name", ["my stack", 'a"b', "9lives"])
def test_init_refuses_a_stack_name_cloudformation_would_not_take_and_writes_nothing(tmp_path, name):
    # The name goes into cdk.json as written: a space is an invalid config, a quote broken JSON.
    with pytest.raises(ProjectError, match="not a CloudFormation stack name"):
        create_project(tmp_path / "p", stack_name=name)
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_the_project_cdk_json_is_valid_config_with_comments_and_shipyards_feature_flags(tmp_path):
    create_project(tmp_path / "9 lives!", stack_name=None)
    cdk = json.loads((tmp_path / "9 lives!" / "cdk.json").read_text())
    config = load_config(cdk["context"]["shipyard"])
    assert config.stack_name == "Shipyard-9-lives" and list(config.model_names) == ["iris"]
    assert any(k.startswith("//") for k in cdk["context"]["shipyard"]["models"]["iris"])  # comments stay
    ours = json.loads((ROOT / "cdk.json").read_text())["context"]
    flags = {k: v for k, v in cdk["context"].items() if k not in ("shipyard", "//")}
    assert flags == {k: v for k, v in ours.items() if k != "shipyard"}
    workflow = (tmp_path / "9 lives!" / ".github" / "workflows" / "shipyard.yml").read_text()
    assert f"aws-cdk@{CDK_CLI_VERSION}" in workflow and "id-token: write" in workflow
    header = (tmp_path / "9 lives!" / SAMPLE).read_text().splitlines()[0].split(",")
    assert header[-1] == config.models["iris"].target


def test_from_a_checkout_the_project_depends_on_it_by_path():
    assert shipyard_requirement() == f"shipyard[cdk,local,runtime,training] @ {ROOT.as_uri()}"


def test_comments_are_not_models_for_the_cli(tmp_path, monkeypatch):
    from infra.commandline import _read_project_config

    create_project(tmp_path / "p")
    config = _read_project_config(tmp_path / "p" / "cdk.json")
    assert list(config["models"]) == ["iris"] and not any(k.startswith("//") for k in config["models"]["iris"])
