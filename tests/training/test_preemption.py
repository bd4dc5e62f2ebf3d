"""Resuming where a run stopped: the batch order of ResumableBatches, and RequeueOnSignal's
checkpoint at a step boundary (on SIGUSR2, the time limit's warning, and on SIGTERM, preemption's)
followed by a resume at the same step, optimizer state, batch and samples."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from toy_fit import Record, fit_toy, signal_handlers  # noqa: E402,F401 (a fixture)

from lit_verbrec.training import preemption  # noqa: E402
from lit_verbrec.training.batches import ResumableBatches  # noqa: E402
from lit_verbrec.training.preemption import REQUEUED_EXIT_CODE, RequeueOnSignal  # noqa: E402


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


@pytest.fixture(scope="module")
def straight():
    """An uninterrupted 14-step run (shared by the signals' cases)."""
    record = Record()
    fit_toy(14, [record])
    return record


@pytest.mark.usefixtures("signal_handlers")
@pytest.mark.parametrize("signum", [signal.SIGUSR2, signal.SIGTERM], ids=["SIGUSR2", "SIGTERM"])
def test_signal_checkpoints_at_the_step_and_the_resumed_run_continues_there(tmp_path, monkeypatch, signum, straight):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")

    requeued, ckpt = [], tmp_path / "last.ckpt"
    first = Record(signal_at=6, signum=signum)
    running = RequeueOnSignal(ckpt, requeue=requeued.append, state=lambda job: "RUNNING")
    with pytest.raises(SystemExit) as stop:
        fit_toy(14, [first, running])
    assert stop.value.code == REQUEUED_EXIT_CODE and requeued == ["4242"]
    assert len(first.batches) == 6 and ckpt.is_file()   # stopped right after the step that saw the signal

    resumed = Record()
    preemption.reset()   # the requeued job is a new process
    trainer = fit_toy(14, [resumed], ckpt_path=str(ckpt), seed=1)
    assert resumed.start_step == 6 and resumed.start_adam_steps == {6}   # global step and optimizer state
    assert first.batches + resumed.batches == straight.batches            # same data, no batch seen twice
    # each step's sampling is seeded by (run seed, rank, step): the samples of an uninterrupted run
    assert first.samples + resumed.samples == straight.samples
    assert len({str(s) for s in straight.samples}) == len(straight.samples)   # and a new draw every step
    assert trainer.global_step == 14 and len(resumed.batches) == 8
