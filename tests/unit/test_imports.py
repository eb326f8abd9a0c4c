"""The layering, checked on the source: no import cycle among project modules, and each layer
imports only what is below it (DESIGN.md "Layout and the one dependency rule", docs/architecture.md).

Imports are read with ``ast`` (nothing is imported), module level and function level alike: an
import moved into a function to dodge a cycle is still a cycle. ``if TYPE_CHECKING:`` blocks are
left out (they never run).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("functions", "infra", "localcloud", "layers", "bench")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        base = ROOT / package
        if not base.is_dir():
            continue
        for path in base.rglob("*.py"):
            rel = path.relative_to(ROOT)
            if "build" in rel.parts or "__pycache__" in rel.parts:
                continue
            parts = rel.with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return skipped


def _resolve(name: str) -> str | None:
    """The project module ``name`` is or lies in (``functions.core.convert.to_onnx`` -> the module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The project modules ``module`` imports."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    skipped = _type_checking_blocks(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(filter(None, (_resolve(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                # `from pkg import submodule` imports the submodule, not (only) the package's body
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                resolved = _resolve(target)
                if resolved:
                    found.add(resolved)
    found.discard(module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_project_modules():
    assert _cycles(GRAPH) == []


# Each layer and what it must never import (project packages and third-party roots alike).
FORBIDDEN = {
    "functions": ("infra", "localcloud", "bench", "tests", "aws_cdk", "constructs", "moto"),
    "functions.core": ("functions.pipeline", "functions.drift", "functions.inference"),
    "localcloud": ("infra", "aws_cdk", "constructs", "bench", "tests"),
}


def _third_party_imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    skipped = _type_checking_blocks(tree)
    roots = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            roots.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module)
    return roots


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_is_below_it(layer):
    bad = []
    for module in MODULES:
        if module != layer and not module.startswith(layer + "."):
            continue
        names = GRAPH[module] | _third_party_imports(module)
        for name in names:
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{module} imports {name}")
    assert not bad, bad
