"""Resuming where a run stopped: the batch order of ResumableBatches, and RequeueOnSignal's
checkpoint at a step boundary followed by a resume at the same step, optimizer state and batch."""

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
from lit_verbrec.training.batches import ResumableBatches  # noqa: E402
from lit_verbrec.training.preemption import REQUEUED_EXIT_CODE, RequeueOnSignal  # noqa: E402

SIZE = SizeConfig(lora=LoraConfig(rank=8, alpha=16, dropout=0.0))


def test_batches_cover_each_epoch_once_split_across_ranks():
    examples = list(range(20))
    ranks = [ResumableBatches(examples, 3, seed=1, position=lambda: 0, shard=lambda r=r: (r, 2)) for r in range(2)]
    assert len(ranks[0]) == 3                         # 20 // (3 * 2): the tail of the epoch is dropped
    epoch = [x for step in range(3) for r in ranks for x in r.batch(step)]
    assert len(epoch) == len(set(epoch)) == 18        # no example twice within an epoch, none shared by ranks
    assert ranks[0].batch(3) != ranks[0].batch(0)     # the next epoch is reshuffled
    assert ranks[0].batch(3) == ResumableBatches(examples, 3, 1, lambda: 0, lambda: (0, 2)).batch(3)  # seeded


def test_iteration_starts_at_the_position_and_ends_with_the_epoch():
    done = {"n": 4}
    batches = ResumableBatches(list(range(12)), 2, seed=0, position=lambda: done["n"])   # 6 steps per epoch
    assert list(batches) == [batches.batch(4), batches.batch(5)]
    done["n"] = 6
    assert next(iter(batches)) == batches.batch(6)


def test_too_few_examples_for_one_step_names_the_setting():
    with pytest.raises(ValueError, match="prompts_per_step"):
        len(ResumableBatches(list(range(5)), 4, seed=0, position=lambda: 0, shard=lambda: (0, 2)))


class Record(pl.Callback):
    """Records the batch and the sampled completions of every step; sends SIGUSR2 to this process
    after step `signal_at`."""

    def __init__(self, signal_at: int = 0) -> None:
        self.batches, self.signal_at, self.start_step, self.start_adam_steps = [], signal_at, None, None
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
            os.kill(os.getpid(), signal.SIGUSR2)


def _fit(steps: int, callbacks: list, ckpt_path: str | None = None, seed: int = 0) -> pl.Trainer:
    pl.seed_everything(seed)   # a resumed process's RNG is where a fresh one starts, not where the run stopped
    tokenizer = toy_tokenizer()
    policy = load_policy(SIZE, tokenizer, gradient_checkpointing=False, seed=0)
    module = ToyModule(policy, tokenizer, HFEngine(policy, tokenizer), GRPOConfig(**{**TOY_GRPO, "max_steps": steps}))
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, callbacks=[RolloutCallback(), *callbacks])
    # 10 steps per epoch, so the run crosses an epoch boundary after the resume
    batches = ResumableBatches(ToyPrompts(40), 4, seed=0, position=lambda: module.batches_done)
    trainer.fit(module, batches, ckpt_path=ckpt_path)
    return trainer


def test_signal_checkpoints_at_the_step_and_the_resumed_run_continues_there(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    previous = signal.getsignal(signal.SIGUSR2)
    straight = Record()
    _fit(14, [straight])

    requeued, ckpt = [], tmp_path / "last.ckpt"
    first = Record(signal_at=6)
    try:
        with pytest.raises(SystemExit) as stop:
            _fit(14, [first, RequeueOnSignal(ckpt, requeue=requeued.append)])
        assert stop.value.code == REQUEUED_EXIT_CODE and requeued == ["4242"]
        assert len(first.batches) == 6 and ckpt.is_file()   # stopped right after the step that saw the signal

        resumed = Record()
        trainer = _fit(14, [resumed], ckpt_path=str(ckpt), seed=1)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert resumed.start_step == 6 and resumed.start_adam_steps == {6}   # global step and optimizer state
    assert first.batches + resumed.batches == straight.batches            # same data, no batch seen twice
    # each step's sampling is seeded by (run seed, rank, step): the samples of an uninterrupted run
    assert first.samples + resumed.samples == straight.samples
    assert len({str(s) for s in straight.samples}) == len(straight.samples)   # and a new draw every step
    assert trainer.global_step == 14 and len(resumed.batches) == 8
