"""This process's rank, GPU and process group, set up before any model or engine is built.

Lightning gives a rank its device and process group inside `fit`. A stage builds its policy,
its rollout engine and (stage 2) its frozen verbalizer before that, so without this every rank
of a node would load onto GPU 0, sample with the same seed, and a colocated vLLM engine could
not join the ranks' process group (`external_launcher` needs it). The rank is read from the
launcher's environment instead, the way Lightning's own cluster environments read it:

    srun (cluster=slurm)            SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS
    torchrun / Lightning's children RANK or NODE_RANK * devices + LOCAL_RANK, WORLD_SIZE
    python tools/train.py           rank 0 of 1 (Lightning starts ranks 1.. itself inside fit)

`setup_rank` then pins the CUDA device and, when every rank already exists (srun, torchrun),
opens the process group early with Lightning's own rendezvous values; Lightning's DDP strategy
finds it initialized and uses it (`_init_dist_connection` returns early).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment

from lit_verbrec.config.schema import Config


@dataclass(frozen=True)
class RankInfo:
    global_rank: int
    local_rank: int
    """The GPU index on this node."""
    world_size: int
    all_launched: bool
    """Every rank is running now (srun, torchrun): a process group can be opened before fit."""


def rank_info(cfg: Config, environ: dict[str, str] | None = None) -> RankInfo:
    env = os.environ if environ is None else environ
    world = cfg.train.devices * cfg.train.num_nodes
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return RankInfo(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(env["SLURM_NTASKS"]), True)
    if "LOCAL_RANK" in env:
        local = int(env["LOCAL_RANK"])
        rank = int(env["RANK"]) if "RANK" in env else int(env.get("NODE_RANK", 0)) * cfg.train.devices + local
        return RankInfo(rank, local, int(env.get("WORLD_SIZE", world)), True)
    return RankInfo(0, 0, world, world == 1)


def setup_rank(cfg: Config) -> RankInfo:
    """Pin this rank's GPU and, where all ranks exist, open the process group; returns the rank."""
    info = rank_info(cfg)
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    if info.world_size > 1 and info.all_launched and not torch.distributed.is_initialized():
        env = SLURMEnvironment() if SLURMEnvironment.detect() else None
        os.environ.setdefault("MASTER_ADDR", env.main_address if env else "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(env.main_port if env else 29500))
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                                             rank=info.global_rank, world_size=info.world_size,
                                             timeout=timedelta(minutes=30))
    return info


def rank_seed(cfg: Config) -> int:
    """Each rank samples with its own seed (the same prompts would otherwise get the same samples)."""
    return cfg.run.seed + rank_info(cfg).global_rank
