"""Preparing a log as one step of a run: what `tools/prepare_data.py` and `stage=prepare` share.

`prepare_run_data` writes the prepared folder (data/sources.py) with the config beside it and
returns the lines that describe it: counts, the user sample, the history window the folder is cut
to (a run of another window refuses it), and every skip of the data report.
"""

from __future__ import annotations

import time
from pathlib import Path

from lit_verbrec.config.compose import save_config
from lit_verbrec.config.schema import Config
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.sources import prepare


def reading_line(cfg: Config) -> str:
    """What is being read, printed before the preparation starts (it may take minutes)."""
    return f"reading {cfg.data.source}" + (f" from {cfg.data.path}" if cfg.data.path else "")


def prepare_run_data(cfg: Config, out: Path, progress: bool = True) -> dict:
    """Prepare `cfg.data` into `out`; {"summary": summary.json's dict, "lines": [...], "notes": [...]}.
    Raises DataError on bad input (nothing is written then)."""
    report, start = DataReport(), time.perf_counter()
    summary = prepare(cfg.data, out, report, progress=progress)
    save_config(cfg, out)
    notes = []
    if cfg.size.name == "tiny" and cfg.data.source != "synthetic":
        notes.append(f"note: size=tiny cuts histories to {cfg.data.examples.history_len} lines; for size=8b or 32b "
                     "runs (the paper's 100 lines) prepare with that size")
    lines = summary_lines(cfg, summary, report, time.perf_counter() - start)
    return {"summary": summary, "lines": lines + [f"wrote {out}"], "notes": notes}


def summary_lines(cfg: Config, s: dict, report: DataReport, seconds: float | None = None) -> list[str]:
    """What a preparation prints: counts, the user sample, the shards, the history window, every skip."""
    ex = s["examples"]
    lines = [f"{s['interactions']:,} interactions, {s['items']:,} items",
             f"users {s['users']:,} ({s['users_with_examples']:,} with examples) | examples train {ex['train']:,} "
             f"val {ex['val']:,} test {ex['test']:,} | discovery share {s['discovery_share_all']:.1%} | "
             f"mean history length {s['mean_history_length']:.1f}" + (f" | {seconds:.1f} s" if seconds is not None else "")]
    if cfg.data.sample_users:
        lines.append(f"users sampled: data.sample_users={cfg.data.sample_users:g} (by a stable hash of the user id)")
    if s.get("shards"):
        lines.append(f"prepared in {s['shards']} shards of users (data.shard_rows={cfg.data.shard_rows:,})")
    # the window is fixed here: a run of another size refuses the folder (data/prepared_folder.py check_history_window)
    lines.append(f"history window: {cfg.data.examples.history_len} lines (data.examples.history_len, "
                 f"size={cfg.size.name}; runs expecting another window refuse this folder)")
    return lines + report.lines()
