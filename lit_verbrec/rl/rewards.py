"""Rewards of the two training stages (paper eqs. 4, 6 and 7), as tensor functions.

Stage 1, the Verbalizer (eq. 6):   r = alpha * r_acc + (1 - alpha) * r_len
    r_acc = 1 if the oracle Reasoner picks the target from the verbalization, else 0   (eq. 4)
          (reward.kind=rank, the paper's ranking ablation of Table 2: 1 - position / (K - 1),
           the target's 0-based position in the oracle's ranking of the K candidates)
    r_len = length_plateau(len(verbalization) / len(template), ...)                     (fig. 2)
Stage 2, the Reasoner (eq. 7):     r = +1 if its prediction is the target, else -1.

Predictions are candidate indices; -1 marks an answer that could not be parsed, which is
never correct (not even against a target of -1). Paper: "Learning to Verbalize User
Interaction Logs for LLM Recommenders" (../shared/spec/logs-to-language-paper.txt).
"""

from __future__ import annotations

import torch

from lit_verbrec.config.train_schema import RewardConfig

INVALID = -1


def accuracy_reward(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1.0 where pred == target and pred is a valid answer, else 0.0. [N] -> [N] float32."""
    return ((pred == target) & (pred != INVALID)).float()


def length_plateau(ratio: torch.Tensor, low: float = 0.3, high: float = 0.7,
                   zero_low: float = 0.0, zero_high: float = 1.0) -> torch.Tensor:
    r"""Reward 1 for a compression ratio in [low, high], falling linearly to 0 outside.

        reward
          1 |            .-----------.
            |           /             \
            |          /               \
          0 |---------'                 '----------
            +---------+--+-----------+--+----------> ratio
                      |  |           |  zero_high
                      |  low         high
                      zero_low

    Below `low` the reward falls to 0 at `zero_low` (over-compression loses information);
    above `high` it falls to 0 at `zero_high` (verbosity costs tokens); beyond both, 0.
    With zero_low == low (e.g. both 0) there is no lower ramp. [N] -> [N] float32.
    """
    ratio = ratio.float()
    if zero_low < low:
        rise = (ratio - zero_low) / (low - zero_low)               # 0 at zero_low, 1 at low
    else:
        rise = torch.where(ratio >= low, 1.0, 0.0)
    fall = (zero_high - ratio) / (zero_high - high)                # 1 at high, 0 at zero_high
    return torch.minimum(rise, fall).clamp(0.0, 1.0)


def target_position(ranking: list[int] | None, target: int, num_candidates: int) -> float:
    """0-based position of `target` in an oracle's ranking (most likely first); a candidate the ranking
    does not name sits at the mean of the unnamed positions (they tie after the named ones);
    INVALID for no ranking."""
    if ranking is None:
        return float(INVALID)
    if target in ranking:
        return float(ranking.index(target))
    return len(ranking) + (num_candidates - len(ranking) - 1) / 2


def rank_reward(position: torch.Tensor, num_candidates: torch.Tensor | int) -> torch.Tensor:
    """1 for the target ranked first, falling linearly to 0 for last; 0 where position is INVALID
    (no ranking). position [N] (from target_position), num_candidates [N] or one int -> [N] float32."""
    last = (torch.as_tensor(num_candidates, dtype=torch.float) - 1).clamp(min=1)
    score = 1.0 - position.float() / last
    return torch.where(position == INVALID, 0.0, score.clamp(0.0, 1.0))


def verbalizer_reward(correct: torch.Tensor, ratio: torch.Tensor, cfg: RewardConfig,
                      oracle_score: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Stage-1 reward (eq. 6). correct [N] (0/1 or bool, from accuracy_reward), ratio [N]
    (verbalization length / template length), oracle_score [N] the oracle term when it is not
    `correct` (rank_reward under reward.kind=rank). Returns reward, accuracy, length, each [N]."""
    accuracy = correct.float()
    term = accuracy if oracle_score is None else oracle_score.float()
    length = length_plateau(ratio, cfg.length_low, cfg.length_high, cfg.length_zero_low, cfg.length_zero_high)
    return {"reward": cfg.alpha * term + (1 - cfg.alpha) * length, "accuracy": accuracy, "length": length}


def reasoner_reward(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Stage-2 reward (eq. 7): +1 for the target, -1 otherwise (an invalid answer included)."""
    return 2.0 * accuracy_reward(pred, target) - 1.0
