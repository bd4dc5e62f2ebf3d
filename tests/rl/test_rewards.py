"""Rewards of the two stages (paper eqs. 4, 6, 7)."""

from __future__ import annotations

import pytest
import torch

from lit_verbrec.config.train_schema import RewardConfig
from lit_verbrec.rl.rewards import (
    accuracy_reward,
    length_plateau,
    reasoner_reward,
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
