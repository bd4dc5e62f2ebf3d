"""slurm/start.sh after the cluster died with a job on it: the job that lost its processes is
requeued instead of holding the node's CPUs forever (what kept CI's 2-rank job PENDING)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("slurm")   # one local Slurm cluster per machine: every test that uses it on one pytest-xdist worker


SLURM = Path(__file__).resolve().parents[2] / "slurm"


def _squeue(*args: str) -> str:
    return subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, check=True).stdout.strip()


def _state_of(job_id: str) -> str:
    return _squeue("-j", job_id, "-o", "%T")


def _wait(predicate, what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"{what} after {timeout} s"
        time.sleep(0.5)


def test_start_requeues_a_job_whose_processes_died_with_the_cluster(slurm_cluster, tmp_path):
    if _squeue():
        pytest.skip(f"the local cluster runs other jobs; this test stops and restarts it:\n{_squeue()}")
    submitted = subprocess.run(["sbatch", "--parsable", "--requeue", "--cpus-per-task=1", f"--output={tmp_path}/%j.out",
                                "--wrap", "sleep 300"], capture_output=True, text=True, check=True)
    job_id = submitted.stdout.strip().split(";")[0]
    try:
        _wait(lambda: _state_of(job_id) == "RUNNING", f"job {job_id} not RUNNING")
        _wait(lambda: subprocess.run(["scontrol", "listpids", job_id], capture_output=True, text=True).stdout.count("\n") > 1,
              f"job {job_id} has no processes")
        listed = subprocess.run(["scontrol", "listpids", job_id], capture_output=True, text=True, check=True).stdout
        job_pids = [int(line.split()[0]) for line in listed.splitlines()[1:]]
        step_daemons = {int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) for pid in job_pids}

        # The cluster dies the way a killed shell or container kills it: daemons and the job's processes gone.
        env = {**os.environ, "LIT_VERBREC_SLURM_DIR": str(Path(slurm_cluster).parent)}
        subprocess.run(["bash", SLURM / "stop.sh"], check=True, timeout=120, env=env)
        for pid in [*step_daemons, *job_pids]:
            try:
                os.kill(pid, signal.SIGKILL)   # processes of the job this test submitted
            except ProcessLookupError:
                pass
        restarted = subprocess.run(["bash", SLURM / "start.sh"], capture_output=True, text=True, timeout=300, env=env)
        assert restarted.returncode == 0, restarted.stderr

        assert f"job {job_id} lost its processes when the cluster last stopped; requeued" in restarted.stderr
        assert _state_of(job_id) == "PENDING"          # back in the queue, not RUNNING on a node it does not run on
        assert _squeue("-t", "RUNNING,COMPLETING") == ""   # start.sh returned with the node free for the next job
    finally:
        subprocess.run(["scancel", job_id], check=False, timeout=60)
