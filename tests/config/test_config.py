"""The config system: groups, overrides, schema validation, help, saved config."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lit_verbrec.config.cli import field_docs, help_text, parse_cli
from lit_verbrec.config.compose import (
    GROUPS,
    ConfigError,
    all_keys,
    compose,
    config_dir,
    group_choices,
    save_config,
)
from lit_verbrec.config.schema import Config


def test_defaults_are_the_embedded_default():
    cfg = compose([])
    assert (cfg.size.name, cfg.stage.name, cfg.data.source, cfg.oracle.kind, cfg.cluster.kind) == \
        ("tiny", "both", "synthetic", "lexical", "local")
    assert cfg.stage.stages == ["verbalizer", "reasoner"]


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_file_parses_against_the_schema(group):
    """Like litgpt's config-hub test: every YAML composes, and its name field matches its file."""
    choices = group_choices(group)
    assert choices, f"configs/{group}/ is empty"
    for choice in choices:
        extra = ["data.path=/somewhere"] if group == "data" and choice != "synthetic" else []
        cfg = compose([f"{group}={choice}", *extra])
        section = getattr(cfg, group)
        name = {"size": "name", "stage": "name", "data": "source", "oracle": "kind", "cluster": "kind"}[group]
        assert getattr(section, name) == choice


def test_every_yaml_key_is_in_the_schema():
    keys = set(all_keys())
    for path in config_dir().rglob("*.yaml"):
        data = OmegaConf.to_container(OmegaConf.load(path))
        data.pop("defaults", None)
        for key in _flatten(data.pop("globals", {})):   # a group file's keys outside its group
            if not key.startswith("data.event_map."):
                assert key in keys, f"{path}: globals.{key}"
        prefix = "" if path.parent == config_dir() else path.parent.name + "."
        for key in _flatten(data):
            if not key.startswith("data.event_map."):
                assert prefix + key in keys, f"{path}: {prefix + key}"


def _flatten(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_size_groups_name_the_hub_models():
    assert compose(["size=8b"]).size.model == "Qwen/Qwen3-8B"
    assert compose(["size=32b"]).size.model == "Qwen/Qwen3-32B"
    assert compose(["size=32b", "size.model=/models/qwen3-32b"]).size.model == "/models/qwen3-32b"
    assert compose(["size=8b"]).size.quantization == "nf4"


def test_override_after_group_wins_and_types_convert():
    cfg = compose(["data.examples.history_len=50", "eval.confidence=0.9", "data.examples.target_events=[play,trailer]"])
    assert cfg.data.examples.history_len == 50
    assert cfg.eval.confidence == 0.9
    assert cfg.data.examples.target_events == ["play", "trailer"]


@pytest.mark.parametrize("args, fragments", [
    (["data.exmaples.history_len=3"], ["unknown key 'data.exmaples'", "did you mean 'data.examples'"]),
    (["history_len=3"], ["unknown key 'history_len'", "did you mean 'data.examples.history_len'"]),
    (["data.examples.histroy_len=3"], ["unknown key 'data.examples.histroy_len'", "did you mean 'data.examples.history_len'"]),
    (["size=64b"], ["unknown choice '64b' for group 'size'", "choices: 32b, 8b, tiny"]),
    (["data.examples.history_len=abc"], ["data.examples.history_len", "'abc'"]),
    (["data.examples.negatives=often"], ["data.examples.negatives: got 'often'", "uniform, popularity"]),
    (["data=movielens"], ["data.path: is required for data.source=movielens"]),
    (["data.event_map={watched: plya}"], ["data.event_map.watched: got 'plya'"]),
    (["eval.reference=popular"], ["eval.reference: must be one of eval.rows"]),
    (["nonsense"], ["argument 'nonsense': expected key=value"]),
])
def test_bad_config_fails_naming_the_key(args, fragments):
    with pytest.raises(ConfigError) as err:
        compose(args)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_unknown_key_in_a_group_file_names_the_file(tmp_path: Path):
    root = tmp_path / "configs"
    for group in GROUPS:
        (root / group).mkdir(parents=True)
        (root / group / "a.yaml").write_text("{}\n")
    (root / "data" / "a.yaml").write_text("sourse: synthetic\n")
    (root / "config.yaml").write_text("defaults:\n" + "".join(f"  - {g}: a\n" for g in GROUPS))
    with pytest.raises(ConfigError, match=r"unknown key 'data.sourse' \(from .*data/a.yaml\); did you mean 'data.source'"):
        compose([], root=root)


def test_parse_cli_exits_2_with_the_message(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_cli("doc", ["run.sede=1"])
    assert exit_.value.code == 2
    assert "config error: unknown key 'run.sede'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        parse_cli("doc", ["--dry-rn"], flags=("--dry-run",))
    assert exit_.value.code == 2
    cfg, flags = parse_cli("doc", ["--dry-run", "run.seed=4"], flags=("--dry-run",))
    assert flags == {"--dry-run"} and cfg.run.seed == 4


def test_help_lists_groups_and_documented_options():
    text = help_text("The tool.")
    for group in GROUPS:
        assert f"  {group}={{" in text
    assert "size={32b,8b,tiny}" in text
    assert "data.examples.history_len (int, default 100)" in text
    assert "Most recent interactions before the target kept as history." in text


def test_every_schema_field_has_a_docstring():
    import dataclasses

    docs = field_docs()
    missing = []

    def walk(cls):
        for f in dataclasses.fields(cls):
            if (cls.__name__, f.name) not in docs:
                missing.append(f"{cls.__name__}.{f.name}")
            if dataclasses.is_dataclass(f.type if not isinstance(f.type, str) else None):
                walk(f.type)
        for f in dataclasses.fields(cls):
            default = getattr(cls(), f.name)
            if dataclasses.is_dataclass(default):
                walk(type(default))

    walk(Config)
    assert missing == []


def test_saved_config_round_trips(tmp_path: Path):
    cfg = compose(["size=8b", "run.seed=7"])
    path = save_config(cfg, tmp_path)
    again = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(path)))
    assert again == cfg


def test_size_tiny_sets_cpu_stage_settings_through_globals():
    tiny, big = compose(["size=tiny"]), compose(["size=8b"])
    assert tiny.data.examples.history_len < big.data.examples.history_len == 100
    assert tiny.verbalizer.grpo.max_steps < big.verbalizer.grpo.max_steps
    # A command-line override still wins over a group's globals.
    assert compose(["size=tiny", "data.examples.history_len=30"]).data.examples.history_len == 30


def test_empty_override_is_the_empty_string():
    assert compose(["data.columns.event="]).data.columns.event == ""
    assert compose(["data.columns.event=''"]).data.columns.event == ""
