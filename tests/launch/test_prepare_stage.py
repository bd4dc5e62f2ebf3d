"""stage=prepare (and stage=all): the log prepared as a step of a run, here and as a CPU-only Slurm
job that stage 1 waits on, or for own logs in shards as job arrays (the scripts: test_sbatch.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from slurm_jobs import CLUSTER, ROOT, TINY, submit

from lit_verbrec.config.compose import compose
from lit_verbrec.config.schema import SyntheticConfig
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.shard_passes import canonical_pass, partition_pass, shard_count, work_folder
from lit_verbrec.data.sources import prepare
from lit_verbrec.data.synthetic import generate
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


def own_log(folder: Path) -> list[str]:
    """A small own log (Parquet) and the overrides that prepare it in shards of about 400 rows."""
    folder.mkdir(parents=True)
    interactions, items = generate(SyntheticConfig(users=40, interactions_per_user=30, movies=200, series=20), 1)
    pq.write_table(pa.Table.from_pandas(interactions, preserve_index=False), folder / "events.parquet")
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), folder / "items.parquet")
    return ["data=parquet", f"data.path={folder}", "data.interactions=events.parquet", "data.items=items.parquet",
            "data.shard_rows=400", "data.workers=1", "data.examples.history_len=8"]


def array_tasks(job_id: str) -> dict[str, str]:
    """task -> state of a job array, from sacct."""
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State"], capture_output=True,
                         text=True, check=True).stdout
    return {line.split("|")[0].split("_")[1]: line.split("|")[1].split()[0] for line in out.splitlines()}


@pytest.mark.xdist_group("slurm")
def test_a_sharded_preparation_runs_as_job_arrays_and_only_a_failed_shard_is_redone(slurm_cluster, tmp_path):
    args = [*own_log(tmp_path / "logs"), "stage=prepare"]
    cfg = compose([f"run.root={tmp_path}", *CLUSTER, *TINY, *args])
    data = tmp_path / "default" / "data"
    work = work_folder(data)
    plan = partition_pass(cfg.data, work)          # the partition job will find it done (same settings)
    assert plan.shards == shard_count(cfg.data) == 4
    canonical_pass(cfg.data, work, 0)              # shard 0 done before the jobs, and marked
    marker = json.loads((work / "canonical" / "0.json").read_text())
    marker["report"]["a mark left by this test"] = {"count": 1, "first": "shard 0"}
    (work / "canonical" / "0.json").write_text(json.dumps(marker))
    (work / "canonical" / "2.arrow").mkdir()       # shard 2 cannot write its canonical rows: its task fails

    first = submit(tmp_path, *args)
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    jobs = {j["stage"]: j for j in read_jobs(tmp_path / "default")}
    assert list(jobs) == [f"prepare.{p}" for p in ("partition", "canonical", "popularity", "examples", "publish")]
    assert array_tasks(jobs["prepare.canonical"]["job_id"]) == {"0": "COMPLETED", "1": "COMPLETED", "2": "FAILED",
                                                                "3": "COMPLETED"}
    states = sacct_states([j["job_id"] for j in jobs.values()])
    assert [states[j["job_id"]]["state"] for j in jobs.values()][:2] == ["COMPLETED", "FAILED"]
    assert not (data / "examples.parquet").exists()

    (work / "canonical" / "2.arrow").rmdir()
    again = submit(tmp_path, *args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (f"prepare.partition: Slurm job {jobs['prepare.partition']['job_id']} is COMPLETED from an earlier "
            "submission: not submitted again") in again.stdout
    rerun = {j["stage"]: j for j in read_jobs(tmp_path / "default")}
    states = sacct_states([j["job_id"] for j in rerun.values()])
    assert all(s["state"] == "COMPLETED" for s in states.values())
    order = [states[rerun[f"prepare.{p}"]["job_id"]] for p in ("canonical", "popularity", "examples", "publish")]
    assert all(later["start"] >= earlier["end"] for earlier, later in zip(order, order[1:]))   # afterok, in order
    # the resubmitted array redid shard 2 alone: the others' tasks returned at once
    canonical_id = rerun["prepare.canonical"]["job_id"]
    logs = {k: (tmp_path / "default" / "slurm" / f"{canonical_id}_{k}" / f"{canonical_id}_{k}_0_log.out").read_text()
            for k in range(4)}
    assert [("done by an earlier job; not redone" in logs[k]) for k in range(4)] == [True, True, False, True]
    summary = json.loads((data / "summary.json").read_text())
    assert summary["skipped"].pop("a mark left by this test")["count"] == 1 and summary["shards"] == 4
    assert not work.exists() and "history window: 8 lines" in open(rerun["prepare.publish"]["out"]).read()

    memory = tmp_path / "memory"                   # the in-memory path on the same log
    prepare(compose([f"run.root={tmp_path}", *TINY, *args, "data.shard_rows=0"]).data, memory, DataReport())
    assert (pq.read_table(data / "examples.parquet").sort_by("example_id")
            .equals(pq.read_table(memory / "examples.parquet").sort_by("example_id")))
