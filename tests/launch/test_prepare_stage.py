"""stage=prepare (and stage=all): the log prepared as a step of a run, here and as a CPU-only Slurm
job that stage 1 waits on (the scripts: test_sbatch.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from slurm_jobs import ROOT, TINY, submit

from lit_verbrec.launch.slurm import read_jobs
from lit_verbrec.launch.slurm_watch import sacct_states

DATA = [a for a in TINY if a.startswith(("size=", "data."))]


def submit_here(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, ROOT / "tools" / "submit.py", "cluster=local", *DATA, *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_stage_prepare_here_writes_the_run_data_once(tmp_path):
    first = submit_here(f"run.root={tmp_path}", "stage=prepare")
    assert first.returncode == 0, first.stderr[-3000:]
    data = tmp_path / "default" / "data"
    summary = json.loads((data / "summary.json").read_text())
    assert summary["history_len"] == 8 and summary["users"] == 40
    assert f"wrote {data}" in first.stdout and "history window: 8 lines" in first.stdout
    assert (data / "config.yaml").is_file() and pq.read_table(data / "examples.parquet").num_rows > 0
    written = (data / "examples.parquet").stat().st_mtime_ns

    again = submit_here(f"run.root={tmp_path}", "stage=prepare")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already holds prepared examples; kept" in again.stdout
    assert (data / "examples.parquet").stat().st_mtime_ns == written

    wider = submit_here(f"run.root={tmp_path}", "stage=prepare", "data.examples.history_len=12")
    # a folder cut to another window is refused, with the message, not a traceback
    assert wider.returncode == 1 and wider.stderr.startswith("data error: ") and "8-line history window" in wider.stderr


def test_stage_prepare_writes_to_data_prepared_and_bad_input_is_a_message(tmp_path):
    shared = tmp_path / "shared" / "prepared"
    result = submit_here(f"run.root={tmp_path}", "stage=prepare", f"data.prepared={shared}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (shared / "examples.parquet").is_file() and not (tmp_path / "default" / "data").exists()

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "events.csv").write_text("user,item,timestamp,event,duration\nu1,m1,1,play,3\n")
    bad = submit_here(f"run.root={tmp_path}", "run.name=bad", "stage=prepare", "data=parquet",
                      f"data.path={tmp_path / 'logs'}", "data.interactions=events.csv", "data.items=items.csv",
                      "data.timestamp_format=unix")
    assert bad.returncode == 1 and bad.stderr.startswith("data error: items.csv: no such file in ")
    assert "Traceback" not in bad.stderr


@pytest.mark.xdist_group("slurm")
def test_stage_all_prepares_in_a_slurm_job_that_stage_1_waits_on_and_a_rerun_keeps_it(slurm_cluster, tmp_path):
    first = submit(tmp_path, "stage=all")
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "default"
    jobs = {j["stage"]: j for j in read_jobs(run)}
    assert list(jobs) == ["prepare", "verbalizer", "reasoner"]
    states = sacct_states([j["job_id"] for j in jobs.values()])
    prepare, stage1, stage2 = (states[jobs[s]["job_id"]] for s in jobs)
    assert prepare["state"] == stage1["state"] == stage2["state"] == "COMPLETED"
    assert stage1["start"] >= prepare["end"] and stage2["start"] >= stage1["end"]    # afterok, in order
    assert json.loads((run / "data" / "summary.json").read_text())["history_len"] == 8
    assert "history window: 8 lines" in open(jobs["prepare"]["out"]).read()
    assert (run / "reasoner" / "adapter" / "adapter_model.safetensors").is_file()

    again = submit(tmp_path, "stage=prepare")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (f"prepare: Slurm job {jobs['prepare']['job_id']} is COMPLETED from an earlier submission: "
            "not submitted again") in again.stdout
