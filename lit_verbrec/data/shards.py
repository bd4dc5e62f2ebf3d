"""Preparing own logs of any size in shards of users: bounded memory, every core.

Every rule that makes an example looks at one user's rows, plus three things of the whole log: the
catalog, the time span behind the split cut-offs, and the titles' popularity that negatives are
drawn by. So the preparation runs in passes, none of which holds more than a shard:

1. **partition** (this process): the log is streamed batch by batch (data/tables.py; the
   data.sample_users filter applied while reading), each batch parsed and checked as the in-memory
   read checks it (bad rows raise with file, row and column, or are counted), and written by Arrow's
   dataset writer into `shard=k/` folders, k = the user's id hash (data/user_sample.py) mod the
   shard count. The span is taken on the way, over rows on catalog items.
2. **canonical** (one process per shard, `data.workers` at once): de-duplicate, drop orphans, sort
   (data/canonical.py), choose the targets; each shard's title plays (without its validation and
   test targets) add up to the popularity.
3. **examples** (the same): each shard's examples (data/examples.py shard_examples), written as one
   part file of `examples.parquet/`, the prepared folder's Parquet dataset.

Negatives and target positions are drawn per example from its own key (data/draws.py), so the
examples, candidates and splits are those of the in-memory path, whatever the number of shards.
Peak memory is set by `data.shard_rows` x `data.workers`, not by the log's size. Arrow's dataset
writer, not hand-written spill code, does the partitioning; why Arrow (and not DuckDB or Polars):
docs/data.md.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.parquet as pq
from tqdm import tqdm

from lit_verbrec.config.data_schema import DataConfig
from lit_verbrec.data.canonical import catalog_table, finalize
from lit_verbrec.data.examples import shard_examples, title_plays, with_popularity
from lit_verbrec.data.files import replace_folder
from lit_verbrec.data.logs import LogSource, open_log, parse_interactions
from lit_verbrec.data.prepared_folder import EXAMPLES_FILE, write_items_and_summary
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import CanonicalData, DataError
from lit_verbrec.data.summary import add_tallies, empty_tally, summarize
from lit_verbrec.data.tables import Table, table_frames
from lit_verbrec.data.titles import TitleIndex
from lit_verbrec.data.user_sample import FULL, user_hashes

__all__ = ["prepare_in_shards", "shard_count"]

SHARD = "shard"


@dataclass(frozen=True)
class Partitioned:
    """What the partition pass learned of the whole log."""
    shards: int
    rows: int                  # interactions written (bad rows skipped)
    label: str                 # "line" or "row": how messages number the log's rows
    span: tuple[int, int]      # first and last timestamp (seconds) of rows on catalog items


def shard_count(cfg: DataConfig, source: LogSource) -> int:
    """Shards of about `data.shard_rows` interactions: the log's rows (Parquet metadata, or a CSV's
    size over its first lines' bytes per row) times the sampled share of users."""
    rows = sum(_estimated_rows(file) for file in source.log.files)
    share = 1.0 if source.sample is None else source.sample.threshold / FULL
    return max(1, math.ceil(rows * share / cfg.shard_rows))


def _estimated_rows(file: Path) -> int:
    if file.suffix.lower() == ".parquet":
        return pq.ParquetFile(file).metadata.num_rows
    with file.open("rb") as f:
        head = f.read(1 << 20)
    return round(file.stat().st_size / max(len(head), 1) * max(head.count(b"\n") - 1, 1))


def prepare_in_shards(cfg: DataConfig, out: Path, report: DataReport, progress: bool = True) -> dict:
    """Prepare the log `cfg` names into `out` (items.parquet, summary.json, examples.parquet/ last);
    returns the summary. Raises DataError on bad input; nothing is left in `out` then."""
    source = open_log(cfg)
    catalog = catalog_table(source.items, cfg.items, source.items_label)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".shards-") as tmp:
        work = Path(tmp)
        part = partition(cfg, source, catalog, shard_count(cfg, source), work / "log", report)
        workers = min(cfg.workers or len(os.sched_getaffinity(0)), part.shards)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            jobs = [(cfg, catalog, part, k, work) for k in range(part.shards)]
            canonical = list(tqdm(pool.map(canonical_shard, jobs), total=part.shards, desc="shards: canonical",
                                  disable=not progress))
            rows = sum(c["rows"] for c in canonical)
            for c in canonical:
                report.absorb(c["report"])
            if rows == 0:
                raise DataError(f"{cfg.interactions}: no interactions left: none is on an item of the catalog {cfg.items}")
            popularity = np.sum([c["plays"] for c in canonical], axis=0)
            jobs = [(cfg, catalog, part, k, work, popularity) for k in range(part.shards)]
            built = list(tqdm(pool.map(examples_shard, jobs), total=part.shards, desc="shards: examples",
                              disable=not progress))
        tally = empty_tally()
        for b in built:
            tally = add_tallies(tally, b["tally"])
            report.absorb(b["report"])
        summary = (summarize(tally, rows, catalog.num_rows, cfg.examples, report)
                   | {"sample_users": cfg.sample_users, "shards": part.shards})
        _publish(work / "examples", with_popularity(catalog, popularity), summary, out)
    return summary


def partition(cfg: DataConfig, source: LogSource, catalog: pa.Table, shards: int, folder: Path,
              report: DataReport) -> Partitioned:
    """Stream the log into `folder/shard=k/` (Arrow's dataset writer), parsed and checked."""
    seen = {"rows": 0, "label": "row", "first": None, "last": None}
    items = catalog["item"]

    def batches():
        schema = None
        for frame, label in table_frames(source.log, cfg.encoding, source.keep(cfg)):
            rows = parse_interactions(frame, cfg, report, label)
            if len(rows) == 0:
                continue
            table = pa.Table.from_pandas(rows, preserve_index=False)
            shard = pa.array((user_hashes(table["user"]) % np.uint64(shards)).astype(np.int32))
            table = table.append_column(SHARD, shard)
            schema = schema or _stable(table.schema)
            table = _cast(table, schema, source.log)
            on_catalog = pc.filter(table["timestamp"].cast(pa.int64()), pc.is_in(table["item"], value_set=items))
            if len(on_catalog):
                first, last = pc.min(on_catalog).as_py(), pc.max(on_catalog).as_py()
                seen["first"] = first if seen["first"] is None else min(seen["first"], first)
                seen["last"] = last if seen["last"] is None else max(seen["last"], last)
            seen["rows"] += table.num_rows
            seen["label"] = label
            yield from table.to_batches()

    stream = batches()
    first = next(stream, None)
    if first is None:
        raise DataError(f"{cfg.interactions}: no interactions" + (
            f" (no row is of a user in data.sample_users={cfg.sample_users:g})" if cfg.sample_users else ""))

    def chained():
        yield first
        yield from stream

    ds.write_dataset(chained(), folder, schema=first.schema, format="parquet", preserve_order=True,
                     partitioning=ds.partitioning(pa.schema([(SHARD, pa.int32())]), flavor="hive"),
                     existing_data_behavior="overwrite_or_ignore", basename_template="part-{i}.parquet")
    if seen["first"] is None:
        raise DataError(f"{cfg.interactions}: no interactions left: none is on an item of the catalog {cfg.items}")
    return Partitioned(shards, seen["rows"], seen["label"], (seen["first"], seen["last"]))


def _stable(schema: pa.Schema) -> pa.Schema:
    """The batch schema every batch is cast to: large strings as strings, a part file's name as a
    dictionary with room for any number of part files."""
    fields = [pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if pa.types.is_dictionary(f.type)
              else pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f for f in schema]
    return pa.schema(fields)


def _cast(table: pa.Table, schema: pa.Schema, log: Table) -> pa.Table:
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError) as exc:
        raise DataError(f"{log.name}: a batch of the log does not have the columns or types of its first rows "
                        f"({exc}); part files of one log need one schema") from None


def _shard_path(work: Path, k: int) -> Path:
    return work / "log" / f"{SHARD}={k}"


def canonical_shard(job: tuple) -> dict:
    """Pass 2 for shard k: its canonical rows (data/canonical.py finalize), written for pass 3; its
    title plays without its validation and test targets (the shards' add up to the popularity)."""
    cfg, catalog, part, k, work = job
    report, path = DataReport(), _shard_path(work, k)
    frame = pq.read_table(path).to_pandas() if path.exists() else pa.table({}).to_pandas()   # a part's name: categorical
    data = finalize(frame, catalog, report, cfg.interactions, items_source=cfg.items, row_label=part.label, shard=True)
    (work / "canonical").mkdir(exist_ok=True)
    # Arrow's file format keeps the types exactly (Parquet has no timestamp in seconds)
    feather.write_feather(data.interactions, work / "canonical" / f"{k}.arrow", compression="lz4")
    shutil.rmtree(path, ignore_errors=True)            # the disk holds each shard once
    plays = (title_plays(data, cfg.examples, part.span) if data.interactions.num_rows
             else np.zeros(TitleIndex(catalog).n_titles, dtype=np.int64))
    return {"rows": data.interactions.num_rows, "plays": plays, "report": report}


def examples_shard(job: tuple) -> dict:
    """Pass 3 for shard k: its examples, one part file of the examples dataset."""
    cfg, catalog, part, k, work, popularity = job
    report = DataReport()
    interactions = feather.read_table(work / "canonical" / f"{k}.arrow")
    if interactions.num_rows == 0:
        return {"tally": empty_tally(), "report": report}
    examples, tally = shard_examples(CanonicalData(interactions, catalog), cfg.examples, cfg.seed, report,
                                     part.span, popularity)
    (work / "examples").mkdir(exist_ok=True)
    if examples.num_rows:
        pq.write_table(examples, work / "examples" / f"part-{k:05d}.parquet")
    return {"tally": tally, "report": report}


def _publish(examples: Path, items: pa.Table, summary: dict, out: Path) -> None:
    """items and summary first, the examples folder last, moved in whole: a folder with
    examples.parquet holds the whole prepared data."""
    write_items_and_summary(items, summary, out)
    replace_folder(examples, out / EXAMPLES_FILE)
