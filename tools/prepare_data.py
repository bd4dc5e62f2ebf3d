"""Turn interaction logs into the paper's reranking examples (Parquet).

    python tools/prepare_data.py                                   # the built-in synthetic log
    python tools/prepare_data.py data=movielens data.path=ml-1m out=prepared/ml-1m
    python tools/prepare_data.py data=parquet data.path=logs/ data.interactions=events.csv \\
        data.columns.user=member_id data.timestamp_format=iso out=prepared/mine

Writes examples.parquet, items.parquet, summary.json and config.yaml into `out`
(default runs/<run.name>/data) and prints a summary: users, examples per split,
discovery share, mean history length, the history window (set by the size: pass the size
of the runs that will read it), and everything skipped with where it happened.
Own logs are prepared in shards of users on every core (data.shard_rows, data.workers;
examples.parquet is then a folder of part files, read as one dataset); a stopped run resumes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lit_verbrec.config.cli import parse_cli
from lit_verbrec.data.preparation import prepare_run_data, reading_line
from lit_verbrec.data.schema import DataError


def main(argv: list[str] | None = None) -> int:
    cfg, _ = parse_cli(__doc__, argv)
    out = Path(cfg.out or Path(cfg.run.root) / cfg.run.name / "data")
    try:
        print(reading_line(cfg), flush=True)
        prepared = prepare_run_data(cfg, out)
    except DataError as err:
        print(f"data error: {err}", file=sys.stderr)
        return 1
    for note in prepared["notes"]:
        print(note, file=sys.stderr)
    print("\n".join(prepared["lines"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
