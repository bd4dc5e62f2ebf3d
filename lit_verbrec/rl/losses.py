"""The GRPO loss: clipped importance-weighted advantages, a k3 KL to the reference, one aggregation.

Per completion token t of sequence i (A_i from lit_verbrec/rl/advantages.py):

    rho_it   = exp(logp_it - logp_old_it)                         importance ratio
    obj_it   = min(rho_it * A_i, clip(rho_it, 1 - eps_low, 1 + eps_high) * A_i)
    kl_it    = exp(ref_it - logp_it) - (ref_it - logp_it) - 1      k3 estimator of KL(pi || ref), >= 0
               (* rho_it when kl_bias_correction: unbiased gradient off-policy, DeepSeek-V3.2)
    loss_it  = -obj_it + beta * kl_it - entropy_coef * H_it

and the scalar loss is one aggregation of loss_it over the masked tokens (AGGREGATIONS, |o_i| =
tokens of sequence i, L_max = max_completion_length):

    grpo     L = (1/N) * sum_i (1/|o_i|) * sum_t loss_it
    dr_grpo  L = 1/(N * L_max) * sum_i sum_t loss_it
    dapo     L = 1/(sum_i |o_i|) * sum_i sum_t loss_it

Paper eqs. 5 and 8 are loss_type="grpo" with eps_low = eps_high. Sources: DeepSeekMath GRPO,
arXiv 2402.03300, eq. 3 and the k3 estimator (eq. 4); Dr. GRPO, arXiv 2503.20783; DAPO
(clip-higher eps_high > eps_low, token-level loss), arXiv 2503.14476; trl 1.16
`GRPOTrainer._compute_loss`, which tests/rl/test_losses.py matches to 1e-6.

Why mu = 1 still trains: rho = 1 in value, but d rho / d theta = d logp / d theta, so the
gradient is the policy gradient A_i * grad logp_it; clipping only bites from the second pass.

The entropy bonus goes through the same aggregation as the policy term (trl instead adds a
separate token mean), so that the micro-batch `normalizer` property below holds for it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


def _masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    # torch.where, not x * mask: a masked position may hold inf/nan (e.g. exp of a garbage ratio)
    masked = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return masked.sum() if dim is None else masked.sum(dim)


@dataclass(frozen=True)
class Aggregation:
    """loss = numerator(per_token, mask) / count(mask, max_completion_length).

    Both parts are sums over sequences, so a step split into micro-batches gets exactly the
    full-batch loss when each micro-batch divides by the count of the WHOLE step
    (`step_normalizer`) and the micro-batch losses are summed.
    """

    numerator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # (per_token [N, C], mask [N, C]) -> []
    count: Callable[[torch.Tensor, int | None], float | torch.Tensor]  # (mask [N, C], max_len) -> count
    doc: str


def _sequence_means(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (_masked_sum(per_token, mask, dim=-1) / mask.sum(-1).clamp(min=1)).sum()   # sum of [N] means


def _constant(mask: torch.Tensor, max_completion_length: int | None) -> float:
    if max_completion_length is None:
        raise ValueError("loss_type='dr_grpo' needs max_completion_length (or normalizer)")
    return float(mask.shape[0] * max_completion_length)


AGGREGATIONS: dict[str, Aggregation] = {
    "grpo": Aggregation(
        numerator=_sequence_means,
        count=lambda mask, max_len: float(mask.shape[0]),
        doc="Paper eq. 5: mean over each sequence's tokens, then mean over the N sequences. "
            "Length bias: a token of a short completion weighs 1/|short|, of a long one 1/|long|, "
            "so for A > 0 short right answers are favoured and for A < 0 long wrong answers are "
            "punished less per token (Dr. GRPO: responses drift longer). Normaliser: sequences."),
    "dr_grpo": Aggregation(
        numerator=_masked_sum,
        count=_constant,
        doc="Dr. GRPO: sum over all tokens / (N * max_completion_length), a constant. No length "
            "bias: every token weighs the same whatever its sequence's length or the batch's token "
            "count; the price is a loss scale that shrinks when completions are short."),
    "dapo": Aggregation(
        numerator=_masked_sum,
        count=lambda mask, max_len: mask.sum().clamp(min=1),   # a tensor: no device sync
        doc="DAPO token-level loss: sum over all tokens / tokens in the batch. Long sequences are "
            "not down-weighted; a token's weight still depends on how many tokens the batch holds "
            "(a mild coupling between the samples of a batch). Normaliser: tokens."),
}


def step_normalizer(loss_type: str, mask: torch.Tensor, max_completion_length: int | None = None,
                    mean_over_ranks: Callable[[float], float] = float) -> float:
    """The count to pass as `normalizer` to every micro-batch of a step: computed on the whole
    step's mask [N_step, C] (sequences for grpo, N_step * max_len for dr_grpo, tokens for dapo).

    Under DDP pass `mean_over_ranks` (an all-reduce mean). DDP averages gradients over the R
    ranks, so dividing each rank's sum by the ranks' MEAN count gives
        (1/R) * sum_r S_r / ((1/R) * sum_r n_r) = sum_r S_r / sum_r n_r,
    the aggregation over the whole all-rank batch. With each rank's own count instead, DAPO
    would weigh a token of a rank holding few tokens more than one of a rank holding many.
    """
    if loss_type not in AGGREGATIONS:
        raise ValueError(f"loss_type must be one of {sorted(AGGREGATIONS)}, got {loss_type!r}")
    return float(mean_over_ranks(float(AGGREGATIONS[loss_type].count(mask.bool(), max_completion_length))))


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, *, loss_type: str = "grpo", epsilon: float = 0.2,
              epsilon_high: float = 0.0, beta: float = 0.0, ref_logprobs: torch.Tensor | None = None,
              kl_bias_correction: bool = False, entropy: torch.Tensor | None = None,
              entropy_coef: float = 0.0, max_completion_length: int | None = None,
              normalizer: float | None = None) -> dict[str, torch.Tensor]:
    """GRPO loss over N sequences of C completion positions.

    logprobs [N, C] (with grad), old_logprobs [N, C], advantages [N], mask [N, C] (1 on tokens
    that carry the loss), ref_logprobs [N, C] (needed when beta > 0), entropy [N, C] (needed
    when entropy_coef > 0). epsilon_high = 0 means epsilon. `normalizer`: the whole step's
    count (see AGGREGATIONS) when the step is split into micro-batches, so that micro-batch
    losses sum to the full-batch loss; None uses this batch's own count (as trl does).

    Returns "loss" (0-dim, with grad) and detached 0-dim metrics: policy_loss (the -obj term
    alone, aggregated), kl (plain k3, mean over masked tokens; 0 when beta == 0), entropy
    (if given), clip_low_fraction, clip_high_fraction, clip_fraction, approx_kl, ratio_mean.
    """
    if loss_type not in AGGREGATIONS:
        raise ValueError(f"loss_type must be one of {sorted(AGGREGATIONS)}, got {loss_type!r}")
    agg = AGGREGATIONS[loss_type]
    mask = mask.bool()                                                        # [N, C]
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    adv = advantages.to(logprobs.dtype)
    adv = adv[:, None] if adv.dim() == 1 else adv                             # [N, 1]
    eps_low, eps_high = epsilon, (epsilon_high or epsilon)

    log_ratio = torch.where(mask, logprobs - old_logprobs, zero)              # [N, C]
    ratio = torch.exp(log_ratio)                                              # [N, C]
    objective = torch.min(ratio * adv, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv)
    per_token = -objective                                                    # [N, C]

    kl = None
    if beta != 0.0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs ref_logprobs")
        delta = torch.where(mask, ref_logprobs - logprobs, zero)              # [N, C]
        kl = torch.exp(delta) - delta - 1                                     # [N, C] k3
        per_token = per_token + beta * (kl * ratio if kl_bias_correction else kl)
    if entropy_coef != 0.0:
        if entropy is None:
            raise ValueError("entropy_coef > 0 needs entropy")
        per_token = per_token - entropy_coef * torch.where(mask, entropy, zero)

    count = agg.count(mask, max_completion_length) if normalizer is None else normalizer
    loss = agg.numerator(per_token, mask) / count

    with torch.no_grad():
        tokens = mask.sum().clamp(min=1)

        def token_avg(x: torch.Tensor) -> torch.Tensor:
            return _masked_sum(x.to(logprobs.dtype), mask) / tokens

        low = (ratio < 1 - eps_low) & (adv < 0)          # clipped from below: pushing down stops
        high = (ratio > 1 + eps_high) & (adv > 0)        # clipped from above: pushing up stops
        metrics = {
            "loss": loss,
            "policy_loss": agg.numerator(-objective, mask) / count,
            "kl": token_avg(kl) if kl is not None else zero,
            "clip_low_fraction": token_avg(low),
            "clip_high_fraction": token_avg(high),
            "clip_fraction": token_avg(low | high),
            # cleanrl's low-variance estimator of KL(old || new): (rho - 1) - log rho >= 0
            "approx_kl": token_avg((ratio - 1) - log_ratio),
            "ratio_mean": token_avg(ratio),
        }
        if entropy is not None:
            metrics["entropy"] = token_avg(entropy)
    return metrics
