"""Every config key is read by the code it configures: a key that only its own validation reads
is a setting that silently does nothing (as `text.metadata` once was)."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

from lit_verbrec.config.schema import Config

ROOT = Path(__file__).resolve().parents[2]


def config_keys(cls=Config, prefix: tuple[str, ...] = ()):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from config_keys(hints[f.name], prefix + (f.name,))
        else:
            yield prefix + (f.name,)


def attributes_read(paths) -> tuple[set[str], set[str]]:
    """(names read as `x.<name>`, sections read whole as `asdict(x.<name>)`) in `paths`, outside
    __post_init__ (validation is not use)."""
    names: set[str] = set()
    whole: set[str] = set()
    for path in paths:
        tree = ast.parse(path.read_text())
        validation = {id(node) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) and fn.name == "__post_init__"
                      for node in ast.walk(fn)}
        for node in ast.walk(tree):
            if id(node) in validation:
                continue
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "asdict" and node.args \
                    and isinstance(node.args[0], ast.Attribute):
                whole.add(node.args[0].attr)
    return names, whole


def unread_keys(paths) -> list[str]:
    read, whole = attributes_read(paths)
    return [".".join(key) for key in config_keys() if key[-1] not in read and not whole & set(key[:-1])]


def test_every_config_key_is_read_somewhere():
    sources = [*(ROOT / "lit_verbrec").rglob("*.py"), *(ROOT / "tools").glob("*.py")]
    assert unread_keys(sources) == []


def test_a_key_only_validation_reads_is_found(tmp_path):
    only_checked = tmp_path / "schema.py"
    only_checked.write_text("class TextConfig:\n    def __post_init__(self):\n        assert self.metadata\n")
    assert "text.metadata" in unread_keys([only_checked])
    used = tmp_path / "use.py"
    used.write_text("def template(cfg):\n    return cfg.text.metadata\n")
    assert "text.metadata" not in unread_keys([only_checked, used])
