"""Two gloo ranks each take half of a fixed batch, compute the GRPO loss and backward through DDP.

    python tests/rl/ddp_loss_worker.py OUT LOSS_TYPE {ranks|own}

`ranks` divides by step_normalizer(..., mean_over_ranks=all-reduce mean), as GRPOModule does;
`own` by each rank's own count (the bug the mean fixes). Writes OUT/grad.pt: DDP's averaged
gradient of the per-token log-probs of the whole batch [N, C] (rank 0).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lit_verbrec.rl.losses import grpo_loss, step_normalizer

N, C, MAX_LEN = 8, 6, 7
# Rank 0 holds long completions, rank 1 short ones: unequal token counts per rank.
LENGTHS = torch.tensor([6, 6, 5, 6, 1, 2, 1, 1])


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"logprobs": torch.randn(N, C, generator=g) * 0.3 - 1,
            "old": torch.randn(N, C, generator=g) * 0.3 - 1,
            "advantages": torch.randn(N, generator=g),
            "mask": torch.arange(C)[None] < LENGTHS[:, None]}


class PerTokenLogprobs(torch.nn.Module):
    """Stands in for the policy: its parameters are the log-probs themselves."""

    def __init__(self, logprobs: torch.Tensor):
        super().__init__()
        self.logprobs = torch.nn.Parameter(logprobs.clone())

    def forward(self, rows: slice) -> torch.Tensor:
        return self.logprobs[rows]


def mean_over_ranks(value: float) -> float:
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def worker(rank: int, out: str, loss_type: str, mode: str, port: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    b = batch()
    model = torch.nn.parallel.DistributedDataParallel(PerTokenLogprobs(b["logprobs"]))
    rows = slice(0, N // 2) if rank == 0 else slice(N // 2, N)
    mask = b["mask"][rows]
    reduce = mean_over_ranks if mode == "ranks" else float
    normalizer = step_normalizer(loss_type, mask, MAX_LEN, reduce)
    loss = grpo_loss(model(rows), b["old"][rows], b["advantages"][rows], mask, loss_type=loss_type,
                     max_completion_length=MAX_LEN, normalizer=normalizer)["loss"]
    loss.backward()                                   # DDP all-reduces (averages) the gradient here
    if rank == 0:
        torch.save(model.module.logprobs.grad, Path(out) / "grad.pt")
    dist.barrier()                                    # leave together
    dist.destroy_process_group()
    # The result is written. Leave without the interpreter's teardown: about one exit in three
    # aborted there ("terminate called without an active exception", no Python frame left) in
    # torch's C++ threads, which would fail the test after its work was done.
    os._exit(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    mp.spawn(worker, args=(*sys.argv[1:4], free_port()), nprocs=2)
