"""Helpers of the tests against the local Slurm cluster: submit a tiny run, wait for job states,
read the logged steps of each attempt."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

from lit_verbrec.launch.slurm_watch import sacct_states

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ["cluster=slurm", "cluster.gpus_per_node=0", "cluster.cpus_per_task=1", "cluster.time_min=30"]
TINY = ["size=tiny", "data.synthetic.users=40", "data.synthetic.interactions_per_user=30", "data.synthetic.movies=200",
        "data.synthetic.series=20", "data.examples.history_len=8",
        "verbalizer.grpo.prompts_per_step=2", "verbalizer.grpo.group_size=4", "verbalizer.grpo.max_steps=3",
        "reasoner.grpo.prompts_per_step=2", "reasoner.grpo.group_size=4", "reasoner.grpo.max_steps=2",
        "train.val_examples=4", "train.val_every_n_steps=10", "train.eval_examples=24", "eval.bootstrap=100"]


def queue(*job_ids: str) -> str:
    """squeue's lines (with the pending reason) for these jobs, or for every job if none named."""
    selection = ["-j", ",".join(job_ids)] if job_ids else []
    return subprocess.run(["squeue", "-h", "-o", "%i %j %T %r", *selection], capture_output=True, text=True).stdout.strip()


def submit(run_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        return subprocess.run([sys.executable, ROOT / "tools" / "submit.py", f"run.root={run_root}", *CLUSTER, *TINY, *args],
                              capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired as timeout:   # say what held the node, not only that time ran out
        printed = timeout.stdout.decode() if isinstance(timeout.stdout, bytes) else timeout.stdout
        raise AssertionError(f"submit.py still waiting after 600 s; its output:\n{printed}\n"
                             f"the queue (id name state reason):\n{queue()}") from None


def wait_until(job_id: str, states: tuple[str, ...], timeout: float = 300) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        info = sacct_states([job_id])[job_id]
        if info["state"] in states:
            return info
        time.sleep(1)
    raise AssertionError(f"job {job_id} not in {states} after {timeout} s: {info}")


def logged_steps(stage_dir: Path) -> list[list[int]]:
    """The training steps in each attempt's metrics.csv (version_0 = first attempt, version_1 = after
    requeue). Training rows only: the decision probe and validation log at step boundaries under the
    step count after that step, so a stop at a multiple of their interval would add that number."""
    versions = sorted((stage_dir / "logs" / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    return [sorted({int(r["step"]) for r in csv.DictReader(open(v)) if r.get("step") and r.get("train/loss")})
            for v in versions]


def requeue_now(job_id: str) -> None:
    """Slurm holds a requeued batch job back for ~2 minutes (BeginTime); let it start at once."""
    wait_until(job_id, ("PENDING",), timeout=60)
    subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], check=True)
