"""Padding-aware micro-batches of a rollout.

A rollout's tensors are padded to the longest prompt P and the longest completion C of the
whole step. A micro-batch of short rows would still run P + C positions through the model;
here each micro-batch keeps only the columns one of its rows uses, and groups of similar
length are put together so that there is little left to pad:

    1. key of a group = its longest row (prompt tokens + completion tokens)
    2. groups sorted longest first (a micro-batch too big for memory fails at once, not late),
       rows of a group kept together (they share their prompt: rl/logprobs.py encodes it once)
    3. cut into micro-batches of `size` rows; each keeps columns [prompt_from, P) of the prompt
       and [0, completion_to) of the completion

Dropping columns that are padding in every row of a micro-batch changes no log-prob: positions
are counted from the masks (left padding) and attention is causal. The plan is computed on the
host once per step (one device sync, one index copy to the device), not once per micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from lit_verbrec.rollout.types import Rollout

COMPLETION_COLUMNS = ("completion_ids", "completion_mask", "target_ids", "loss_mask", "old_logprobs", "ref_logprobs",
                      "engine_logprobs")


@dataclass(frozen=True)
class MicroBatch:
    rows: torch.Tensor        # [n] long, rows of the rollout, on its device (indexing needs no host copy)
    row_list: tuple[int, ...]  # the same rows on the host (for per-row Python lists such as texts)
    prompt_from: int          # first prompt column any of these rows uses (left padding before it)
    completion_to: int        # one past the last completion column any of these rows uses

    @property
    def size(self) -> int:
        return len(self.row_list)


def plan_micro_batches(prompt_mask: torch.Tensor, completion_mask: torch.Tensor, group: torch.Tensor,
                       size: int) -> list[MicroBatch]:
    """prompt_mask [N, P], completion_mask [N, C], group [N] -> micro-batches of at most `size` rows
    covering every row once."""
    prompt_len = prompt_mask.long().sum(1)                                        # [N]
    prompt_start = prompt_mask.long().argmax(1)                                   # [N] first prompt token (left padding)
    # one past the last used completion column; a row with no completion token keeps 1 column
    columns = torch.arange(1, completion_mask.shape[1] + 1, device=completion_mask.device)
    completion_end = (completion_mask.long() * columns).amax(1).clamp(min=1)      # [N]
    prompt_len, prompt_start, completion_end, groups = (
        t.tolist() for t in (prompt_len, prompt_start, completion_end, group.long()))

    rows_of: dict[int, list[int]] = {}
    for row, g in enumerate(groups):
        rows_of.setdefault(g, []).append(row)
    key = {g: max(prompt_len[r] + completion_end[r] for r in rows) for g, rows in rows_of.items()}
    order = [r for g in sorted(rows_of, key=lambda g: -key[g]) for r in rows_of[g]]   # stable: ties keep group order

    on_device = torch.tensor(order).to(group.device)   # one copy per step; each micro-batch is a view of it
    plan = []
    for start in range(0, len(order), size):
        rows = order[start:start + size]
        plan.append(MicroBatch(rows=on_device[start:start + size], row_list=tuple(rows),
                               prompt_from=min(prompt_start[r] for r in rows),
                               completion_to=max(completion_end[r] for r in rows)))
    return plan


def take(rollout: Rollout, part: MicroBatch) -> Rollout:
    """The micro-batch's rows of `rollout`, without the columns none of them uses."""
    def rows(name: str, columns: slice = slice(None)):
        value = getattr(rollout, name)
        return None if value is None else value[part.rows][..., columns]

    return replace(rollout, prompt_ids=rows("prompt_ids", slice(part.prompt_from, None)),              # [n, P']
                   prompt_mask=rows("prompt_mask", slice(part.prompt_from, None)),                    # [n, P']
                   **{name: rows(name, slice(0, part.completion_to)) for name in COMPLETION_COLUMNS},  # [n, C']
                   group=rows("group"), rewards=rows("rewards"), advantages=rows("advantages"),        # [n]
                   allowed_mask=rows("allowed_mask"),                                                  # [n, K]
                   score_offsets=rows("score_offsets"),     # [n, K]: counted from the right, so cutting left columns keeps them
                   texts=[rollout.texts[i] for i in part.row_list])
