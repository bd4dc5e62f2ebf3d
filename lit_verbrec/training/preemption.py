"""Survive Slurm's time limit and preemption: checkpoint at a step boundary, requeue, resume.

Slurm sends SIGUSR2 `cluster.signal_delay_s` before the time limit (and on preemption with
a grace time). This callback is the one mechanism that handles it:

    signal      -> a flag is set (nothing else happens inside the handler)
    step end    -> the ranks agree on the flag (any rank that saw it) and stop after this step
    train end   -> every rank calls trainer.save_checkpoint(<stage>/checkpoints/last.ckpt)
                   together, rank 0 runs `scontrol requeue $SLURM_JOB_ID`, every rank exits
    requeued    -> the same batch script runs again; the stage resumes from last.ckpt: same
                   global step, optimizer and scheduler state, and data position (batches.py)

Neither built-in is used, and both are switched off (make_trainer passes
SLURMEnvironment(auto_requeue=False); this handler replaces submitit's):
- Lightning's auto-requeue saves inside the signal handler, in the middle of whatever the step
  was doing, and runs a collective checkpoint save there under DDP; it also installs nothing
  when a handler for the signal already exists, which submitit's is.
- submitit's checkpointing calls `checkpoint()` on rank 0 only, inside the handler, and
  requeues at once: there is no way to wait for the step to finish and save the real state.

A job killed outright (`scontrol requeue`, node failure, SIGKILL) gets no signal: it resumes
from the periodic last.ckpt (`train.checkpoint_every_n_steps`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl

REQUEUED_EXIT_CODE = 3
"""The exit status of a rank that checkpointed and asked Slurm to requeue the job."""


def scontrol_requeue(job_id: str) -> None:
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=60)


def slurm_job_id() -> str:
    """The id to requeue: <array id>_<task> for an array task, else SLURM_JOB_ID."""
    array_id = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_id:
        return f"{array_id}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


class RequeueOnSignal(pl.Callback):
    def __init__(self, checkpoint: str | Path, signum: int = signal.SIGUSR2,
                 requeue: Callable[[str], None] = scontrol_requeue) -> None:
        self.checkpoint = Path(checkpoint)
        self.signum = signum
        self.requeue = requeue
        self.received = False   # set by the signal handler
        self.stopping = False   # the ranks agreed to stop after this step

    def _on_signal(self, signum, frame) -> None:
        self.received = True

    def setup(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> None:
        # Installed once the Trainer runs, so it replaces submitit's handler for the same signal.
        signal.signal(self.signum, self._on_signal)

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx: int) -> None:
        # One small collective per step, so that every rank stops after the same step.
        if trainer.strategy.reduce_boolean_decision(self.received, all=False):
            self.stopping = trainer.should_stop = True   # Lightning logs this step, then ends fit

    def on_train_end(self, trainer: pl.Trainer, module) -> None:
        if not self.stopping:
            return
        for logger in trainer.loggers:   # the CSV logger buffers rows
            logger.save()
        trainer.save_checkpoint(self.checkpoint)
        if trainer.is_global_zero:
            job_id = slurm_job_id()
            print(f"signal {signal.Signals(self.signum).name}: checkpoint at step {trainer.global_step} in "
                  f"{self.checkpoint}; requeueing Slurm job {job_id}", file=sys.stderr, flush=True)
            self.requeue(job_id)
        # SystemExit, not an exception: submitit then writes no result file, so whoever
        # watches the job waits for the requeued run instead of reporting a failure; and the
        # stage does not go on to score an unfinished model.
        raise SystemExit(REQUEUED_EXIT_CODE)
