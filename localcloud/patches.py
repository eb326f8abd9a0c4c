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
        # key -> (owner, attribute name, moto's original as read, what the owner itself held or _ABSENT)
        self._saved: dict[str, tuple[Any, str, Any, Any]] = {}
        self.current: Any = None

    def __bool__(self) -> bool:
        """Whether moto is patched."""
        return bool(self._saved)

    def __getitem__(self, key: str) -> Any:
        """moto's original of ``key`` (the attribute's name unless `replace` was given a key)."""
        return self._saved[key][2]

    def replace(self, owner: Any, name: str, fn: Any, key: str | None = None) -> None:
        """Serve ``owner.name`` with ``fn``; ``key`` names moto's original for ``seam[key]`` when two
        owners' attributes of one name are replaced (default: ``name``). A name moto does not have
        yet (an operation it lacks) is added, and removed again at uninstall; so is one the owner
        only inherits (a method of its base class), which it inherits again afterwards."""
        key = key or name
        if key not in self._saved:  # the owner's own entry as is: a staticmethod is put back as one
            own = getattr(owner, "__dict__", {}).get(name, _ABSENT)
            self._saved[key] = (owner, name, getattr(owner, name, _ABSENT), own)
        setattr(owner, name, fn)

    def install(self, current: Any = None) -> None:
        """Serve the replacements from ``current``, patching moto if it is not yet (idempotent)."""
        self.current = current
        if not self._saved:
            self._patch(self)

    def uninstall(self) -> None:
        """Give moto its own methods back (no-op when not installed)."""
        self.current = None
        for owner, name, _, own in self._saved.values():
            if own is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, own)
        self._saved.clear()
