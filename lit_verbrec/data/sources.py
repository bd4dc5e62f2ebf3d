"""One entry point from `data.source` to canonical tables, and the prepared-folder layout.

    prepared/
      examples.parquet   the reranking examples, all splits (column `split`)
      items.parquet      the catalog + `popularity`
      summary.json       counts, the history window (history_len), discovery share, mean history
                         length, every skip
      config.yaml        the resolved config that produced it
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lit_verbrec.config.schema import DataConfig
from lit_verbrec.data.canonical import finalize
from lit_verbrec.data.examples import PreparedData, build_examples
from lit_verbrec.data.files import atomic_write
from lit_verbrec.data.logs import read_logs
from lit_verbrec.data.movielens import read_movielens
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import CanonicalData, DataError
from lit_verbrec.data.synthetic import generate
from lit_verbrec.data.user_sample import UserSample


def load_source(cfg: DataConfig, report: DataReport) -> CanonicalData:
    """Read (or simulate) the configured source into validated canonical tables, the users of
    data.sample_users only (logs: filtered while reading; the others after)."""
    if cfg.source == "parquet":
        return read_logs(cfg, report)
    if cfg.source == "synthetic":
        interactions, items = generate(cfg.synthetic, cfg.seed)
        data = finalize(interactions, items, report, "synthetic log")
    else:
        data = read_movielens(cfg.path, report)
    users = data.interactions["user"]
    sample = UserSample.of(cfg.sample_users, users.chunks)
    if sample is None:
        return data
    return CanonicalData(data.interactions.filter(pa.array(sample.mask(users))), data.items)


def prepare(cfg: DataConfig, out: str | Path, report: DataReport, progress: bool = True) -> PreparedData:
    """Source -> canonical tables -> examples, written to `out`; raises DataError on bad input.
    Everything skipped on the way is counted in `report`."""
    data = load_source(cfg, report)
    prepared = build_examples(data, cfg.examples, cfg.seed, report)
    prepared.summary["sample_users"] = cfg.sample_users
    write_prepared(prepared, out)
    return prepared


def write_prepared(prepared: PreparedData, folder: str | Path) -> None:
    """Atomically, examples.parquet last: a folder with it holds the whole prepared data (data/files.py)."""
    folder = Path(folder)
    atomic_write(folder / "items.parquet", lambda tmp: pq.write_table(prepared.items, tmp))
    atomic_write(folder / "summary.json", lambda tmp: tmp.write_text(json.dumps(prepared.summary, indent=2) + "\n"))
    atomic_write(folder / "examples.parquet", lambda tmp: pq.write_table(prepared.examples, tmp))


def read_prepared(folder: str | Path, split: str | None = None) -> tuple[pa.Table, pa.Table]:
    """(examples, items) of a folder written by tools/prepare_data.py; examples of one split if given."""
    folder = Path(folder)
    for name in ("examples.parquet", "items.parquet"):
        if not (folder / name).is_file():
            raise DataError(f"{folder}: no {name}; write it with `python tools/prepare_data.py out={folder}`")
    filters = [("split", "=", split)] if split else None
    return pq.read_table(folder / "examples.parquet", filters=filters), pq.read_table(folder / "items.parquet")


def check_history_window(folder: str | Path, history_len: int, size_name: str) -> None:
    """Refuse a prepared folder cut to another history window than the run's (data.examples.history_len,
    set by the size: tiny 16 lines, 8b/32b the paper's 100): the window is fixed when the examples
    are built, so a run would otherwise train on the folder's without a word. Folders written before
    the window was recorded (no `history_len` in summary.json) are taken as they are."""
    summary = Path(folder) / "summary.json"
    prepared = json.loads(summary.read_text()).get("history_len") if summary.is_file() else None
    if prepared is None or prepared == history_len:
        return
    raise DataError(f"{folder}: prepared with a {prepared}-line history window, but this run (size={size_name}) "
                    f"expects {history_len} (data.examples.history_len); prepare it again with size={size_name} "
                    f"(tools/prepare_data.py size={size_name} out=...), or set data.examples.history_len={prepared} "
                    f"to train on the folder's window")
