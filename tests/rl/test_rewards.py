"""Rewards of the two stages (paper eqs. 4, 6, 7)."""

from __future__ import annotations

import pytest
import torch

from lit_verbrec.config.train_schema import RewardConfig
from lit_verbrec.rl.rewards import (
    accuracy_reward,
    length_plateau,
    rank_reward,
    reasoner_reward,
    target_position,
    verbalizer_reward,
)


def test_accuracy_reward_never_credits_an_invalid_answer():
    pred = torch.tensor([3, 2, -1, -1, 0])
    target = torch.tensor([3, 1, 4, -1, 0])
    assert accuracy_reward(pred, target).tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(("ratio", "expected"), [
    (-0.5, 0.0),             # nonsense ratios stay at 0
    (0.0, 0.0),              # zero_low
    (0.15, 0.5),             # half way up the lower ramp
    (0.3, 1.0),              # low: the plateau starts
    (0.5, 1.0),
    (0.7, 1.0),              # high: the plateau ends
    (0.85, 0.5),             # half way down the upper ramp
    (1.0, 0.0),              # zero_high
    (1.7, 0.0),              # beyond: 0, not negative
])
def test_length_plateau_defaults(ratio, expected):
    assert length_plateau(torch.tensor([ratio])).item() == pytest.approx(expected, abs=1e-6)


def test_length_plateau_custom_breakpoints_and_no_lower_ramp():
    ratio = torch.tensor([0.1, 0.2, 0.3, 0.6, 0.9, 1.45, 2.0, 2.5])
    got = length_plateau(ratio, low=0.4, high=0.9, zero_low=0.2, zero_high=2.0)
    torch.testing.assert_close(got, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0, 0.5, 0.0, 0.0]))
    flat = length_plateau(torch.tensor([0.0, 0.05, 0.5]), low=0.0, high=0.7, zero_low=0.0)
    torch.testing.assert_close(flat, torch.tensor([1.0, 1.0, 1.0]))


def test_verbalizer_reward_mixes_with_alpha():
    cfg = RewardConfig(alpha=0.9)
    out = verbalizer_reward(torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([0.5, 0.85, 0.5, 2.0]), cfg)
    torch.testing.assert_close(out["length"], torch.tensor([1.0, 0.5, 1.0, 0.0]))
    torch.testing.assert_close(out["accuracy"], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(out["reward"], torch.tensor([1.0, 0.95, 0.1, 0.0]))
    pure = verbalizer_reward(torch.tensor([True, False]), torch.tensor([0.5, 0.5]), RewardConfig(alpha=1.0))
    torch.testing.assert_close(pure["reward"], torch.tensor([1.0, 0.0]))


def test_reasoner_reward_is_plus_minus_one():
    pred = torch.tensor([2, 0, -1, 5])
    target = torch.tensor([2, 1, 2, 5])
    assert reasoner_reward(pred, target).tolist() == [1.0, -1.0, -1.0, 1.0]


def test_rank_reward_falls_linearly_from_first_to_last_and_is_zero_without_a_ranking():
    position = torch.tensor([0.0, 1.0, 4.5, 9.0, -1.0])
    assert rank_reward(position, 10).tolist() == pytest.approx([1.0, 8 / 9, 0.5, 0.0, 0.0])
    assert rank_reward(torch.tensor([1.0, 1.0]), torch.tensor([2, 3])).tolist() == pytest.approx([0.0, 0.5])


def test_target_position_in_full_short_and_missing_rankings():
    assert target_position([2, 0, 1], 0, 3) == 1.0
    assert target_position([5, 7], 3, 10) == 2 + 7 / 2      # unnamed: positions 2..9 tie, mean 5.5
    assert target_position(None, 3, 10) == -1.0
    assert target_position([], 0, 1) == 0.0


def test_verbalizer_reward_takes_the_rank_term_in_place_of_correctness():
    cfg = RewardConfig(alpha=0.9, kind="rank")
    correct, ratio = torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.5])       # both on the length plateau
    parts = verbalizer_reward(correct, ratio, cfg, oracle_score=torch.tensor([0.5, 1.0]))
    assert parts["reward"].tolist() == pytest.approx([0.9 * 0.5 + 0.1, 1.0])
    assert parts["accuracy"].tolist() == [0.0, 1.0]                          # still the first place


def test_unknown_reward_kind_is_refused_by_name():
    with pytest.raises(ValueError, match="reward.kind: got 'ndcg', expected one of top1, rank"):
        RewardConfig(kind="ndcg")
