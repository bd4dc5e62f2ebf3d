"""Turn interaction logs into the paper's reranking examples (Parquet).

    python tools/prepare_data.py                                   # the built-in synthetic log
    python tools/prepare_data.py data=movielens data.path=ml-1m out=prepared/ml-1m
    python tools/prepare_data.py data=parquet data.path=logs/ data.interactions=events.csv \\
        data.columns.user=member_id data.timestamp_format=iso out=prepared/mine

Writes examples.parquet, items.parquet, summary.json and config.yaml into `out`
(default runs/<run.name>/data) and prints a summary: users, examples per split,
discovery share, mean history length, the history window (set by the size: pass the size
of the runs that will read it), and everything skipped with where it happened.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lit_verbrec.config.cli import parse_cli
from lit_verbrec.config.compose import save_config
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import DataError
from lit_verbrec.data.sources import prepare


def main(argv: list[str] | None = None) -> int:
    cfg, _ = parse_cli(__doc__, argv)
    out = Path(cfg.out or Path(cfg.run.root) / cfg.run.name / "data")
    report = DataReport()
    start = time.perf_counter()
    try:
        print(f"reading {cfg.data.source}" + (f" from {cfg.data.path}" if cfg.data.path else ""), flush=True)
        prepared = prepare(cfg.data, out, report)
    except DataError as err:
        print(f"data error: {err}", file=sys.stderr)
        return 1
    save_config(cfg, out)
    s = prepared.summary
    ex = s["examples"]
    print(f"{s['interactions']:,} interactions, {s['items']:,} items")
    print(f"users {s['users']:,} ({s['users_with_examples']:,} with examples) | examples train {ex['train']:,} "
          f"val {ex['val']:,} test {ex['test']:,} | discovery share {s['discovery_share_all']:.1%} | "
          f"mean history length {s['mean_history_length']:.1f} | {time.perf_counter() - start:.1f} s")
    if cfg.data.sample_users:
        print(f"users sampled: data.sample_users={cfg.data.sample_users:g} (by a stable hash of the user id)")
    # the window is fixed here: a run of another size refuses the folder (check_history_window)
    print(f"history window: {cfg.data.examples.history_len} lines (data.examples.history_len, size={cfg.size.name}; "
          f"runs expecting another window refuse this folder)")
    if cfg.size.name == "tiny" and cfg.data.source != "synthetic":
        print(f"note: size=tiny cuts histories to {cfg.data.examples.history_len} lines; for size=8b or 32b runs "
              "(the paper's 100 lines) prepare with that size", file=sys.stderr)
    for line in report.lines():
        print(line)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
