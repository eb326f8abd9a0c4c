#!/usr/bin/env python3
"""CDK entry point of Shipyard's own project (``cdk.json`` next to this file): see ``infra/app.py``."""
import sys
from pathlib import Path

from infra.app import main

if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().parent))
