"""The toy GRPO run the preemption tests stop and resume (tests/training/toy.py's task), and the
fixture that gives each test fresh signal handlers."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_toy import TOY_GRPO  # noqa: E402
from toy import ToyModule, ToyPrompts, toy_tokenizer  # noqa: E402

from lit_verbrec.config.schema import LoraConfig, SizeConfig  # noqa: E402
from lit_verbrec.config.train_schema import GRPOConfig  # noqa: E402
from lit_verbrec.models.loading import load_policy  # noqa: E402
from lit_verbrec.rollout.callback import RolloutCallback  # noqa: E402
from lit_verbrec.rollout.hf import HFEngine  # noqa: E402
from lit_verbrec.training import preemption  # noqa: E402
from lit_verbrec.training.batches import ResumableBatches  # noqa: E402

SIZE = SizeConfig(lora=LoraConfig(rank=8, alpha=16, dropout=0.0))


class Record(pl.Callback):
    """Records the batch and the sampled completions of every step; sends `signum` to this process
    after step `signal_at`."""

    def __init__(self, signal_at: int = 0, signum: int = signal.SIGUSR2) -> None:
        self.batches, self.signal_at, self.start_step, self.start_adam_steps = [], signal_at, None, None
        self.signum = signum
        self.samples = []

    def on_train_start(self, trainer, module):
        self.start_step = trainer.global_step
        state = trainer.optimizers[0].state
        self.start_adam_steps = {int(s["step"]) for s in state.values()} if state else {0}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):   # after RolloutCallback's
        self.batches.append(list(batch))
        self.samples.append(module.rollout.completion_ids.tolist())

    def on_train_batch_end(self, trainer, module, *args):
        if trainer.global_step == self.signal_at:
            os.kill(os.getpid(), self.signum)


def fit_toy(steps: int, callbacks: list, ckpt_path: str | None = None, seed: int = 0,
            module_class: type = ToyModule) -> pl.Trainer:
    pl.seed_everything(seed)   # a resumed process's RNG is where a fresh one starts, not where the run stopped
    tokenizer = toy_tokenizer()
    policy = load_policy(SIZE, tokenizer, gradient_checkpointing=False, seed=0)
    module = module_class(policy, tokenizer, HFEngine(policy, tokenizer), GRPOConfig(**{**TOY_GRPO, "max_steps": steps}))
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, callbacks=[RolloutCallback(), *callbacks])
    # 10 steps per epoch, so the run crosses an epoch boundary after the resume
    batches = ResumableBatches(ToyPrompts(40), 4, seed=0, position=lambda: module.batches_done)
    trainer.fit(module, batches, ckpt_path=ckpt_path)
    return trainer


@pytest.fixture
def signal_handlers():
    """Restore this process's handlers and forget recorded signals after a test."""
    previous = {s: signal.getsignal(s) for s in preemption.SIGNALS}
    preemption.reset()
    yield
    preemption.reset()
    for signum, handler in previous.items():
        signal.signal(signum, handler)
