"""Every pass of the policy in one precision and one dropout state: under bf16-mixed with mu > 1
the first pass's ratio is exactly 1, and LoRA dropout does not make the trainer score another policy."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_toy import TOY_GRPO  # noqa: E402
from toy import ToyModule, ToyPrompts, toy_tokenizer  # noqa: E402

import lit_verbrec.training.grpo as grpo_module  # noqa: E402
from lit_verbrec.config.schema import LoraConfig, SizeConfig  # noqa: E402
from lit_verbrec.config.train_schema import GRPOConfig  # noqa: E402
from lit_verbrec.models.loading import load_policy  # noqa: E402
from lit_verbrec.rollout.callback import RolloutCallback  # noqa: E402
from lit_verbrec.rollout.hf import HFEngine  # noqa: E402


def first_pass(monkeypatch, precision: str, disable_dropout: bool = True) -> dict:
    """grpo_loss's metrics on the first micro-batch of the first of mu = 2 passes, with a LoRA
    adapter that changes the model (B != 0) and LoRA dropout 0.3."""
    pl.seed_everything(0)
    tokenizer = toy_tokenizer()
    policy = load_policy(SizeConfig(lora=LoraConfig(rank=8, alpha=16, dropout=0.3)), tokenizer,
                         gradient_checkpointing=False, seed=0)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    grpo = GRPOConfig(**{**TOY_GRPO, "max_steps": 1, "mu": 2, "beta": 0.0, "disable_dropout": disable_dropout})
    module = ToyModule(policy, tokenizer, HFEngine(policy, tokenizer), grpo)
    seen = []
    loss = grpo_module.grpo_loss
    monkeypatch.setattr(grpo_module, "grpo_loss", lambda *a, **k: seen.append(loss(*a, **k)) or seen[-1])
    trainer = pl.Trainer(accelerator="cpu", precision=precision, max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[RolloutCallback()])
    trainer.fit(module, DataLoader(ToyPrompts(64), batch_size=grpo.prompts_per_step, collate_fn=list))
    return {k: float(v) for k, v in seen[0].items()}


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_the_first_pass_ratio_is_exactly_one(monkeypatch, precision):
    metrics = first_pass(monkeypatch, precision)
    assert metrics["ratio_mean"] == 1.0 and metrics["approx_kl"] == 0.0 and metrics["clip_fraction"] == 0.0


def test_with_dropout_kept_the_trainer_scores_a_perturbed_policy(monkeypatch):
    """What disable_dropout prevents (grpo.disable_dropout=false keeps LoRA dropout as a regulariser)."""
    assert first_pass(monkeypatch, "32-true", disable_dropout=False)["approx_kl"] > 1e-6


def test_disable_dropout_zeroes_every_dropout_layer():
    policy = load_policy(SizeConfig(lora=LoraConfig(rank=8, alpha=16, dropout=0.05)), toy_tokenizer(),
                         gradient_checkpointing=False, seed=0)
    dropouts = [m for m in policy.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and any(m.p == 0.05 for m in dropouts)
    grpo_module.disable_dropout(policy)
    assert all(m.p == 0.0 for m in dropouts)
