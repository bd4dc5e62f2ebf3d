"""Sampling the listwise reasoner (rl/listwise.py): one forward pass per prompt, G draws from its softmax.

The completion of a sample is the chosen candidate's label token (`A`, `B`, ...), so a rollout reads
like the `choice` reasoner's (texts, `info["slots"]`) and the trainer gets `score_offsets` [N, K] and
`allowed_mask` [N, K] to recompute the same softmax. Exact: a draw is categorical over the same
scores the trainer's log-probs use, at the same temperature; greedy is the argmax.
"""

from __future__ import annotations

import torch

from lit_verbrec.rl.listwise import candidate_scores, masked_log_softmax
from lit_verbrec.rollout.hf import left_pad
from lit_verbrec.rollout.slots import slot_temperature
from lit_verbrec.rollout.types import Rollout, SamplingParams


def pad_offsets(offsets: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prompt score offsets (K_b each) -> (offsets [B, width] padded with 0, allowed [B, width] bool)."""
    table = torch.zeros(len(offsets), width, dtype=torch.long)
    allowed = torch.zeros(len(offsets), width, dtype=torch.bool)
    for b, row in enumerate(offsets):
        table[b, :len(row)] = torch.tensor(row, dtype=torch.long)
        allowed[b, :len(row)] = True
    return table, allowed


class ListwiseSampler:
    def __init__(self, model: torch.nn.Module, token_id: int, pad_id: int, label_ids: torch.Tensor,
                 labels: list[str], max_batch_prompts: int = 16) -> None:
        self.model, self.token_id, self.pad_id = model, token_id, pad_id
        self.label_ids, self.labels = label_ids, labels     # [K] token ids and texts of the candidates' labels
        self.max_batch_prompts = max_batch_prompts

    @torch.no_grad()
    def log_probs(self, prompts: list[list[int]], offsets: list[list[int]], temperature: float) -> torch.Tensor:
        """[B, K] log pi(k | prompt b) over each prompt's own candidates (-inf past them)."""
        width = len(self.label_ids)
        out = []
        for i in range(0, len(prompts), self.max_batch_prompts):
            ids, mask = left_pad(prompts[i:i + self.max_batch_prompts], self.pad_id)      # [b, P]
            table, allowed = pad_offsets(offsets[i:i + self.max_batch_prompts], width)   # [b, K]
            device = self.model.device
            scores = candidate_scores(self.model, ids.to(device), mask.to(device), table.to(device),
                                      self.token_id, temperature)
            out.append(masked_log_softmax(scores, allowed).cpu())
        return torch.cat(out) if out else torch.zeros(0, width)

    def generate(self, prompts: list[list[int]], offsets: list[list[int]], params: SamplingParams,
                 greedy: bool = False) -> Rollout:
        """G = params.n draws per prompt; rows [b*G, (b+1)*G) are prompt b's."""
        if len(prompts) != len(offsets):
            raise ValueError(f"got {len(prompts)} prompts and {len(offsets)} lists of score positions")
        n, width = params.n, len(self.label_ids)
        if any(not row or len(row) > width for row in offsets):
            raise ValueError(f"every prompt needs 1 to {width} candidates (labels), got {[len(r) for r in offsets]}")
        logp = self.log_probs(prompts, offsets, slot_temperature(params, greedy))         # [B, K]
        if greedy:
            choice = logp.argmax(-1, keepdim=True).expand(-1, n)                          # [B, G]
        else:
            generator = None if params.seed is None else torch.Generator().manual_seed(params.seed)
            choice = torch.multinomial(logp.exp(), n, replacement=True, generator=generator)   # [B, G]
        choice = choice.reshape(-1)                                                       # [N]
        prompt_ids, prompt_mask = left_pad(prompts, self.pad_id)                          # [B, P]
        table, allowed = pad_offsets(offsets, width)                                      # [B, K]
        B = len(prompts)
        return Rollout(
            prompt_ids=prompt_ids.repeat_interleave(n, dim=0),                            # [N, P]
            prompt_mask=prompt_mask.repeat_interleave(n, dim=0),                          # [N, P]
            completion_ids=self.label_ids[choice][:, None].clone(),                       # [N, 1] the label token
            completion_mask=torch.ones(B * n, 1, dtype=torch.long),                       # [N, 1]
            texts=[self.labels[k] for k in choice.tolist()],
            group=torch.arange(B).repeat_interleave(n),                                   # [N]
            loss_mask=torch.ones(B * n, 1, dtype=torch.long),
            allowed_mask=allowed.repeat_interleave(n, dim=0),                             # [N, K]
            score_offsets=table.repeat_interleave(n, dim=0),                              # [N, K]
            info={"slots": choice[:, None],                                               # [N, 1] candidate index
                  "logprobs": logp.repeat_interleave(n, dim=0).gather(-1, choice[:, None])},   # [N, 1]
        )
