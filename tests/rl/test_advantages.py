"""Group-relative advantages: values by hand, and trl 1.16's own code path on the same rewards."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

from lit_verbrec.rl.advantages import group_advantages

# Three groups of G = 4: a split group, a collapsed group (all equal), a graded group.
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.2, 0.9, 0.0])
G = 4


def test_group_scale_by_hand():
    out = group_advantages(REWARDS, G, scale="group")
    std = math.sqrt(1 / 3)      # unbiased std of [1, 0, 0, 1]: sum sq dev 1, / (G - 1) = 3
    expected0 = [0.5 / (std + 1e-4), -0.5 / (std + 1e-4)] * 2
    torch.testing.assert_close(out["advantages"][[0, 1, 3, 2]], torch.tensor(expected0))
    assert out["advantages"][4:8].abs().max().item() == 0.0          # a collapsed group carries no signal
    assert out["advantages"].shape == (12,)
    assert out["reward_mean"].item() == pytest.approx(REWARDS.mean().item())
    third = REWARDS[8:].std(unbiased=True).item()
    assert out["reward_std"].item() == pytest.approx((std + 0 + third) / 3, rel=1e-6)
    assert out["zero_spread_fraction"].item() == pytest.approx(1 / 3)
    assert out["advantage_std"].item() == pytest.approx(out["advantages"].std().item())


def test_batch_scale_centres_per_group_and_divides_by_the_batch_std():
    out = group_advantages(REWARDS, G, scale="batch")
    centred = (REWARDS.view(3, G) - REWARDS.view(3, G).mean(1, keepdim=True)).reshape(-1)
    torch.testing.assert_close(out["advantages"], centred / (REWARDS.std(unbiased=True) + 1e-4))


def test_none_scale_only_centres():
    out = group_advantages(REWARDS, G, scale="none")
    torch.testing.assert_close(out["advantages"][:4], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    assert out["advantages"].view(3, G).sum(1).abs().max().item() < 1e-6


def test_eps_and_bad_layouts():
    out = group_advantages(torch.tensor([1.0, 0.0]), 2, eps=0.5)
    assert out["advantages"][0].item() == pytest.approx(0.5 / (math.sqrt(0.5) + 0.5))
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(REWARDS, 5)
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(REWARDS, 1)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(REWARDS, G, scale="rank")


@pytest.fixture(scope="module")
def trl_trainer(tmp_path_factory):
    """A real trl GRPOTrainer whose reward function returns REWARDS; generation runs for real."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)
    # The real vocabulary size: trl tokenizes the prompts and pads completions with the real pad id.
    config = Qwen3Config(vocab_size=151936, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, intermediate_size=128)
    path = tmp_path_factory.mktemp("tiny-qwen3")
    Qwen3ForCausalLM(config).save_pretrained(path)
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("trl")), use_cpu=True, use_vllm=False,
                      report_to="none", bf16=False, per_device_train_batch_size=12, num_generations=G,
                      max_completion_length=4, beta=0.0, multi_objective_aggregation="sum_then_normalize")
    trainer = GRPOTrainer(model=str(path), reward_funcs=lambda prompts, **kw: REWARDS.tolist(), args=args,
                          train_dataset=Dataset.from_dict({"prompt": ["a", "b", "c"]}),
                          processing_class=AutoTokenizer.from_pretrained(Path(__file__).resolve().parents[3] / "shared" / "qwen3-tokenizer"))
    trainer.model.train()
    return trainer


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_matches_trl_generate_and_score(trl_trainer, scale):
    trl_trainer.scale_rewards = scale      # read at call time by _generate_and_score_completions
    inputs = [{"prompt": prompt} for prompt in ("a", "b", "c") for _ in range(G)]   # groups contiguous
    theirs = trl_trainer._generate_and_score_completions(inputs)["advantages"]
    ours = group_advantages(REWARDS, G, scale=scale)["advantages"]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert trl_trainer._metrics["train"]["frac_reward_zero_std"][-1] == pytest.approx(1 / 3 if scale != "batch" else 0)
