"""Prompt batches in an order that a resumed run continues exactly where it stopped.

A DataLoader restarts its epoch when Lightning resumes mid-epoch, so a run requeued at step
1,234 would see the first batches of the epoch again. Here the batch of every step is a pure
function of (seed, epoch, position, rank):

    steps_per_epoch = N // (B * world)                  (the tail of an epoch is dropped)
    epoch, offset   = divmod(batches_done, steps_per_epoch)
    order           = permutation(N, seed + epoch)
    batch(rank)     = order[(offset * world + rank) * B : ... + B]

`batches_done` is read when an epoch's iterator starts, from the module (GRPOModule keeps it
in its checkpoints), so a resumed run starts at the next unseen batch. Each rank gets its
own slice of every global batch (no DistributedSampler: this is not a DataLoader).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np


class ResumableBatches:
    def __init__(self, examples: Sequence, batch_size: int, seed: int, position: Callable[[], int],
                 shard: Callable[[], tuple[int, int]] = lambda: (0, 1)) -> None:
        """`position()`: batches already consumed; `shard()`: (this rank, number of ranks)."""
        self.examples = examples
        self.batch_size = batch_size
        self.seed = seed
        self.position = position
        self.shard = shard
        self._order: tuple[int, np.ndarray] | None = None   # (epoch, its permutation): drawn once per epoch

    def __len__(self) -> int:
        """Steps per epoch."""
        _, world = self.shard()
        steps = len(self.examples) // (self.batch_size * world)
        if steps == 0:
            raise ValueError(f"{len(self.examples)} training examples cannot fill one step of {self.batch_size} "
                             f"prompts on each of {world} ranks; lower the stage's grpo.prompts_per_step")
        return steps

    def order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.examples)))
        return self._order[1]

    def batch(self, step: int) -> list:
        """This rank's batch at global step `step` (counting every batch since the start of training)."""
        rank, world = self.shard()
        epoch, offset = divmod(step, len(self))
        start = (offset * world + rank) * self.batch_size
        return [self.examples[i] for i in self.order(epoch)[start:start + self.batch_size]]

    def __iter__(self) -> Iterator[list]:
        start = self.position()
        end = (start // len(self) + 1) * len(self)   # the rest of the current epoch
        return (self.batch(step) for step in range(start, end))

    # Lightning stores these in the checkpoint (and otherwise warns that the loader is not
    # resumable); the position itself is the module's, restored with its state.
    def state_dict(self) -> dict:
        return {"seed": self.seed, "batch_size": self.batch_size, "examples": len(self.examples)}

    def load_state_dict(self, state: dict) -> None:
        now = self.state_dict()
        if state != now:
            warnings.warn(f"resuming with a different batch order ({state} when saved, {now} now): the run continues "
                          "at the same batch count, but not with the batches the interrupted run would have seen",
                          stacklevel=2)
