"""The moto methods a local cloud replaces while it runs, kept so that ``restore()`` puts them back.

Each seam module (``lambda_runtime``, ``events``, the SNS e-mail seam in ``cloud``) owns one
``Patches``: ``replace`` installs a function, ``patches[name]`` calls moto's original from it, and
``restore`` (at ``LocalCloud.stop``) leaves moto as it was.
"""
from __future__ import annotations

from typing import Any


class Patches:
    def __init__(self) -> None:
        self._saved: dict[str, tuple[Any, Any]] = {}

    def __bool__(self) -> bool:
        return bool(self._saved)

    def __getitem__(self, name: str) -> Any:
        """moto's original ``name``."""
        return self._saved[name][1]

    def replace(self, owner: Any, name: str, fn: Any) -> None:
        if name not in self._saved:
            self._saved[name] = (owner, getattr(owner, name))
        setattr(owner, name, fn)

    def restore(self) -> None:
        for name, (owner, original) in self._saved.items():
            setattr(owner, name, original)
        self._saved.clear()
