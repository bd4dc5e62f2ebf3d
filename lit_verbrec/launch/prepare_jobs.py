"""stage=prepare under cluster=slurm, for own logs prepared in shards: five jobs, two of them arrays.

    prepare.partition    one task: the log streamed into shards of users (data/partition.py)
    prepare.canonical    a job array, one task per shard: de-duplicate, sort, title plays
    prepare.popularity   one task: the shards' plays added
    prepare.examples     a job array, one task per shard: its examples, one part file
    prepare.publish      one task: items, summary and the examples dataset into the run's data folder

Each waits on the one before it (afterok: a whole array), stage 1 on the last. All use the
`cluster.prepare.*` resources (CPU only by default); an array task is one shard, so its memory is
one shard's (data.shard_rows). The array's size is the shard count, computed at submission from the
log's files without reading a row (data/shard_passes.py shard_count), as the partition job computes it.

Every pass writes its markers last and returns at once when they are there: a rerun of the same
command resubmits the jobs that did not complete, and in a resubmitted array the shards that finished
return in seconds, so only the failed ones are redone (jobs.json keeps every submission).
"""

from __future__ import annotations

from pathlib import Path

from lit_verbrec.config.compose import save_config
from lit_verbrec.config.schema import Config
from lit_verbrec.data.preparation import summary_lines
from lit_verbrec.data.prepared_folder import check_history_window, has_examples
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.shard_passes import (
    canonical_pass,
    examples_pass,
    partition_pass,
    popularity_pass,
    publish_pass,
    shard_count,
    work_folder,
)

__all__ = ["ARRAYS", "PASSES", "PreparePass", "array_size", "expand_stages", "in_shards"]

PASSES = ("partition", "canonical", "popularity", "examples", "publish")
ARRAYS = ("canonical", "examples")
"""The passes that run as job arrays, one task per shard."""


def in_shards(cfg: Config) -> bool:
    """The run's log is prepared in shards (own logs, data.shard_rows > 0)."""
    return cfg.data.source == "parquet" and cfg.data.shard_rows > 0


def expand_stages(cfg: Config) -> list[str]:
    """The jobs of the configured stages: `prepare` becomes its five passes when prepared in shards."""
    out = []
    for stage in cfg.stage.stages:
        out += [f"prepare.{p}" for p in PASSES] if stage == "prepare" and in_shards(cfg) else [stage]
    return out


def array_size(cfg: Config, job: str) -> int:
    """Tasks of the job `job` (prepare.<pass>): the shard count for an array, else 0 (a plain job)."""
    return shard_count(cfg.data) if job.removeprefix("prepare.") in ARRAYS else 0


def _partition(cfg: Config, work, folder, shard) -> None:
    plan = partition_pass(cfg.data, work)
    print(f"prepare.partition: {plan.rows:,} interactions in {plan.shards} shards ({work})", flush=True)


def _publish(cfg: Config, work, folder, shard) -> None:
    summary = publish_pass(cfg.data, work, folder)
    save_config(cfg, folder)
    lines = summary_lines(cfg, summary, DataReport.from_dict(summary["skipped"]))
    print("\n".join([*lines, f"wrote {folder}"]), flush=True)


def _shard(run):
    def one(cfg: Config, work, folder, shard) -> None:
        if not run(cfg.data, work, shard):   # a resubmitted array: only the shards not done work
            print(f"shard {shard}: done by an earlier job; not redone", flush=True)
    return one


RUN = {
    "partition": _partition,
    "canonical": _shard(canonical_pass),
    "popularity": lambda cfg, work, folder, shard: popularity_pass(cfg.data, work),
    "examples": _shard(examples_pass),
    "publish": _publish,
}
"""pass -> what its job (or array task, for one shard) runs."""


class PreparePass:
    """What one prepare job (or one task of an array: `shard`) runs; pickled by submitit. `folder`:
    the run's data folder (training/run.py data_folder), given here so that a job imports no training
    code (torch, Lightning): an array task starts in about a second."""

    def __init__(self, cfg: Config, job: str, folder: Path) -> None:
        self.cfg, self.name, self.folder = cfg, job.removeprefix("prepare."), folder

    def __call__(self, shard: int | None = None) -> dict:
        cfg, folder = self.cfg, self.folder
        reused = has_examples(folder)
        if reused:                          # prepared before: kept, as stage=prepare keeps it
            print(f"prepare.{self.name}: {folder} already holds prepared examples; kept", flush=True)
        else:
            RUN[self.name](cfg, work_folder(folder), folder, shard)
        if self.name == "publish":          # the window of what stage 1 will read, as stage=prepare checks it
            check_history_window(folder, cfg.data.examples.history_len, cfg.size.name)
        return {"pass": self.name, "shard": shard, "reused": reused}
