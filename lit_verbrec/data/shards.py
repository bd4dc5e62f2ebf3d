"""Preparing own logs of any size in shards of users: bounded memory, every core, resumable.

Every rule that makes an example looks at one user's rows, plus three things of the whole log: the
catalog, the time span behind the split cut-offs, and the titles' popularity that negatives are
drawn by. So the preparation runs in passes (data/shard_passes.py), none of which holds more than
a shard:

1. **partition** (one process): the log is streamed batch by batch (data/tables.py; the
   data.sample_users filter applied while reading), each batch parsed and checked as the in-memory
   read checks it (bad rows raise with file, row and column, or are counted), and written by Arrow's
   dataset writer into `shard=k/` folders, k = a hash of the user id (FNV-1a, data/partition.py) mod the
   shard count. The span is taken on the way, over rows on catalog items.
2. **canonical** (per shard): de-duplicate, drop orphans, sort (data/canonical.py), choose the
   targets; each shard's title plays (without its validation and test targets) add up to the
   popularity.
3. **examples** (per shard): each shard's examples (data/examples.py shard_examples), written as one
   part file of `examples.parquet/`, the prepared folder's Parquet dataset.

Negatives and target positions are drawn per example from its own key (data/draws.py), so the
examples, candidates and splits are those of the in-memory path, whatever the number of shards.
Peak memory is set by `data.shard_rows` x `data.workers`, not by the log's size. Here the shard
passes run in a pool of `data.workers` processes; under Slurm as job arrays (launch/prepare_jobs.py).
Arrow's dataset writer, not hand-written spill code, does the partitioning; why Arrow (and not
DuckDB or Polars): docs/data.md.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from lit_verbrec.config.data_schema import DataConfig
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import DataError
from lit_verbrec.data.shard_passes import (
    canonical_pass,
    examples_pass,
    partition_pass,
    popularity_pass,
    publish_pass,
    work_folder,
)

__all__ = ["prepare_in_shards"]


def _cores() -> int:
    """The cores this process may use (a Slurm job's allocation, a taskset), or the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def prepare_in_shards(cfg: DataConfig, out: Path, report: DataReport, progress: bool = True) -> dict:
    """Prepare the log `cfg` names into `out` (items.parquet, summary.json, examples.parquet/ last);
    returns the summary, its skips also counted in `report`. Raises DataError on bad input (the
    work folder is removed then: nothing to resume); any other failure leaves the work folder, and
    the next call resumes it."""
    work = work_folder(out)
    try:
        plan = partition_pass(cfg, work)
        workers = min(cfg.workers or _cores(), plan.shards)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for name, run in (("canonical", canonical_pass), ("examples", examples_pass)):
                if name == "examples":
                    popularity_pass(cfg, work)
                done = pool.map(partial(run, cfg, work), range(plan.shards))
                list(tqdm(done, total=plan.shards, desc=f"shards: {name}", disable=not progress))
        summary = publish_pass(cfg, work, out)
    except DataError:
        shutil.rmtree(work, ignore_errors=True)
        raise
    report.absorb(DataReport.from_dict(summary["skipped"]))
    return summary
