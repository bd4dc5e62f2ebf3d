"""cluster=slurm against a real one-node Slurm cluster on localhost (tests/launch/conftest.py):
dependent stages and a rerun that skips the completed one, a failed stage 1 (watched, and not
watched: Slurm cancels stage 2), and a 2-rank job. Preemption: test_slurm_preemption.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from slurm_jobs import ROOT, queue, submit, wait_until

from lit_verbrec.config.compose import compose
from lit_verbrec.launch.slurm import dry_run, read_jobs
from lit_verbrec.launch.slurm_watch import sacct_states

pytestmark = pytest.mark.xdist_group("slurm")   # one local Slurm cluster per machine: every test that uses it on one pytest-xdist worker


def test_dry_run_of_two_nodes_with_two_tasks_is_the_readme_example():
    cfg = compose(["size=32b", "cluster=slurm", "cluster.nodes=2", "cluster.tasks_per_node=2", "cluster.gpus_per_node=2",
                   "run.root=/shared/runs", "run.name=demo"])
    printed = dry_run(cfg).replace(sys.executable, "/path/to/.venv/bin/python")
    printed = re.sub(r"slurm/code/[0-9a-f]{12}", "slurm/code/<hash>", printed)   # the snapshot's name: a code hash
    readme = (ROOT / "docs" / "slurm.md").read_text()   # the README links there
    documented = re.search(r"<!-- dry-run example -->\n```bash\n\$ .*?--dry-run\n(.*?)```", readme, re.S)
    assert documented, "docs/slurm.md lacks the dry-run example block"
    assert printed.strip() == documented.group(1).strip()
    assert "#SBATCH --nodes=2" in printed and "#SBATCH --ntasks-per-node=2" in printed
    assert "#SBATCH --dependency='afterok:<verbalizer job id>'" in printed


def test_both_stages_complete_in_order_and_a_rerun_skips_the_completed_stage_1(slurm_cluster, tmp_path):
    first = submit(tmp_path, "stage=verbalizer")
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "default"
    stage1_id = read_jobs(run)[0]["job_id"]
    log = Path(read_jobs(run)[0]["err"]).read_text()
    assert re.search(rf"stage verbalizer: code {run}/slurm/code/[0-9a-f]{{12}}/lit_verbrec, attempt 1", log)  # the snapshot

    result = submit(tmp_path, "stage=both")   # stage 1 is done: only stage 2 is submitted
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"verbalizer: Slurm job {stage1_id} is COMPLETED from an earlier submission: not submitted again" in result.stdout
    jobs = {j["stage"]: j["job_id"] for j in read_jobs(run)}
    assert jobs["verbalizer"] == stage1_id
    history = json.loads((run / "slurm" / "jobs.json").read_text())
    assert [(j["submission"], j["stage"], j["job_id"]) for j in history] == [
        (0, "verbalizer", stage1_id), (1, "verbalizer", stage1_id), (1, "reasoner", jobs["reasoner"])]
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


def test_failed_stage_1_with_nobody_watching_slurm_cancels_stage_2(slurm_cluster, tmp_path):
    # The local cluster does not set DependencyParameters=kill_invalid_depend (most clusters do not):
    # only the job's own --kill-on-invalid-dep=yes ends stage 2.
    result = submit(tmp_path, "stage=both", f"data.prepared={tmp_path / 'no-such-data'}", "--detach")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = {j["stage"]: j["job_id"] for j in read_jobs(tmp_path / "default")}
    assert wait_until(jobs["verbalizer"], ("FAILED",), timeout=120)["state"] == "FAILED"
    stage2 = wait_until(jobs["reasoner"], ("CANCELLED",), timeout=60)
    assert stage2["start"] in ("None", "Unknown")     # it never ran


def test_two_ranks_on_the_local_node_and_stage_2_verbalizes_in_halves(slurm_cluster, tmp_path):
    assert not queue(), f"the 2-rank job needs every CPU of the node, and other jobs hold it:\n{queue()}"
    result = submit(tmp_path, "stage=both", "cluster.tasks_per_node=2")
    assert result.returncode == 0, result.stderr[-3000:]
    for job in read_jobs(tmp_path / "default"):
        folder = Path(job["err"]).parent
        for rank in (0, 1):
            log = (folder / f"{job['job_id']}_{rank}_log.err").read_text()
            assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in log
    assert "| trained action verbalizer |" in (tmp_path / "default" / "results.md").read_text()
    # stage 2's one-off verbalization: each rank wrote its own half, no example twice
    parts = sorted((tmp_path / "default" / "cache").glob("verbalizations-*.part*.parquet"))
    assert [p.name.rsplit(".", 2)[1] for p in parts] == ["part0", "part1"]
    halves = [set(pq.read_table(p)["example_id"].to_pylist()) for p in parts]
    assert halves[0].isdisjoint(halves[1]) and abs(len(halves[0]) - len(halves[1])) <= 1
