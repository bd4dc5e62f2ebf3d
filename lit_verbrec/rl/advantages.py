"""Group-relative advantages: GRPO's replacement for a learned value function.

Each prompt gets G sampled completions; a completion's advantage is its reward measured
against the other completions of its group (DeepSeekMath, arXiv 2402.03300, section 4.1.2;
paper eq. 5 text: A_i = (r_i - mean(r)) / (std(r) + eps)). With rows laid out as in
lit_verbrec/rollout/types.py (N = B*G, group g = rows [g*G, (g+1)*G)):

    mean_g = mean of the G rewards of group g
    std_g  = unbiased std of the G rewards of group g   (divides by G - 1, Bessel)
    scale="group":  A_i = (r_i - mean_g) / (std_g + eps)
    scale="batch":  A_i = (r_i - mean_g) / (std_all + eps)   std_all: unbiased std of all N rewards
    scale="none":   A_i =  r_i - mean_g                       (Dr. GRPO, arXiv 2503.20783, section 3.1)

This is exactly trl 1.16 (`GRPOTrainer._generate_and_score_completions`, sum_then_normalize):
the centring is always per group, even for "batch" (only the divisor is global), the std is
the unbiased one, and eps sits outside the square root. tests/rl/test_advantages.py runs
trl's own code path on the same rewards.

Why "none" exists: dividing by std_g gives groups whose rewards barely differ (a question
that is almost always right, or almost always wrong) the same weight as informative ones
(Dr. GRPO calls it question-level difficulty bias). Why "batch": keeps the scale of the
gradient comparable across steps without that per-group inflation.

When all G rewards of a group are equal the group carries no signal (all advantages 0);
`zero_spread_fraction` counts such groups. A fraction that climbs towards 1 is the early
warning of collapse: the policy answers every sample of a prompt the same way.
"""

from __future__ import annotations

import torch

SCALES = ("group", "batch", "none")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group",
                     eps: float = 1e-4) -> dict[str, torch.Tensor]:
    """Advantages for N = B*G rewards laid out group after group.

    Returns a dict: "advantages" [N] (same dtype as float rewards), and 0-dim diagnostics
    "reward_mean", "reward_std" (mean over groups of the unbiased group std),
    "zero_spread_fraction" (share of groups whose G rewards are all equal) and
    "advantage_std" (unbiased std of the N advantages).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(f"need group_size >= 2 dividing N; got group_size={group_size}, N={rewards.numel()}")
    rewards = rewards.float() if not rewards.is_floating_point() else rewards
    grouped = rewards.view(-1, group_size)                            # [B, G]
    group_mean = grouped.mean(dim=1)                                  # [B]
    group_std = grouped.std(dim=1, unbiased=True)                     # [B]
    centred = (grouped - group_mean[:, None]).reshape(-1)             # [N]

    # One divisor per scale; "none" divides by 1 (no eps either, like trl).
    if scale == "group":
        divisor = group_std.repeat_interleave(group_size) + eps       # [N]
    elif scale == "batch":
        divisor = rewards.std(unbiased=True) + eps                    # []
    else:
        divisor = torch.ones((), dtype=rewards.dtype, device=rewards.device)
    advantages = centred / divisor                                    # [N]

    # Equal rewards: compare against the first sample exactly (isclose(std, 0) as trl logs
    # it would also count groups that differ by ~1e-8, which still get a gradient).
    zero_spread = (grouped == grouped[:, :1]).all(dim=1)              # [B]
    return {
        "advantages": advantages,
        "reward_mean": rewards.mean().detach(),
        "reward_std": group_std.mean().detach(),
        "zero_spread_fraction": zero_spread.float().mean(),
        "advantage_std": advantages.std(unbiased=True).detach(),
    }
