"""The moto methods a local cloud replaces while it runs: one `Seam` per hook into moto.

A seam module (``lambda_runtime``, ``events``, ``stepfunctions``, ``sns``) makes one
``Seam(patch)``: ``patch(seam)`` installs its replacements with ``seam.replace``, which read
``seam.current`` (the object serving them now: a Lambda runtime, an event bus, a cloud; ``None``
when no local cloud runs) and call moto's original as ``seam[name]``. ``seam.install(current)``
at ``LocalCloud.start`` patches moto once (the last ``current`` wins); ``seam.uninstall()`` at
``LocalCloud.stop`` leaves moto as it was.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

_ABSENT = object()  # what `Seam.replace` saw when moto had no such attribute


class Seam:
    def __init__(self, patch: Callable[[Seam], None]) -> None:
        self._patch = patch
        self._saved: dict[str, tuple[Any, Any]] = {}
        self.current: Any = None

    def __bool__(self) -> bool:
        """Whether moto is patched."""
        return bool(self._saved)

    def __getitem__(self, name: str) -> Any:
        """moto's original ``name``."""
        return self._saved[name][1]

    def replace(self, owner: Any, name: str, fn: Any) -> None:
        """Serve ``owner.name`` with ``fn``; a name moto does not have yet (an operation it lacks) is
        added, and removed again at uninstall."""
        if name not in self._saved:
            self._saved[name] = (owner, getattr(owner, name, _ABSENT))
        setattr(owner, name, fn)

    def install(self, current: Any = None) -> None:
        """Serve the replacements from ``current``, patching moto if it is not yet (idempotent)."""
        self.current = current
        if not self._saved:
            self._patch(self)

    def uninstall(self) -> None:
        """Give moto its own methods back (no-op when not installed)."""
        self.current = None
        for name, (owner, original) in self._saved.items():
            if original is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._saved.clear()
