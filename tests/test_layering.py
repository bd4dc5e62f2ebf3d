"""Imports flow one way: config -> data -> text -> oracle/rl -> models -> rollout -> training
-> launch/evaluation/export. A module may import its own layer or any layer below."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lit_verbrec"
LAYERS = [["config"], ["data"], ["text"], ["oracle", "rl"], ["models"], ["rollout"], ["training"],
          ["launch", "evaluation", "export"]]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lit_verbrec."):
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("lit_verbrec."))


def test_every_subpackage_has_a_layer():
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert subpackages <= set(RANK), subpackages - set(RANK)


def test_imports_only_go_down():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) < 2:
            continue
        own = RANK[parts[0]]
        for module in _imports(path):
            target = module.split(".")[1]
            if RANK[target] > own:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert wrong == []
