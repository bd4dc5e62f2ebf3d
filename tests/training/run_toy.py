"""Train the toy task with GRPOModule + RolloutCallback; used in-process and as a DDP script.

    python tests/training/run_toy.py OUT [--ddp] [--flip] [--steps N]

Writes OUT/rank<r>.pt (the LoRA weights of each rank) and OUT/metrics.json (rank 0).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from toy import ToyModule, ToyPrompts, p_correct, toy_tokenizer  # noqa: E402

from lit_verbrec.config.schema import LoraConfig, SizeConfig  # noqa: E402
from lit_verbrec.config.train_schema import GRPOConfig  # noqa: E402
from lit_verbrec.models.loading import load_policy  # noqa: E402
from lit_verbrec.rollout.callback import RolloutCallback  # noqa: E402
from lit_verbrec.rollout.hf import HFEngine  # noqa: E402

TOY_GRPO = dict(group_size=8, prompts_per_step=4, micro_batch_size=16, max_new_tokens=2, lr=5e-3, beta=0.0, entropy_coef=0.02,
                temperature=1.0, logprob_chunk=64, gradient_checkpointing=False)


def train(out: Path, steps: int, reward_sign: float = 1.0, ddp: bool = False, seed: int = 0, **grpo_overrides) -> dict:
    pl.seed_everything(seed, workers=True)
    tokenizer = toy_tokenizer()
    size = SizeConfig(lora=LoraConfig(rank=8, alpha=16, dropout=0.0))
    grpo = GRPOConfig(**{**TOY_GRPO, "max_steps": steps, **grpo_overrides})
    policy = load_policy(size, tokenizer, gradient_checkpointing=False, seed=seed)
    module = ToyModule(policy, tokenizer, HFEngine(policy, tokenizer), grpo, reward_sign=reward_sign)
    start = p_correct(policy, tokenizer)
    loader = DataLoader(ToyPrompts(10_000), batch_size=grpo.prompts_per_step, shuffle=True, collate_fn=list)
    trainer = pl.Trainer(accelerator="cpu", devices=2 if ddp else 1, strategy="ddp" if ddp else "auto",
                         max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[RolloutCallback()])
    rewards = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            rewards.append(float(module.rollout_metrics["reward/mean"]))

    trainer.callbacks.append(Record())
    trainer.fit(module, loader)
    out.mkdir(parents=True, exist_ok=True)
    lora = {k: v.detach().clone() for k, v in policy.named_parameters() if "lora_" in k}
    torch.save(lora, out / f"rank{trainer.global_rank}.pt")
    metrics = {"p_correct_start": start, "p_correct_end": p_correct(policy, tokenizer), "rewards": rewards,
               "global_step": trainer.global_step}
    if trainer.global_rank == 0:
        (out / "metrics.json").write_text(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    args = sys.argv[1:]
    steps = int(args[args.index("--steps") + 1]) if "--steps" in args else 40
    train(Path(args[0]), steps, reward_sign=-1.0 if "--flip" in args else 1.0, ddp="--ddp" in args)
