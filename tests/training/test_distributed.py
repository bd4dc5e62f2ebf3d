"""Each rank knows its rank and GPU before any model is built (training/distributed.py), and the
vLLM engine's base folder is written once when ranks start together."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lit_verbrec.config.compose import compose
from lit_verbrec.training.distributed import RankInfo, rank_info

TWO_NODES_OF_4 = ["train.devices=4", "train.num_nodes=2"]


@pytest.mark.parametrize("env, expected", [
    ({}, RankInfo(0, 0, 8)),                                                          # python tools/train.py
    ({"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8", "SLURM_JOB_NAME": "stage1"},
     RankInfo(5, 1, 8)),                                                              # srun
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "interactive", "LOCAL_RANK": "3", "NODE_RANK": "1"},
     RankInfo(7, 3, 8)),                                                              # salloc + Lightning's children
    ({"LOCAL_RANK": "2", "RANK": "6", "WORLD_SIZE": "8"}, RankInfo(6, 2, 8)),         # torchrun
])
def test_rank_from_the_launchers_environment(env, expected):
    assert rank_info(compose(TWO_NODES_OF_4), env) == expected


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BASE_WORKER = """
import json, sys, torch
from pathlib import Path
from lit_verbrec.config.compose import compose
from lit_verbrec.config.schema import LoraConfig, SizeConfig
from lit_verbrec.models.loading import load_policy
from lit_verbrec.models.tokenizers import build_tiny_tokenizer
from lit_verbrec.training.distributed import setup_rank
from lit_verbrec.training.inference import shared_vllm_base
info = setup_rank(compose(["train.devices=2"]))   # no process group: rank 0 may write before the others exist
tokenizer = build_tiny_tokenizer([f"word {i} and more words" for i in range(40)], vocab_size=300)
policy = load_policy(SizeConfig(lora=LoraConfig(rank=8, alpha=16)), tokenizer, gradient_checkpointing=False)
folder = Path(sys.argv[1])
wrote = shared_vllm_base(policy, folder, tokenizer, info, poll_s=0.1)
print(json.dumps({"rank": info.global_rank, "wrote": wrote, "files": sorted(p.name for p in folder.iterdir())}))
"""


def test_vllm_base_is_written_once_by_rank_0_when_two_ranks_start_together(tmp_path):
    folder = tmp_path / "vllm-base"
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-c", BASE_WORKER, str(folder)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
                              env={**os.environ, "LOCAL_RANK": str(r), "RANK": str(r), "WORLD_SIZE": "2",
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"})
             for r in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    results = sorted((json.loads(out.strip().splitlines()[-1]) for out, _ in outs), key=lambda r: r["rank"])
    assert [r["wrote"] for r in results] == [True, False]
    assert results[0]["files"] == results[1]["files"] and "model.safetensors" in results[1]["files"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vllm-base"]      # no temporary folder left behind
