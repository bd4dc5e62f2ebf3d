"""One entry point from `data.source` to canonical tables, and from there to a prepared folder
(data/prepared_folder.py): own logs in shards of users (data/shards.py) unless data.shard_rows=0,
the built-in sources in memory."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from lit_verbrec.config.schema import DataConfig
from lit_verbrec.data.canonical import finalize
from lit_verbrec.data.examples import build_examples
from lit_verbrec.data.logs import read_logs
from lit_verbrec.data.movielens import read_movielens
from lit_verbrec.data.prepared_folder import write_prepared
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import CanonicalData
from lit_verbrec.data.shards import prepare_in_shards
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


def prepare(cfg: DataConfig, out: str | Path, report: DataReport, progress: bool = True) -> dict:
    """Source -> canonical tables -> examples, written to `out`; returns summary.json's dict. Raises
    DataError on bad input. Everything skipped on the way is counted in `report`."""
    if cfg.source == "parquet" and cfg.shard_rows > 0:
        return prepare_in_shards(cfg, Path(out), report, progress)
    data = load_source(cfg, report)
    prepared = build_examples(data, cfg.examples, cfg.seed, report)
    prepared.summary["sample_users"] = cfg.sample_users
    write_prepared(prepared, out)
    return prepared.summary
