"""One stage of a run, from the config: run folder, data, tokenizer, models, Trainer, fit.

    runs/<run.name>/
      config.yaml                resolved config
      data/                      prepared examples (made on first use unless data.prepared is set)
      tokenizer/                 the builtin tokenizer of a tiny run (trained once, reused by stage 2)
      verbalizer/ reasoner/      one folder per stage:
        checkpoints/last.ckpt      resumable state (a rerun of the same command resumes from it)
        adapter/  adapter-best/    peft adapters: last, and best by validation reward
        logs/                      TensorBoard events and metrics.csv
        samples/                   Markdown tables of sample texts
      cache/                     stage 2's verbalization cache
      results.md, results.json   written by the tools at the end
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import pyarrow.compute as pc
from lightning.pytorch.plugins.environments import SLURMEnvironment

from lit_verbrec.config.compose import save_config
from lit_verbrec.config.schema import Config
from lit_verbrec.config.train_schema import GRPOConfig
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.data.files import atomic_folder_write
from lit_verbrec.data.preparation import prepare_run_data, reading_line
from lit_verbrec.data.prepared_folder import check_history_window, has_examples, read_prepared
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.sources import prepare
from lit_verbrec.models.loading import load_tokenizer
from lit_verbrec.models.tokenizers import build_tiny_tokenizer
from lit_verbrec.rollout.callback import RolloutCallback
from lit_verbrec.text.prompts import reasoner_messages
from lit_verbrec.text.template import METADATA_FIELDS, verbalize_template
from lit_verbrec.text.verbalizer_prompts import verbalizer_messages
from lit_verbrec.training.batches import ResumableBatches
from lit_verbrec.training.callbacks import (
    ReplicaCheck,
    SampleTable,
    StepProgressBar,
    ValidationCallback,
)
from lit_verbrec.training.checkpoints import (
    AdapterCheckpoint,
    AtomicCheckpointIO,
    resumable_checkpoint,
)
from lit_verbrec.training.distributed import rank_info
from lit_verbrec.training.loggers import finish_loggers, stage_loggers
from lit_verbrec.training.preemption import RequeueOnSignal


@dataclass(frozen=True)
class RunPaths:
    run: Path

    @classmethod
    def of(cls, cfg: Config) -> RunPaths:
        return cls(Path(cfg.run.root) / cfg.run.name)

    def stage(self, name: str) -> Path:
        return self.run / name

    @property
    def tokenizer(self) -> Path:
        return self.run / "tokenizer"

    @property
    def cache(self) -> Path:
        return self.run / "cache"

    def oracle_cache(self, cfg: Config) -> Path:
        """oracle.cache_dir if set (shared across runs), else <run>/oracle_cache."""
        return Path(cfg.oracle.cache_dir) if cfg.oracle.cache_dir else self.run / "oracle_cache"


def data_folder(cfg: Config, paths: RunPaths) -> Path:
    """Where the run's prepared examples are: data.prepared if given, else <run>/data."""
    return Path(cfg.data.prepared) if cfg.data.prepared else paths.run / "data"


def prepared_folder(cfg: Config, paths: RunPaths, poll_s: float = 2.0) -> Path:
    """`data_folder`, prepared now if it is not there yet (<run>/data only); a folder cut to another
    history window than the run's is refused (data/prepared_folder.py check_history_window). Of the
    ranks of a job, rank 0 prepares and the others wait for it: one preparation, not one per rank
    (a sharded one keeps its resumable work in one folder, which two writers would break)."""
    folder = data_folder(cfg, paths)
    if not has_examples(folder):
        if cfg.data.prepared:
            raise FileNotFoundError(f"data.prepared={folder} holds no examples.parquet (tools/prepare_data.py writes it)")
        rank = rank_info(cfg).global_rank
        if rank == 0:
            prepare(cfg.data, folder, DataReport())
        else:
            print(f"rank {rank}: waiting for rank 0 to prepare {folder}", flush=True)
            while not has_examples(folder):      # rank 0 failing ends the job step (srun --kill-on-bad-exit)
                time.sleep(poll_s)
    check_history_window(folder, cfg.data.examples.history_len, cfg.size.name)
    return folder


def run_prepare_stage(cfg: Config) -> dict:
    """stage=prepare: the log -> the folder the training stages read (data.prepared if set, else
    <run>/data), on CPU; a folder that already holds examples is kept (its window checked), as the
    training stages would use it. Returns {"stage", "data", "reused", "summary"}."""
    folder = data_folder(cfg, RunPaths.of(cfg))
    reused = has_examples(folder)
    if reused:
        print(f"prepare: {folder} already holds prepared examples; kept (remove it to prepare again)", flush=True)
    else:
        print(f"prepare: {reading_line(cfg)}", flush=True)
        prepared = prepare_run_data(cfg, folder, progress=False)
        print("\n".join(prepared["notes"] + prepared["lines"]), flush=True)
    check_history_window(folder, cfg.data.examples.history_len, cfg.size.name)
    summary = json.loads((folder / "summary.json").read_text())
    return {"stage": "prepare", "data": str(folder), "reused": reused, "summary": summary}


def load_examples(folder: Path, split: str, limit: int = 0) -> tuple[list[dict], Catalog]:
    """The split's examples as dicts (at most `limit`, 0: all) and the item catalog."""
    examples, items = read_prepared(folder, split)
    if limit:
        examples = examples.slice(0, limit)
    return examples.to_pylist(), Catalog.from_table(items)


def run_tokenizer(cfg: Config, paths: RunPaths, examples: list[dict], catalog: Catalog):
    """The run's tokenizer; `size.tokenizer=builtin` trains one on this run's texts, once."""
    if cfg.size.tokenizer != "builtin":
        return load_tokenizer(cfg.size)
    if (paths.tokenizer / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(paths.tokenizer, padding_side="left")
    tokenizer = build_tiny_tokenizer(tokenizer_corpus(examples[:300], catalog))
    # atomically, tokenizer.json last: the ranks of a Slurm job may train the same tokenizer at once
    atomic_folder_write(paths.tokenizer, tokenizer.save_pretrained, last="tokenizer.json")
    return tokenizer


def tokenizer_corpus(examples: list[dict], catalog: Catalog) -> list[str]:
    """Texts a builtin tokenizer must encode well: templates with metadata, prompts, candidate lists."""
    corpus = []
    for e in examples:
        text = verbalize_template(e["history"], catalog, METADATA_FIELDS)
        corpus += [text] + [m["content"] for m in verbalizer_messages("rewrite", text)]
        corpus += [m["content"] for m in reasoner_messages(text, e["candidates"], catalog)]
    return corpus + ["0 1 , Answer: 1 2 3 4 5 6 7 8 9 10"]


def make_trainer(cfg: Config, stage_dir: Path, grpo: GRPOConfig, callbacks: list[pl.Callback]) -> pl.Trainer:
    # With manual optimisation Lightning warns that a step checkpoint holds the weights *after*
    # the step: exactly what resuming at that global step needs.
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    # A local run on a machine with Slurm's client installed (a login node) is not a Slurm job;
    # Lightning's hint to prepend `srun` would point the user the wrong way (cluster=slurm does that).
    warnings.filterwarnings("ignore", message="The `srun` command is available on your system")
    devices, nodes = cfg.train.devices, cfg.train.num_nodes
    plugins, distributed = [AtomicCheckpointIO()], []   # distributed: callbacks only Slurm or multi-rank runs need
    if SLURMEnvironment.detect():
        # Ranks and rendezvous from Slurm's variables; preemption is RequeueOnSignal's alone.
        plugins.append(SLURMEnvironment(auto_requeue=False))
        distributed = [RequeueOnSignal(stage_dir / "checkpoints" / "last.ckpt", cfg.cluster.max_requeues)]
    if devices * nodes > 1:
        distributed.append(ReplicaCheck(stage_dir / "replicas.json"))
    return pl.Trainer(
        accelerator="auto", devices=devices, num_nodes=nodes, strategy="ddp" if devices * nodes > 1 else "auto",
        max_steps=grpo.max_steps, precision="bf16-mixed" if _gpu() else "32-true", plugins=plugins,
        # logs/{tensorboard,csv}/version_<attempt>: a resumed run never overwrites an earlier attempt's logs.
        logger=stage_loggers(cfg, stage_dir),
        log_every_n_steps=1, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[RolloutCallback(sync_dir=stage_dir / "engine-adapters", seed=cfg.run.seed),
                   resumable_checkpoint(stage_dir / "checkpoints", cfg.train.checkpoint_every_n_steps),
                   AdapterCheckpoint(stage_dir / "adapter"), StepProgressBar(), *distributed, *callbacks],
    )


def stage_callbacks(cfg: Config, stage_dir: Path, val_examples: list[dict]) -> list[pl.Callback]:
    callbacks: list[pl.Callback] = [SampleTable(stage_dir / "samples", cfg.train.samples_every_n_steps)]
    if cfg.train.val_every_n_steps and val_examples:
        callbacks.append(ValidationCallback(val_examples, cfg.train.val_every_n_steps, stage_dir / "adapter-best"))
    return callbacks


def fit(cfg: Config, module: pl.LightningModule, train_examples: list[dict], stage_dir: Path, grpo: GRPOConfig,
        callbacks: list[pl.Callback]) -> pl.Trainer:
    """Fit, resuming from <stage>/checkpoints/last.ckpt when an earlier run left one (same global
    step, optimizer state and next batch)."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, stage_dir)
    trainer = make_trainer(cfg, stage_dir, grpo, callbacks)
    batches = ResumableBatches(train_examples, grpo.prompts_per_step, cfg.run.seed,
                               position=lambda: module.batches_done,
                               shard=lambda: (trainer.global_rank, trainer.world_size))
    last = stage_dir / "checkpoints" / "last.ckpt"
    failed = True
    try:
        trainer.fit(module, batches, ckpt_path=str(last) if last.is_file() else None)
        failed = False
    finally:
        finish_loggers(trainer, failed)
    return trainer


def best_adapter(stage_dir: Path) -> Path:
    """The adapter a later stage uses: the best by validation reward if kept, else the last."""
    best = stage_dir / "adapter-best"
    return best if (best / "adapter_config.json").is_file() else stage_dir / "adapter"


def split_counts(folder: Path) -> dict[str, int]:
    examples, _ = read_prepared(folder)
    return {s: int(pc.sum(pc.equal(examples["split"], s)).as_py() or 0) for s in ("train", "val", "test")}


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()
