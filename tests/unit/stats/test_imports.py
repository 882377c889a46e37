"""Imports inside driftcar.stats run one way: profile -> sketch -> _layout (no cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import driftcar.stats

STATS = Path(driftcar.stats.__file__).parent
LOWER = {"sketch": {"_layout", "_columns", "_codec", "errors"}, "_layout": {"methods", "_binning", "_columns"}}


def _runtime_imports(module: str) -> set[str]:
    tree = ast.parse((STATS / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # typing-only imports do not run
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("driftcar.stats"):
            name = node.module.removeprefix("driftcar.stats").lstrip(".")
            out |= {a.name for a in node.names} if not name else {name}
    return out


def test_sketch_and_layout_do_not_import_profile():
    for module, allowed in LOWER.items():
        got = _runtime_imports(module)
        assert "profile" not in got and got <= allowed, (module, got)
