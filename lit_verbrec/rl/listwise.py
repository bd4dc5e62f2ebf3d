"""The listwise reasoner's policy (`reasoner.answer=listwise`): one score per candidate, one softmax.

The reranking prompt lists K candidates, one per line. Candidate k's score is read where its line
ends: the logit of one fixed token (the end-of-turn token: "the answer could end after this line")
at the line's last token, and the policy is the softmax over the prompt's own candidates:

    s_k = <h_{pos_k}, W_head[end_of_turn]> / temperature        h: final hidden states (after the norm)
    pi(k | prompt) = softmax_k(s_k)                             over the prompt's candidates only

One forward pass over the prompt gives all K scores, so the G samples of a group cost one pass when
sampling and one when training (as in the factorised slot sampler, rollout/factorised.py), and only
K dot products are taken: no [T, V] logits. Why a score per line rather than a letter after
`Answer: `: the letter needs a two-hop lookup (history -> the matching candidate -> its label), and a
random-weight model fitted on the letter stays at chance even when supervised, where a per-line
score needs one hop (does this line match the history?) (docs/experiments.md, 2026-12-03).

Positions are stored counted from the prompt's right end (`score_offsets`: column P-1-offset of a
left-padded prompt), so cutting left-padding columns (rollout/micro_batches.py) keeps them valid.
"""

from __future__ import annotations

import torch

from lit_verbrec.rl.logprobs import decoder_and_head, group_index


def candidate_scores(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                     score_offsets: torch.Tensor, token_id: int, temperature: float = 1.0) -> torch.Tensor:
    """prompt_ids/prompt_mask [U, P] left-padded, score_offsets [U, K] -> scores [U, K] (see the module)."""
    decoder, weight = decoder_and_head(model)
    positions = (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)                     # [U, P] real tokens only
    hidden = decoder(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions,
                     use_cache=False).last_hidden_state                                # [U, P, H]
    columns = (prompt_ids.shape[1] - 1 - score_offsets).to(hidden.device)            # [U, K]
    at_lines = hidden.gather(1, columns[..., None].expand(-1, -1, hidden.shape[-1]))  # [U, K, H]
    return (at_lines @ weight[token_id].to(at_lines.dtype)).float() / temperature    # [U, K]


def masked_log_softmax(scores: torch.Tensor, allowed_mask: torch.Tensor | None) -> torch.Tensor:
    """[..., K] log-probabilities over the allowed candidates (-inf elsewhere)."""
    if allowed_mask is not None:
        scores = scores.masked_fill(~allowed_mask.to(scores.device).bool(), float("-inf"))
    return torch.log_softmax(scores, dim=-1)


def listwise_logprobs(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                      score_offsets: torch.Tensor, choices: torch.Tensor, groups: torch.Tensor, token_id: int,
                      temperature: float = 1.0, allowed_mask: torch.Tensor | None = None,
                      with_entropy: bool = False) -> dict[str, torch.Tensor]:
    """Log-prob of each row's chosen candidate: {"logprobs": [N, 1]} (+ "entropy": [N, 1]).

    prompt_ids/prompt_mask [N, P], score_offsets [N, K], choices [N] (candidate index), groups [N]
    (rows of one value share their prompt: the decoder runs once per group, and the gradients of the
    group's rows add up through the indexing), allowed_mask [N, K] (None: all K)."""
    inverse, first = group_index(groups)                                            # [N], [U]
    inverse = inverse.to(prompt_ids.device)
    first = first.to(prompt_ids.device)
    scores = candidate_scores(model, prompt_ids[first], prompt_mask[first], score_offsets[first], token_id,
                              temperature)                                           # [U, K]
    table = masked_log_softmax(scores[inverse], allowed_mask)                        # [N, K]
    out = {"logprobs": table.gather(-1, choices.to(table.device).long()[:, None])}  # [N, 1]
    if with_entropy:
        out["entropy"] = -(table.exp() * table.masked_fill(torch.isinf(table), 0.0)).sum(-1, keepdim=True)
    return out
