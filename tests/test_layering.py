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


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle in graph, as a path that ends where it started, or []."""
    state: dict[str, int] = {}                                        # 1: on the DFS path, 2: done

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return []


def test_no_module_imports_back_what_imports_it():
    # deferred imports inside functions count too: they are how a circle like base -> concrete
    # oracle -> base hides from import time
    graph = {_module(p): {m for m in _imports(p) if m != _module(p)} for p in PACKAGE.rglob("*.py")}
    assert _cycle(graph) == []


def test_the_cycle_finder_finds_a_planted_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []
