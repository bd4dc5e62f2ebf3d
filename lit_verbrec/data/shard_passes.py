"""The passes of a sharded preparation (data/shards.py), each resumable over one work folder.

    <out>/.shards/                 (pass 1, the partition: data/partition.py)
      plan.json             pass 1 done: shard count, rows, span, its report, the settings' key
      catalog.arrow         the checked catalog
      log/shard=k/          the parsed log rows of shard k (removed when pass 2 has read them)
      canonical/k.arrow     pass 2: shard k's canonical rows; k.npy its title plays; k.json done
      popularity.npy        the titles' popularity: every shard's plays, added
      examples/part-k.parquet, examples-done/k.json     pass 3 of shard k
Each pass writes its marker last and returns at once when the marker is there, so a killed run (or
a failed Slurm array task) is resumed where it stopped, and a finished shard is not redone. A work
folder left by other settings or other files (`plan.json`'s key) is started over.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from lit_verbrec.config.data_schema import DataConfig
from lit_verbrec.data.canonical import catalog_table, finalize
from lit_verbrec.data.examples import shard_examples, title_plays, with_popularity
from lit_verbrec.data.files import atomic_write, replace_folder
from lit_verbrec.data.logs import open_log
from lit_verbrec.data.partition import SHARD, partition_log
from lit_verbrec.data.prepared_folder import EXAMPLES_FILE, write_items_and_summary
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import CanonicalData, DataError
from lit_verbrec.data.summary import SPLITS, add_tallies, empty_tally, summarize
from lit_verbrec.data.tables import Table, locate
from lit_verbrec.data.titles import TitleIndex

__all__ = ["Plan", "canonical_pass", "examples_pass", "partition_pass", "popularity_pass", "publish_pass",
           "shard_count", "work_folder"]

EXAMPLE_ROW_GROUP = 4096
"""Examples per row group of a shard's part file (one split per group)."""


@dataclass(frozen=True)
class Plan:
    """What the partition pass learned of the whole log."""
    shards: int
    rows: int                  # interactions written (bad rows skipped)
    label: str                 # "line" or "row": how messages number the log's rows
    span: tuple[int, int]      # first and last timestamp (seconds) of rows on catalog items
    report: dict               # the partition pass's skips (DataReport.as_dict)


def work_folder(out: Path) -> Path:
    return Path(out) / ".shards"


def settings_key(cfg: DataConfig) -> str:
    """What the work folder's content depends on: every data setting but where it goes and how many
    processes write it, and the log's and catalog's files (path, size, modification time), so a log
    rewritten in place is never resumed from another's shards."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("prepared", "workers")}
    files = [(str(f), f.stat().st_size, f.stat().st_mtime_ns)
             for name in (cfg.interactions, cfg.items) for f in locate(Path(cfg.path), name).files]
    return hashlib.sha256(json.dumps([settings, files], sort_keys=True, default=str).encode()).hexdigest()[:16]


def shard_count(cfg: DataConfig, log: Table | None = None) -> int:
    """Shards of about `data.shard_rows` interactions: the log's rows (Parquet metadata, or a CSV's
    size over its first lines' bytes per row), times the sampled share of users when it is a share.
    Cheap (no row is read), so a job array can be sized before the log is read."""
    log = log or locate(Path(cfg.path), cfg.interactions)
    rows = sum(_estimated_rows(file) for file in log.files)
    share = cfg.sample_users if 0 < cfg.sample_users < 1 else 1.0
    return max(1, -(-round(rows * share) // cfg.shard_rows))


def _estimated_rows(file: Path) -> int:
    if file.suffix.lower() == ".parquet":
        return pq.ParquetFile(file).metadata.num_rows
    with file.open("rb") as f:
        head = f.read(1 << 20)
    return round(file.stat().st_size / max(len(head), 1) * max(head.count(b"\n") - 1, 1))


def _plan_and_catalog(work: Path) -> tuple[Plan, pa.Table]:
    return read_plan(work), feather.read_table(work / "catalog.arrow")


def read_plan(work: Path) -> Plan:
    data = json.loads((work / "plan.json").read_text())
    return Plan(data["shards"], data["rows"], data["label"], tuple(data["span"]), data["report"])


def partition_pass(cfg: DataConfig, work: Path) -> Plan:
    """Pass 1: the log streamed into `work/log/shard=k/`, parsed and checked; plan.json last."""
    if (work / "plan.json").is_file() and json.loads((work / "plan.json").read_text()).get("key") == settings_key(cfg):
        return read_plan(work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    source = open_log(cfg)
    catalog = catalog_table(source.items, cfg.items, source.items_label)
    feather.write_feather(catalog, work / "catalog.arrow")
    shards = shard_count(cfg, source.log)
    report = DataReport()
    seen = partition_log(cfg, source, catalog, shards, work / "log", report)
    plan = Plan(shards, seen["rows"], seen["label"], (seen["first"], seen["last"]), report.as_dict())
    atomic_write(work / "plan.json", lambda tmp: tmp.write_text(json.dumps(asdict(plan) | {"key": settings_key(cfg)})))
    return plan


def canonical_pass(cfg: DataConfig, work: Path, k: int) -> bool:
    """Pass 2 for shard k: its canonical rows (data/canonical.py finalize) and title plays without
    its validation and test targets (the shards' add up to the popularity); k.json last. False when
    an earlier run had done it."""
    done = work / "canonical" / f"{k}.json"
    if done.is_file():
        return False
    plan, catalog = _plan_and_catalog(work)
    report, path = DataReport(), work / "log" / f"{SHARD}={k}"
    frame = pq.read_table(path).to_pandas() if path.exists() else pa.table({}).to_pandas()   # a part's name: categorical
    data = finalize(frame, catalog, report, cfg.interactions, items_source=cfg.items, row_label=plan.label, shard=True)
    done.parent.mkdir(exist_ok=True)
    # Arrow's file format keeps the types exactly (Parquet has no timestamp in seconds)
    feather.write_feather(data.interactions, work / "canonical" / f"{k}.arrow", compression="lz4")
    plays = (title_plays(data, cfg.examples, plan.span) if data.interactions.num_rows
             else np.zeros(TitleIndex(catalog).n_titles, dtype=np.int64))
    atomic_write(work / "canonical" / f"{k}.npy", lambda tmp: _save(tmp, plays))
    atomic_write(done, lambda tmp: tmp.write_text(json.dumps({"rows": data.interactions.num_rows,
                                                             "report": report.as_dict()})))
    shutil.rmtree(path, ignore_errors=True)            # the disk holds each shard once
    return True


def _save(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as f:             # np.save given a path would add ".npy" to the temporary's name
        np.save(f, array)


def popularity_pass(cfg: DataConfig, work: Path) -> np.ndarray:
    """Every shard's title plays, added: what negatives are drawn by, and items.parquet's popularity."""
    if (work / "popularity.npy").is_file():
        return np.load(work / "popularity.npy")
    plan = read_plan(work)
    missing = [k for k in range(plan.shards) if not (work / "canonical" / f"{k}.json").is_file()]
    if missing:
        raise RuntimeError(f"{work}: shards {missing[:10]} have not been through the canonical pass")
    rows = sum(json.loads((work / "canonical" / f"{k}.json").read_text())["rows"] for k in range(plan.shards))
    if rows == 0:
        raise DataError(f"{cfg.interactions}: no interactions left: none is on an item of the catalog {cfg.items}")
    popularity = sum(np.load(work / "canonical" / f"{k}.npy") for k in range(plan.shards))
    atomic_write(work / "popularity.npy", lambda tmp: _save(tmp, popularity))
    return popularity


def examples_pass(cfg: DataConfig, work: Path, k: int) -> bool:
    """Pass 3 for shard k: its examples, one part file of the examples dataset; examples-done/k.json
    last. False when an earlier run had done it."""
    done = work / "examples-done" / f"{k}.json"
    if done.is_file():
        return False
    plan, catalog = _plan_and_catalog(work)
    report, tally = DataReport(), empty_tally()
    interactions = feather.read_table(work / "canonical" / f"{k}.arrow")
    if interactions.num_rows:
        examples, tally = shard_examples(CanonicalData(interactions, catalog), cfg.examples, cfg.seed, report,
                                         plan.span, np.load(work / "popularity.npy"), by_split=True)
        if examples.num_rows:
            (work / "examples").mkdir(exist_ok=True)
            atomic_write(work / "examples" / f"part-{k:05d}.parquet", lambda tmp: _write_by_split(examples, tmp))
    done.parent.mkdir(exist_ok=True)
    atomic_write(done, lambda tmp: tmp.write_text(json.dumps({"tally": tally, "report": report.as_dict()})))
    return True


def _write_by_split(examples: pa.Table, path: Path) -> None:
    """Examples grouped by split (train, val, test; shard_examples(by_split=True)) in row groups of at
    most EXAMPLE_ROW_GROUP rows, none across two splits: a reader of one split (read_prepared's filter)
    skips the other splits' row groups by their statistics instead of decoding every history."""
    split = examples["split"].to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, split[1:] != split[:-1]])
    order = [SPLITS.index(s) for s in split[starts]]
    if order != sorted(set(order)):
        raise AssertionError(f"{path.name}: examples not grouped by split ({list(split[starts])})")
    with pq.ParquetWriter(path, examples.schema) as writer:
        for start, end in zip(starts, np.r_[starts[1:], len(split)], strict=True):
            for at in range(start, end, EXAMPLE_ROW_GROUP):
                writer.write_table(examples.slice(at, min(EXAMPLE_ROW_GROUP, end - at)))


def publish_pass(cfg: DataConfig, work: Path, out: Path) -> dict:
    """items.parquet and summary.json, then the examples folder moved to `out` in whole (a folder
    with examples.parquet holds the whole prepared data); the work folder removed. The summary."""
    plan, catalog = _plan_and_catalog(work)
    report, tally, rows = DataReport.from_dict(plan.report), empty_tally(), 0
    for k in range(plan.shards):
        canonical = json.loads((work / "canonical" / f"{k}.json").read_text())
        built = json.loads((work / "examples-done" / f"{k}.json").read_text())
        rows += canonical["rows"]
        report.absorb(DataReport.from_dict(canonical["report"]))
        report.absorb(DataReport.from_dict(built["report"]))
        tally = add_tallies(tally, built["tally"])
    summary = (summarize(tally, rows, catalog.num_rows, cfg.examples, report)
               | {"sample_users": cfg.sample_users, "shards": plan.shards})
    write_items_and_summary(with_popularity(catalog, np.load(work / "popularity.npy")), summary, out)
    replace_folder(work / "examples", out / EXAMPLES_FILE)
    shutil.rmtree(work)
    return summary
