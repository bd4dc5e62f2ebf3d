"""A prepared tiny run for stage-level tests: config, train examples, catalog and tokenizer.
Imported by path (`from tiny_runs import prepared_tiny_run`), as tests/training/toy.py is."""

from __future__ import annotations

from pathlib import Path

from lit_verbrec.config.compose import compose
from lit_verbrec.training.run import RunPaths, load_examples, prepared_folder, run_tokenizer


def prepared_tiny_run(root: Path, overrides: list[str]) -> tuple:
    """(cfg, train examples, catalog, tokenizer) of a run under `root`, its data prepared on first use."""
    cfg = compose([f"run.root={root}", *overrides])
    paths = RunPaths.of(cfg)
    train, catalog = load_examples(prepared_folder(cfg, paths), "train")
    return cfg, train, catalog, run_tokenizer(cfg, paths, train, catalog)
