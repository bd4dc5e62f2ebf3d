"""The prepared folder: what tools/prepare_data.py and `stage=prepare` write and every stage reads.

    prepared/
      examples.parquet   the reranking examples, all splits (column `split`): one file, or a
                         folder of part files (one per shard of users, data/shards.py); both
                         read as one Parquet dataset
      items.parquet      the catalog + `popularity`
      summary.json       counts, the history window (history_len), discovery share, mean history
                         length, every skip (and the shard count, when sharded)
      config.yaml        the resolved config that produced it
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lit_verbrec.data.examples import PreparedData
from lit_verbrec.data.files import atomic_write
from lit_verbrec.data.schema import DataError

EXAMPLES_FILE = "examples.parquet"


def has_examples(folder: str | Path) -> bool:
    """The folder holds a whole prepared set (its examples are written last)."""
    return (Path(folder) / EXAMPLES_FILE).exists()


def write_prepared(prepared: PreparedData, folder: str | Path) -> None:
    """Atomically, examples.parquet last: a folder with it holds the whole prepared data (data/files.py)."""
    folder = Path(folder)
    write_items_and_summary(prepared.items, prepared.summary, folder)
    examples = folder / EXAMPLES_FILE
    if examples.is_dir():                        # a sharded preparation's dataset, replaced by one file
        shutil.rmtree(examples)
    atomic_write(examples, lambda tmp: pq.write_table(prepared.examples, tmp))


def write_items_and_summary(items: pa.Table, summary: dict, folder: Path) -> None:
    """The two files written before the examples (data/shards.py writes its examples itself)."""
    atomic_write(folder / "items.parquet", lambda tmp: pq.write_table(items, tmp))
    atomic_write(folder / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))


def read_prepared(folder: str | Path, split: str | None = None) -> tuple[pa.Table, pa.Table]:
    """(examples, items) of a folder written by tools/prepare_data.py; examples of one split if given."""
    folder = Path(folder)
    for name in (EXAMPLES_FILE, "items.parquet"):
        if not (folder / name).exists():
            raise DataError(f"{folder}: no {name}; write it with `python tools/prepare_data.py out={folder}`")
    filters = [("split", "=", split)] if split else None
    return pq.read_table(folder / EXAMPLES_FILE, filters=filters), pq.read_table(folder / "items.parquet")


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
