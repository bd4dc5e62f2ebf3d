"""The command line shared by every tool: `group=choice`, `a.b=c`, `--help`.

`--help` prints the tool's own docstring, the config groups with their choices, and
every option with its type, default and the docstring written beside the field in
`schema.py` (read from the source, so help and schema cannot drift apart).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import typing
from functools import cache
from pathlib import Path

from lit_verbrec.config import cluster_schema, data_schema, schema, train_schema
from lit_verbrec.config.compose import GROUPS, ConfigError, compose, config_dir, group_choices
from lit_verbrec.config.schema import Config


@cache
def field_docs() -> dict[tuple[str, str], str]:
    """(class name, field name) -> the docstring written under that field in the schema modules."""
    docs = {}
    nodes = [n for module in (schema, data_schema, train_schema, cluster_schema) for n in ast.parse(inspect.getsource(module)).body]
    for node in nodes:
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for stmt, nxt in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[(node.name, stmt.target.id)] = " ".join(nxt.value.value.split())
    return docs


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) if not typing.get_args(hint) else str(hint).replace("typing.", "")


def option_lines(cls: type = Config, instance=None, prefix: str = "") -> list[str]:
    instance = instance if instance is not None else cls()
    docs = field_docs()
    lines = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(hint):
            lines.extend(option_lines(hint, value, f"{prefix}{f.name}."))
            continue
        doc = docs.get((cls.__name__, f.name), "")
        lines.append(f"  {prefix}{f.name} ({_type_name(hint)}, default {value!r})\n      {doc}")
    return lines


def help_text(tool_doc: str) -> str:
    groups = "\n".join(f"  {g}={{{','.join(group_choices(g))}}}" for g in GROUPS)
    return (f"{tool_doc.strip()}\n\nConfig groups (pick one file from {config_dir()}/<group>/):\n{groups}\n\n"
            "Options (override any with key=value; defaults before group files are applied):\n"
            + "\n".join(option_lines()))


def run_folder(tool_doc: str, argv: list[str]) -> tuple[Path, list[str]]:
    """For tools that read a finished run: the folder named by `run=<folder>`, else
    <run.root>/<run.name> of the other arguments; and the arguments without `run=`."""
    folder = next((a.partition("=")[2] for a in argv if a.startswith("run=")), "")
    rest = [a for a in argv if not a.startswith("run=")]
    if folder:
        return Path(folder), rest
    cfg, _ = parse_cli(tool_doc, rest)
    return Path(cfg.run.root) / cfg.run.name, rest


def parse_cli(tool_doc: str, argv: list[str] | None = None, flags: tuple[str, ...] = ()) -> tuple[Config, set[str]]:
    """Parse argv into a validated Config and the set of `flags` given; exit 2 on a config error.

    `--help`/`-h` prints the help and exits 0. Flags (e.g. "--dry-run") are tool-specific.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        print(help_text(tool_doc))
        raise SystemExit(0)
    given = {a for a in argv if a in flags}
    unknown_flags = [a for a in argv if a.startswith("--") and a not in flags]
    try:
        if unknown_flags:
            raise ConfigError(f"unknown flag {unknown_flags[0]!r}" + (f" (flags: {', '.join(flags)})" if flags else ""))
        cfg = compose([a for a in argv if a not in given])
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return cfg, given
