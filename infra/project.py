"""``shipyard init DIR``: a Shipyard project of one's own.

The project is what a team keeps in its repository: ``cdk.json`` (one example model, the settings
most teams change shown with ``//`` comments, and the CDK feature flags Shipyard is tested with,
as ``cdk init`` writes them), ``app.py`` (the CDK app: ``infra.app.main``), ``requirements.txt``
(Shipyard as a normal dependency, pinned to the one that made the project), a CI workflow (test on
every push, deploy ``main`` through GitHub OIDC with a pinned CDK CLI), a README with the two
commands, and ``data/iris.csv`` (scikit-learn's iris, the example model's data).

Shipyard's importable packages (``infra``, ``functions``, ``localcloud``, ``layers``) come from the
installed distribution. The project's ``app.py`` takes its own folder off ``sys.path`` before it
imports them, so a folder of the team's named like one of them (``infra/`` is common) cannot
shadow Shipyard's; the ``shipyard`` command never has the project folder on its path.
"""
from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

from infra.config import STACK_NAME

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "project"
CHECKOUT = Path(__file__).resolve().parents[1]
CDK_CLI_VERSION = "2.1148.1"  # the CDK CLI's latest (3.x) cannot read this library's assemblies
EXTRAS = "cdk,local,runtime,training"
# template file -> where it goes in the project (dot files are stored without the dot: package data)
FILES = {"cdk.json": "cdk.json", "app.py": "app.py", "requirements.txt": "requirements.txt",
         "README.md": "README.md", "gitignore": ".gitignore",
         "github/workflows/shipyard.yml": ".github/workflows/shipyard.yml"}
SAMPLE = "data/iris.csv"
_STACK_NAME = re.compile(r"[^A-Za-z0-9-]+")


class ProjectError(Exception):
    """The project cannot be created where asked (a non-empty folder without --force, a file)."""


def shipyard_requirement() -> str:
    """How the new project depends on this Shipyard: the checkout it runs from (a path), else the
    URL it was installed from (a git URL, a wheel), else its version from the package index."""
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "infra" / "cli.py").is_file():
        return f"shipyard[{EXTRAS}] @ {CHECKOUT.as_uri()}"
    try:
        dist = metadata.distribution("shipyard")
    except metadata.PackageNotFoundError:
        return f"shipyard[{EXTRAS}]"
    direct = dist.read_text("direct_url.json")
    if direct:
        info = json.loads(direct)
        url = info.get("url", "")
        vcs = info.get("vcs_info")
        if vcs:
            url = f"{vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id') or vcs.get('requested_revision', '')}"
        if url:
            return f"shipyard[{EXTRAS}] @ {url}"
    return f"shipyard[{EXTRAS}]=={dist.version}"


def stack_name_for(directory: Path) -> str:
    """A CloudFormation stack name from the folder's name (letters, digits, '-'; starts with a letter)."""
    name = _STACK_NAME.sub("-", directory.resolve().name).strip("-") or "Shipyard"
    if not name[0].isalpha():
        name = f"Shipyard-{name}"
    return name[:128]


def create_project(directory: str | Path, *, force: bool = False, stack_name: str | None = None) -> list[Path]:
    """Write a new project into ``directory`` (created if missing); returns the files written.

    :raises ProjectError: ``directory`` is a file, or holds files the project would overwrite
        (unless ``force``); nothing is written then.
    """
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise ProjectError(f"{root} is a file, not a folder")
    targets = [root / dest for dest in FILES.values()] + [root / SAMPLE]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        shown = ", ".join(str(t.relative_to(root)) for t in existing)
        raise ProjectError(f"{root} already has {shown}; use --force to overwrite them")
    if stack_name is not None and not STACK_NAME.match(stack_name):  # it goes into cdk.json as written
        raise ProjectError(f"--stack-name {stack_name!r} is not a CloudFormation stack name; expected letters, "
                           "digits and '-', starting with a letter, at most 128 characters")
    values = {"{stack_name}": stack_name or stack_name_for(root), "{project_name}": root.resolve().name,
              "{shipyard_requirement}": shipyard_requirement(), "{cdk_cli_version}": CDK_CLI_VERSION}
    written = []
    for source, dest in FILES.items():
        text = (TEMPLATE_DIR / source).read_text()
        for key, value in values.items():
            text = text.replace(key, value)
        path = root / dest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    from infra.demo import iris_csv

    sample = root / SAMPLE
    sample.parent.mkdir(parents=True, exist_ok=True)
    sample.write_bytes(iris_csv())
    written.append(sample)
    return written
