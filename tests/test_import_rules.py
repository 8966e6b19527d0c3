"""DESIGN.md's import rules: hwmodels ← policies ← simulator ← app; profiler beside simulator."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

ALLOWED = {
    "hwmodels": {"hwmodels"},
    "policies": {"hwmodels", "policies"},
    "simulator": {"hwmodels", "policies", "simulator"},
    "profiler": {"hwmodels", "policies", "profiler"},
}
PROJECT = {"hwmodels", "policies", "simulator", "profiler", "app"}
HEAVY = {"torch", "triton"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("pkg", sorted(ALLOWED))
def test_layering(pkg):
    bad = []
    for f in sorted((REPO / pkg).rglob("*.py")):
        for mod in _imports(f):
            if mod in PROJECT and mod not in ALLOWED[pkg]:
                bad.append(f"{f.relative_to(REPO)} imports {mod}")
            if pkg in ("hwmodels", "policies", "simulator") and mod in HEAVY:
                bad.append(f"{f.relative_to(REPO)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_nothing_imports_app():
    bad = [f"{f.relative_to(REPO)}" for pkg in ALLOWED for f in (REPO / pkg).rglob("*.py") if "app" in _imports(f)]
    assert not bad
