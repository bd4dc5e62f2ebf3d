"""Which run folder fills which row of Table 1: read from each folder's saved config and adapters."""

from __future__ import annotations

from pathlib import Path

from lit_verbrec.config.compose import compose, save_config
from lit_verbrec.evaluation.paper import assign_runs


def _run(root: Path, name: str, overrides: list[str], stages: tuple[str, ...]) -> str:
    folder = root / name
    save_config(compose([*overrides, f"run.root={root}", f"run.name={name}"]), folder)
    for stage in stages:
        (folder / stage / "adapter-best").mkdir(parents=True)
        (folder / stage / "adapter-best" / "adapter_config.json").write_text("{}")
    return str(folder)


def test_rows_follow_each_runs_config(tmp_path: Path):
    action = _run(tmp_path, "action", [], ("verbalizer", "reasoner"))
    ranked = _run(tmp_path, "ranked", ["reward.kind=rank"], ("verbalizer",))
    raw = _run(tmp_path, "raw", ["reasoner.input=template"], ("reasoner",))
    rewrite = _run(tmp_path, "rewrite", ["verbalizer.kind=rewrite"], ())             # no adapter: fills nothing
    rows = assign_runs([ranked, action, raw, rewrite])
    assert {name: Path(cfg.run.root) / cfg.run.name for name, cfg in rows.items()} == {
        "ranking reward": Path(ranked), "action": Path(action), "action + trained reasoner": Path(action),
        "reasoner trained on raw": Path(raw)}
