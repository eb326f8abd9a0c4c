#!/usr/bin/env python3
"""The CDK app of this project: Shipyard builds the stack from the `shipyard` object in cdk.json.

`cdk synth` / `cdk deploy` run it (cdk.json's "app"); `python app.py` alone writes cdk.out/.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Shipyard's packages (infra, functions, localcloud) come from the installed shipyard distribution:
# this folder leaves the import path, so a folder of yours with one of those names cannot shadow them.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from infra.app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(HERE))
