"""What a rollout engine returns and what the trainer consumes.

Layout: B prompts, G completions each, so N = B*G rows, grouped contiguously —
rows [g*G, (g+1)*G) are the G samples of prompt g (the layout advantages assume).
P = longest prompt (left-padded), C = longest completion (right-padded).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch


@dataclass(frozen=True)
class SamplingParams:
    n: int
    """G: completions per prompt."""
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0: off."""
    stop: tuple[str, ...] = ()
    """Strings that end a completion (the stop string is kept, what follows is masked)."""
    seed: int | None = None


def greedy(params: SamplingParams) -> SamplingParams:
    """The same request decoded greedily: top-1 at a vanishing temperature (both engines sample)."""
    return replace(params, temperature=1e-5, top_p=1.0, top_k=1)


@dataclass
class Rollout:
    prompt_ids: torch.Tensor        # [N, P] long, left-padded with the pad id
    prompt_mask: torch.Tensor       # [N, P] long, 1 on prompt tokens
    completion_ids: torch.Tensor    # [N, C] long, right-padded with the pad id
    completion_mask: torch.Tensor   # [N, C] long, 1 on generated tokens up to and including EOS/stop
    texts: list[str]                # [N] decoded completions (special tokens skipped, cut at a stop string)
    group: torch.Tensor             # [N] long, index of the prompt in the batch (0..B-1)
    target_ids: torch.Tensor | None = None  # [N, C] long, the tokens scored where they differ from those fed
    #                                           (factorised slot sampling: all G rows of a group are fed the same
    #                                           placeholders, so the decoder runs once per group; rollout/factorised.py)
    engine_logprobs: torch.Tensor | None = None  # [N, C] float, the engine's log-prob of each sampled token at the
    #                                              sampling temperature (vLLM; None for hf); 0 past a row's end
    # Filled in by the RolloutCallback / module after scoring:
    loss_mask: torch.Tensor | None = None      # [N, C] tokens that carry the loss (default: completion_mask)
    rewards: torch.Tensor | None = None        # [N] float
    advantages: torch.Tensor | None = None     # [N] float
    old_logprobs: torch.Tensor | None = None   # [N, C] float, from the trainer's model before the update
    ref_logprobs: torch.Tensor | None = None   # [N, C] float, adapter disabled; None when beta = 0
    allowed_mask: torch.Tensor | None = None   # [N, K] bool, the allowed tokens each row chose among (a subset
    #                                            of the module's allowed_token_ids); None: all K
    score_offsets: torch.Tensor | None = None  # [N, K] long, listwise reasoner: candidate k's score is read at
    #                                            prompt column P-1-offset (rl/listwise.py); None otherwise
    info: dict = field(default_factory=dict)   # per-rollout extras (reward parts, engine timings)

    def to(self, device: torch.device | str) -> Rollout:
        """The same rollout with every tensor field on `device` (engines build rollouts on the CPU;
        the trainer's passes and the rank collectives need them on the model's device)."""
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        return replace(self, **moved)

    @property
    def num_sequences(self) -> int:
        return self.completion_ids.shape[0]
