"""Survive Slurm's time limit and preemption: checkpoint at a step boundary, requeue, resume.

Slurm warns a job in two ways: SIGUSR2 `cluster.signal_delay_s` before the time limit
(`--signal`), and SIGTERM when it is preempted, requeued (`scontrol requeue`) or cancelled,
KillWait / GraceTime seconds before SIGKILL. Both are handled the same way, from the moment the
job starts (`install`, called by the job before anything is loaded):

    signal      -> a flag is set (nothing else happens inside the handler)
    before fit  -> model load and engine start go on; stage 2's verbalization stops after its
                   current chunk, which is saved (training/cache.py), and the job requeues;
                   fit stops at its start, before any step (nothing new to save)
    step end    -> the ranks agree on the flag (any rank that saw it) and stop after this step
    train end   -> every rank calls trainer.save_checkpoint(<stage>/checkpoints/last.ckpt)
                   together, rank 0 requeues the job if Slurm still runs it, every rank exits
    requeued    -> the same batch script runs again; the stage resumes from last.ckpt: same
                   global step, optimizer and scheduler state, data position (batches.py),
                   validation history and best score (callbacks.py); each step's sampling is
                   seeded from (run seed, rank, batches done), so the samples are those of an
                   uninterrupted run with no RNG state saved (rollout/callback.py)

Rank 0 runs `scontrol requeue` only while Slurm still has the job RUNNING: after SIGUSR2, or a
SIGTERM sent to the job's steps (`scancel --signal=TERM`). When Slurm itself ends the job
(preemption, `scontrol requeue`: it requeues a `--requeue` job on its own; `scancel`: the user
wants it gone) the job only checkpoints and exits. `cluster.max_requeues` caps the requeues
(SLURM_RESTART_COUNT counts them, Slurm's own included): past it a stop fails the job.

Neither built-in is used: Lightning's auto-requeue (off: SLURMEnvironment(auto_requeue=False))
saves inside the signal handler, mid-step, and its SIGTERM handler ends fit after the step with
no checkpoint; submitit's handler ignores SIGTERM and, on SIGUSR2 late in the time limit, fails
a job that has no `checkpoint()` method. `install` replaces submitit's handlers and
RequeueOnSignal replaces Lightning's once fit runs.
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
"""The exit status of a rank that stopped for a requeue (its own, or Slurm's)."""
SIGNALS = (signal.SIGUSR2, signal.SIGTERM)
_received: list[int] = []   # the signals this process received since `install`


def _on_signal(signum, frame) -> None:
    _received.append(signum)


def install() -> None:
    """Record SIGUSR2 and SIGTERM from now on instead of acting on them (replaces submitit's handlers)."""
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)


def reset() -> None:
    """Forget received signals (tests run several fits in one process; a job runs one)."""
    _received.clear()


def received() -> int | None:
    """The first preemption signal this process received, or None."""
    return _received[0] if _received else None


def signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "a peer rank's signal"


def slurm_job_id() -> str:
    """The id to requeue: <array id>_<task> for an array task, else SLURM_JOB_ID."""
    array_id = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_id:
        return f"{array_id}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


def restart_count() -> int:
    """How many times Slurm has requeued this job so far (0 on its first run)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)


def job_rank() -> tuple[int, int]:
    """(rank, ranks) of this process in its Slurm job's step; (0, 1) outside one."""
    if "SLURM_PROCID" in os.environ and "SLURM_NTASKS" in os.environ:
        return int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
    return 0, 1


def slurm_state(job_id: str) -> str:
    """The job's state as Slurm's controller sees it now (RUNNING, COMPLETING, ...); "" if unknown."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


def scontrol_requeue(job_id: str) -> None:
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=60)


def stop_job(where: str, max_requeues: int, is_rank_zero: bool, requeue: Callable[[str], None] = scontrol_requeue,
             state: Callable[[str], str] = slurm_state) -> None:
    """Every rank ends the process here after a signal; rank 0 first requeues the job if Slurm still runs
    it and cluster.max_requeues allows. SystemExit, not an exception: submitit then writes no result
    file, so whoever watches the job waits for the requeued run instead of reporting a failure."""
    code = REQUEUED_EXIT_CODE
    if is_rank_zero:
        job_id = slurm_job_id()
        message = f"signal {signal_name(received())}: {where}"
        if restart_count() >= max_requeues:
            message += f"; NOT requeued: job {job_id} was requeued {restart_count()} times (cluster.max_requeues)"
            code = 1
        elif (current := state(job_id)) == "RUNNING":
            message += f"; requeueing Slurm job {job_id}"
            try:
                requeue(job_id)
            except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired) as err:   # Slurm ended it meanwhile
                message += f" failed ({err}); Slurm requeues or ends it"
        else:
            message += f"; Slurm job {job_id} is {current or 'gone'}: Slurm requeues or ends it, not this job"
        print(message, file=sys.stderr, flush=True)
    raise SystemExit(code)


def exit_if_signalled(where: str, max_requeues: int) -> None:
    """Before fit (no Trainer yet): after a signal, stop the job here (`stop_job`), else return."""
    if received() is not None:
        stop_job(where, max_requeues, is_rank_zero=job_rank()[0] == 0)


class RequeueOnSignal(pl.Callback):
    def __init__(self, checkpoint: str | Path, max_requeues: int = 20,
                 requeue: Callable[[str], None] = scontrol_requeue, state: Callable[[str], str] = slurm_state) -> None:
        self.checkpoint = Path(checkpoint)
        self.max_requeues, self.requeue, self.state = max_requeues, requeue, state
        self.stopping = False   # the ranks agreed to stop after this step

    def setup(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> None:
        install()   # a run not started by the job (tests, a rank Lightning spawned) records signals from here

    def _agreed(self, trainer: pl.Trainer) -> bool:
        # One small collective, so that every rank stops at the same point.
        return trainer.strategy.reduce_boolean_decision(received() is not None, all=False)

    def on_train_start(self, trainer: pl.Trainer, module) -> None:
        # Lightning registered its own SIGTERM handler just before this hook (it would end fit with no
        # checkpoint); put the recording one back. Its teardown restores the handlers fit found: install's.
        install()
        if self._agreed(trainer):   # signalled while the model loaded: stop before the first step
            self._stop(trainer, f"stopped before step {trainer.global_step + 1}, nothing new to save")

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx: int) -> None:
        if self._agreed(trainer):
            self.stopping = trainer.should_stop = True   # Lightning logs this step, then ends fit

    def on_train_end(self, trainer: pl.Trainer, module) -> None:
        if not self.stopping:
            return
        for logger in trainer.loggers:   # the CSV logger buffers rows
            logger.save()
        trainer.save_checkpoint(self.checkpoint)
        self._stop(trainer, f"checkpoint at step {trainer.global_step} in {self.checkpoint}")

    def _stop(self, trainer: pl.Trainer, where: str) -> None:
        # The stage does not go on to score an unfinished model.
        stop_job(where, self.max_requeues, trainer.is_global_zero, self.requeue, self.state)
