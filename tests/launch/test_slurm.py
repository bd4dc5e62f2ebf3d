"""cluster=slurm against a real one-node Slurm cluster on localhost (tests/launch/conftest.py):
dependent stages, a failed stage 1, requeue and preemption, and a 2-rank job."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lit_verbrec.config.compose import compose
from lit_verbrec.launch.slurm import dry_run, read_jobs
from lit_verbrec.launch.slurm_watch import sacct_states

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ["cluster=slurm", "cluster.gpus_per_node=0", "cluster.cpus_per_task=1", "cluster.time_min=30"]
TINY = ["size=tiny", "data.synthetic.users=40", "data.synthetic.interactions_per_user=30", "data.synthetic.movies=200",
        "data.synthetic.series=20", "data.examples.history_len=8",
        "verbalizer.grpo.prompts_per_step=2", "verbalizer.grpo.group_size=4", "verbalizer.grpo.max_steps=3",
        "reasoner.grpo.prompts_per_step=2", "reasoner.grpo.group_size=4", "reasoner.grpo.max_steps=2",
        "train.val_examples=4", "train.val_every_n_steps=10", "train.eval_examples=24", "eval.bootstrap=100"]


@pytest.fixture(autouse=True)
def cancel_own_jobs(tmp_path):
    """Cancel whatever the test submitted and left behind: a hung job would hold the node's CPUs
    and keep every later job PENDING (Resources), in this run and after a cluster restart."""
    yield
    if not (tmp_path / "default" / "slurm" / "jobs.json").is_file():
        return
    ids = [j["job_id"] for j in read_jobs(tmp_path / "default")]
    subprocess.run(["scancel", *ids], check=False, timeout=60)
    end = time.monotonic() + 60                      # gone from the node before the next test asks for it
    while queue(*ids) and time.monotonic() < end:
        time.sleep(0.5)


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


def test_dry_run_of_two_nodes_with_two_tasks_is_the_readme_example():
    cfg = compose(["size=32b", "cluster=slurm", "cluster.nodes=2", "cluster.tasks_per_node=2", "cluster.gpus_per_node=2",
                   "run.root=/shared/runs", "run.name=demo"])
    printed = dry_run(cfg).replace(sys.executable, "/path/to/.venv/bin/python")
    printed = re.sub(r"slurm/code/[0-9a-f]{12}", "slurm/code/<hash>", printed)   # the snapshot's name: a code hash
    readme = (ROOT / "README.md").read_text()
    documented = re.search(r"<!-- dry-run example -->\n```bash\n\$ .*?--dry-run\n(.*?)```", readme, re.S)
    assert documented, "README.md lacks the dry-run example block"
    assert printed.strip() == documented.group(1).strip()
    assert "#SBATCH --nodes=2" in printed and "#SBATCH --ntasks-per-node=2" in printed
    assert "#SBATCH --dependency='afterok:<verbalizer job id>'" in printed


def test_both_stages_complete_in_order_and_fill_the_run_folder(slurm_cluster, tmp_path):
    result = submit(tmp_path, "stage=both")
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "default"
    jobs = {j["stage"]: j["job_id"] for j in read_jobs(run)}
    states = sacct_states(list(jobs.values()))
    stage1, stage2 = states[jobs["verbalizer"]], states[jobs["reasoner"]]
    assert stage1["state"] == stage2["state"] == "COMPLETED"
    assert stage2["start"] >= stage1["end"]          # ISO times: stage 2 started only after stage 1 ended
    for adapter in ("verbalizer/adapter", "reasoner/adapter"):
        assert (run / adapter / "adapter_model.safetensors").is_file()
    results = (run / "results.md").read_text()
    assert "Stage verbalizer" in results and "Stage reasoner" in results


def test_failed_stage_1_cancels_stage_2_and_submit_names_it(slurm_cluster, tmp_path):
    result = submit(tmp_path, "stage=both", f"data.prepared={tmp_path / 'no-such-data'}")
    run = tmp_path / "default"
    jobs = {j["stage"]: j for j in read_jobs(run)}
    assert result.returncode == 1
    log = jobs["verbalizer"]["err"]
    assert f"stage verbalizer (Slurm job {jobs['verbalizer']['job_id']}) ended FAILED" in result.stderr
    assert log in result.stderr and "no-such-data" in Path(log).read_text()
    stage2 = wait_until(jobs["reasoner"]["job_id"], ("CANCELLED",), timeout=60)
    assert stage2["start"] in ("None", "Unknown")     # it never ran
    assert not (run / "reasoner").exists()

    status = subprocess.run([sys.executable, ROOT / "tools" / "submit.py", "status", f"run={run}"],
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 1 and "| verbalizer |" in status.stdout and "FAILED" in status.stdout
    assert "stage verbalizer" in status.stderr and log in status.stderr


def _start_long_stage_1(tmp_path: Path, checkpoint_every: int) -> tuple[str, Path]:
    result = submit(tmp_path, "stage=verbalizer", "verbalizer.grpo.max_steps=40",
                    f"train.checkpoint_every_n_steps={checkpoint_every}", "--detach")
    assert result.returncode == 0, result.stderr[-3000:]
    job_id = read_jobs(tmp_path / "default")[0]["job_id"]
    return job_id, tmp_path / "default" / "verbalizer"


def test_requeued_stage_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    job_id, stage = _start_long_stage_1(tmp_path, checkpoint_every=2)
    end = time.monotonic() + 180
    while not (stage / "checkpoints" / "last.ckpt").is_file():
        assert time.monotonic() < end, "no checkpoint written"
        time.sleep(0.5)
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    requeue_now(job_id)
    wait_until(job_id, ("COMPLETED",))
    first, second = logged_steps(stage)
    assert second[0] > 0                              # not from zero ...
    assert second[0] % 2 == 0 and second[0] <= first[-1] + 1   # ... from a saved step of the first attempt
    assert (stage / "adapter" / "global_step.txt").read_text().strip() == "40"


def test_preemption_signal_checkpoints_at_a_step_and_requeues_itself(slurm_cluster, tmp_path):
    job_id, stage = _start_long_stage_1(tmp_path, checkpoint_every=100)   # no periodic checkpoint to fall back on
    end = time.monotonic() + 180
    while not (stage / "logs" / "csv" / "version_0").is_dir():   # the trainer started (CSV rows come later)
        assert time.monotonic() < end, "training did not start"
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)   # what Slurm sends before the time limit
    requeue_now(job_id)
    wait_until(job_id, ("COMPLETED",))
    log = Path(read_jobs(tmp_path / "default")[0]["err"]).read_text()
    saved = int(re.search(r"signal SIGUSR2: checkpoint at step (\d+)", log).group(1))
    first, second = logged_steps(stage)
    assert 0 < saved < 40 and second[0] == saved and first[-1] == saved - 1
    assert (stage / "adapter" / "global_step.txt").read_text().strip() == "40"


def test_two_ranks_on_the_local_node(slurm_cluster, tmp_path):
    assert not queue(), f"the 2-rank job needs every CPU of the node, and other jobs hold it:\n{queue()}"
    result = submit(tmp_path, "stage=verbalizer", "cluster.tasks_per_node=2")
    assert result.returncode == 0, result.stderr[-3000:]
    job = read_jobs(tmp_path / "default")[0]
    folder = Path(job["err"]).parent
    for rank in (0, 1):
        log = (folder / f"{job['job_id']}_{rank}_log.err").read_text()
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in log
    assert "| trained action verbalizer |" in (tmp_path / "default" / "results.md").read_text()
