"""This process's rank and GPU, known before any model is built.

Lightning gives a rank its device inside `fit`. A stage builds its policy and (stage 2) its
frozen verbalizer before that, so without this every rank of a node would load onto GPU 0. The
rank is read from the launcher's environment instead, the way Lightning's cluster environments
read it:

    srun (cluster=slurm)            SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS
    torchrun / Lightning's children RANK or NODE_RANK * devices + LOCAL_RANK, WORLD_SIZE
    python tools/train.py           rank 0 (Lightning starts ranks 1.. itself inside fit)

The process group stays Lightning's to open (inside fit, on every rank at once); the colocated
vLLM engine is built lazily at the first rollout for the same reason (rollout/vllm.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from lit_verbrec.config.schema import Config


@dataclass(frozen=True)
class RankInfo:
    global_rank: int
    local_rank: int
    """The GPU index on this node."""
    world_size: int


def rank_info(cfg: Config, environ: dict[str, str] | None = None) -> RankInfo:
    env = os.environ if environ is None else environ
    world = cfg.train.devices * cfg.train.num_nodes
    # Lightning's SLURMEnvironment.detect(): srun's variables, unless the job is an interactive shell
    if "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return RankInfo(int(env.get("SLURM_PROCID", 0)), int(env.get("SLURM_LOCALID", 0)), int(env["SLURM_NTASKS"]))
    if "LOCAL_RANK" in env:
        local = int(env["LOCAL_RANK"])
        rank = int(env["RANK"]) if "RANK" in env else int(env.get("NODE_RANK", 0)) * cfg.train.devices + local
        return RankInfo(rank, local, int(env.get("WORLD_SIZE", world)))
    return RankInfo(0, 0, world)


def setup_rank(cfg: Config) -> RankInfo:
    """Pin this rank's GPU (`torch.cuda.set_device`) so that models load onto it; returns the rank."""
    info = rank_info(cfg)
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info
