"""Compose a run's configuration: schema defaults <- configs/config.yaml <- group files <- CLI.

    python tools/X.py size=32b data=movielens data.path=/data/ml-1m eval.bootstrap=2000

`group=choice` (no dot) picks `configs/<group>/<choice>.yaml`, whose content lands under
`<group>:` (except a `globals:` block, merged at the top level: how `size=tiny` also picks
CPU-sized stage settings); `a.b=c` overrides one value (the value is parsed as YAML). Every layer is
checked against the schema before it is merged, so an unknown key fails with its source
and the closest valid key; wrong types and bad values fail naming the key. Nothing loads
a model or touches data before this returns.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lit_verbrec.config.paths import CONFIGS
from lit_verbrec.config.schema import Config

GROUPS = ("size", "stage", "data", "oracle", "cluster")
GLOBALS_KEY = "globals"


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key and where it came from."""


def config_dir() -> Path:
    """The `configs/` folder: $LIT_VERBREC_CONFIGS, else the one beside the package."""
    env = os.environ.get("LIT_VERBREC_CONFIGS")
    return Path(env) if env else CONFIGS


def group_choices(group: str, root: Path | None = None) -> list[str]:
    folder = (root or config_dir()) / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def compose(overrides: list[str] | tuple[str, ...] = (), root: Path | None = None,
            saved: str | Path | None = None) -> Config:
    """Build and validate the Config for `overrides` such as ["size=32b", "run.seed=3"].

    `saved`: a run folder whose resolved config.yaml is applied after the group files and
    before the command line (how tools that read a finished run pick up its settings).
    """
    root = root or config_dir()
    base = _read_yaml(root / "config.yaml")
    defaults = base.pop("defaults", [])
    choices = {group: choice for entry in defaults for group, choice in entry.items()}
    values: list[tuple[str, str]] = []
    for arg in overrides:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"argument {arg!r}: expected key=value (or group=choice for {', '.join(GROUPS)})")
        if key in GROUPS:
            choices[key] = value
        else:
            values.append((key.strip(), value))

    layers: list[tuple[str, dict]] = [(str(root / "config.yaml"), base)]
    for group, choice in choices.items():
        available = group_choices(group, root)
        if choice not in available:
            hint = difflib.get_close_matches(choice, available, n=1, cutoff=0.3)
            raise ConfigError(f"unknown choice {choice!r} for group '{group}' (choices: {', '.join(available)})"
                              + (f"; did you mean '{hint[0]}'?" if hint else ""))
        path = root / group / f"{choice}.yaml"
        content = _read_yaml(path)
        # A group file's `globals:` block sets keys outside its group (e.g. size=tiny shortens histories).
        extra = content.pop(GLOBALS_KEY, {})
        layers.append((str(path), {group: content}))
        if extra:
            layers.append((f"{path} ({GLOBALS_KEY})", extra))
    if saved is not None:
        path = Path(saved) / "config.yaml"
        if not path.is_file():
            raise ConfigError(f"{path} does not exist: not a run folder (a run writes its resolved config there)")
        layers.append((str(path), _read_yaml(path)))
    for key, value in values:
        layers.append((f"command line '{key}={value}'", _override(key, value)))

    merged = OmegaConf.structured(Config)
    for source, layer in layers:
        _check_keys(layer, Config, "", source)
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            raise ConfigError(f"{err.full_key or '?'}: {_first_line(err)} (from {source})") from None
    try:
        return OmegaConf.to_object(merged)
    except ValueError as err:  # a __post_init__ check: "key: message"
        raise ConfigError(str(err)) from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"{err.full_key or '?'}: {_first_line(err)}") from None


def compose_run(folder: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A finished run's config: its saved config.yaml, then `overrides`, pointed at `folder`
    (run.root/run.name follow the folder, which may have moved since the run)."""
    folder = Path(folder)
    return compose([*overrides, f"run.root={folder.parent}", f"run.name={folder.name}"], saved=folder)


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (it never holds a secret: API keys come from the environment)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Config, folder: str | Path) -> Path:
    """Write the resolved config to `<folder>/config.yaml` and return its path."""
    path = Path(folder) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(cfg))
    return path


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, e.g. 'data.examples.history_len'."""
    keys = []
    for name, hint in typing.get_type_hints(cls).items():
        key = f"{prefix}{name}"
        keys.append(key)
        if dataclasses.is_dataclass(hint):
            keys.extend(all_keys(hint, key + "."))
    return keys


def _override(key: str, value: str) -> dict:
    """`a.b=c` as a nested dict, the value parsed as YAML; `a.b=` (nothing) is the empty string."""
    if value.strip() == "":
        node: dict = {}
        parts = key.split(".")
        leaf = node
        for part in parts[:-1]:
            leaf = leaf.setdefault(part, {})
        leaf[parts[-1]] = ""
        return node
    return OmegaConf.to_container(OmegaConf.from_dotlist([f"{key}={value}"]))


def _check_keys(node: Any, cls: type, prefix: str, source: str) -> None:
    if not isinstance(node, dict):
        return
    hints = typing.get_type_hints(cls)
    for key, value in node.items():
        if key not in hints:
            raise ConfigError(f"unknown key '{prefix}{key}' (from {source}){_suggest(str(key), list(hints), prefix)}")
        if dataclasses.is_dataclass(hints[key]):
            _check_keys(value, hints[key], f"{prefix}{key}.", source)


def _suggest(key: str, siblings: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, siblings, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    same_leaf = [k for k in all_keys() if k.rsplit(".", 1)[-1] == key]
    if same_leaf:
        return f"; did you mean '{same_leaf[0]}'?"
    close = difflib.get_close_matches(key, siblings, n=1, cutoff=0.0)
    return f"; closest valid key: '{prefix}{close[0]}'" if close else ""


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as err:  # yaml syntax errors come in several types
        raise ConfigError(f"{path}: not valid YAML: {_first_line(err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
