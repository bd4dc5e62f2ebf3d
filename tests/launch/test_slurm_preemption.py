"""Preemption on the local Slurm cluster (tests/launch/conftest.py): a job Slurm requeues with
SIGTERM, and one warned with SIGUSR2 before its time limit, checkpoint at a step boundary and
resume there; the resumed run samples what an uninterrupted run samples, and keeps its best
adapter and validation history."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_jobs import CLUSTER, ROOT, TINY, logged_steps, requeue_now, submit, wait_until

from lit_verbrec.launch.slurm import read_jobs

pytestmark = pytest.mark.xdist_group("slurm")   # one local Slurm cluster per machine: every test that uses it on one pytest-xdist worker


STEPS = 12
SIGTERM_RUN = [f"verbalizer.grpo.max_steps={STEPS}", "train.checkpoint_every_n_steps=100", "train.samples_every_n_steps=1",
               "train.val_every_n_steps=4", "stage=verbalizer"]


def _wait_for(path: Path, what: str, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{what}: {path} not there after {timeout} s"
        time.sleep(0.2)


def _samples(stage: Path) -> dict[int, str]:
    """step -> the Markdown table of that step's samples (texts and rewards)."""
    return {int(p.stem[5:]): p.read_text() for p in sorted((stage / "samples").glob("step-*.md"))}


def test_slurm_requeue_sends_sigterm_the_job_checkpoints_and_resumes_at_that_step(slurm_cluster, tmp_path):
    # The uninterrupted reference: the same run on this machine, started alongside (one CPU each).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = subprocess.Popen([sys.executable, ROOT / "tools" / "submit.py", f"run.root={tmp_path / 'reference'}",
                                  *CLUSTER, *TINY, *SIGTERM_RUN, "cluster=local"], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result = submit(tmp_path, *SIGTERM_RUN, "--detach")
    assert result.returncode == 0, result.stderr[-3000:]
    job_id, stage = read_jobs(tmp_path / "default")[0]["job_id"], tmp_path / "default" / "verbalizer"
    _wait_for(stage / "samples" / "step-000003.md", "training did not reach step 3")
    # Slurm's own requeue, as on preemption: SIGTERM to every process, SIGKILL KillWait seconds later
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    requeue_now(job_id)
    wait_until(job_id, ("COMPLETED",), timeout=400)
    printed, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, printed[-3000:]

    log = Path(read_jobs(tmp_path / "default")[0]["err"]).read_text()
    checkpointed = re.search(r"signal SIGTERM: checkpoint at step (\d+)", log)
    assert checkpointed, f"no checkpoint at the signal; the job's log ends:\n{log[-3000:]}"
    saved = int(checkpointed.group(1))
    first, second = logged_steps(stage)
    assert 3 <= saved < STEPS and first[-1] == saved - 1 and second[0] == saved   # resumed at the signal's step
    assert (stage / "adapter" / "global_step.txt").read_text().strip() == str(STEPS)
    # the same samples, step by step, as the uninterrupted run (each step seeded by run seed, rank, step)
    ours, theirs = _samples(stage), _samples(tmp_path / "reference" / "default" / "verbalizer")
    assert sorted(ours) == list(range(1, STEPS + 1)) and ours == theirs
    # validation history and the best adapter went on across the requeue
    ours, theirs = (json.loads((r / "results.json").read_text())[0]["train"]["validation"]
                    for r in (tmp_path / "default", tmp_path / "reference" / "default"))
    assert [v["step"] for v in ours] == [0, 4, 8, 12] and ours == theirs
    best = [(stage.parent.parent / r / "default" / "verbalizer" / "adapter-best" / "best.json") for r in (".", "reference")]
    assert json.loads(best[0].read_text()) == json.loads(best[1].read_text())


def test_preemption_signal_checkpoints_at_a_step_and_requeues_itself(slurm_cluster, tmp_path):
    result = submit(tmp_path, "stage=verbalizer", "verbalizer.grpo.max_steps=40", "train.checkpoint_every_n_steps=100",
                    "--detach")   # no periodic checkpoint to fall back on
    assert result.returncode == 0, result.stderr[-3000:]
    job_id, stage = read_jobs(tmp_path / "default")[0]["job_id"], tmp_path / "default" / "verbalizer"
    _wait_for(stage / "logs" / "csv" / "version_0", "training did not start")   # CSV rows come later
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)   # what Slurm sends before the time limit
    requeue_now(job_id)
    wait_until(job_id, ("COMPLETED",))
    log = Path(read_jobs(tmp_path / "default")[0]["err"]).read_text()
    checkpointed = re.search(r"signal SIGUSR2: checkpoint at step (\d+)", log)
    assert checkpointed, f"no checkpoint at the signal; the job's log ends:\n{log[-3000:]}"
    saved = int(checkpointed.group(1))
    first, second = logged_steps(stage)
    assert 0 < saved < 40 and second[0] == saved and first[-1] == saved - 1
    assert (stage / "adapter" / "global_step.txt").read_text().strip() == "40"
