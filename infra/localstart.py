"""Starting a Shipyard project on the local cloud: for ``shipyard local up`` and ``shipyard demo``.

``start_local_cloud`` synthesizes the project (its own ``cdk.json`` and app, without building
layers: the functions run on this interpreter) or loads an assembly already synthesized, and
starts the local cloud on it. What the user can act on (no ``cdk.json``, an app that does not
synthesize, an assembly that is not there or misses a function's code asset, a port in use) raises
:class:`LocalStartError`, before anything is served. A relative ``assembly`` is relative to the
current directory; a cdk.out synthesized here is the cloud's to remove when it stops.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

# Shipyard's app builds no Lambda layers for the local cloud: its functions run on this interpreter.
LOCAL_CONTEXT = {"shipyard:build_layers": "false"}


class LocalStartError(Exception):
    """The local cloud could not start: no project, an app that does not synthesize, a port in use."""


def start_local_cloud(aws_port: int = 5000, api_port: int = 3000, assembly: str | None = None,
                      project_dir: str = ".", log=None, iam: bool = True, state_dir: str | None = None):
    """Synthesize the project in `project_dir` (its own cdk.json and app) and start it locally; `iam`:
    enforce IAM and resource policies (see docs/local.md#iam); `state_dir`: keep names and data there
    across restarts (see docs/local.md#state)."""
    from localcloud import LocalCloud, Template
    from localcloud.cloud import DeployError, synthesize
    from localcloud.state import StateError
    from localcloud.template import TemplateError

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    synthesized: Path | None = None  # a temporary cdk.out: the cloud removes it when it stops
    if assembly:
        out = Path(assembly).resolve()  # `--assembly cdk.out`: relative to where the command runs
        if not out.is_dir():
            raise LocalStartError(f"--assembly {assembly}: {out} is not a directory (a cdk.out from `cdk synth`)")
    else:
        if not Path(project_dir, "cdk.json").exists():
            raise LocalStartError(f"no cdk.json in {Path(project_dir).resolve()}: run this in a Shipyard project")
        say("synthesizing the app (cdk.json)…")
        try:
            out = synthesized = synthesize(project_dir, context=LOCAL_CONTEXT)
        except Exception as err:  # TemplateError carries the app's own message
            message = str(err)
            if "does not exist: the app cdk.json names" in message:
                message += " (a Shipyard project has its app.py next to cdk.json: a copy of Shipyard's app.py; " \
                           "see docs/configuration.md)"
            raise LocalStartError(message) from err
    say("starting the local cloud…")
    try:
        try:
            template = Template.load(out)
        except (TemplateError, OSError, ValueError) as err:
            raise LocalStartError(f"cannot load the cloud assembly {out}: {err}") from err
        cloud = LocalCloud(template, aws_port=aws_port, api_port=api_port, log=say, iam=iam,
                           state_dir=state_dir)
    except BaseException:
        if synthesized is not None:
            shutil.rmtree(synthesized, ignore_errors=True)
        raise
    if synthesized is not None:
        cloud.temporary_dirs.append(synthesized)
    try:
        cloud.start()  # a failed start stops the cloud, which removes what it made
    except StateError as err:  # another stack's or template's state, a corrupt file: it says how to start fresh
        raise LocalStartError(f"cannot start the local cloud: {err}") from err
    except OSError as err:
        raise LocalStartError(f"cannot start the local cloud: {err} (is port {aws_port} or {api_port} in use? "
                              "choose others with --aws-port/--api-port)") from err
    except (DeployError, TemplateError) as err:  # e.g. a function whose code asset is missing
        raise LocalStartError(f"cannot start the local cloud: {err}") from err
    for warning in cloud.warnings:
        say(f"warning: {warning}")
    return cloud
