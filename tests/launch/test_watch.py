"""The watcher and the jobs record without a cluster: fake `sacct` / `scontrol` / `squeue` on PATH
(accounting disabled, a preempted job), and the plan of a rerun."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from lit_verbrec.launch import slurm_watch
from lit_verbrec.launch.jobs import (
    append_submission,
    job_history,
    plan_stages,
    previous_jobs,
    read_jobs,
)

JOBS = [{"stage": "verbalizer", "job_id": "11", "out": "o1", "err": "e1"},
        {"stage": "reasoner", "job_id": "12", "out": "o2", "err": "e2"}]


def fake_slurm(folder: Path, sacct: str, scontrol: dict[str, str]) -> None:
    """`sacct` runs the shell snippet `sacct`; `scontrol -o show job <id>` prints scontrol[id] (exit 1 if absent);
    `scancel` appends its arguments to cancelled.txt; `squeue` prints nothing."""
    scripts = {
        "sacct": f"#!/bin/bash\n{sacct}\n",
        "scontrol": "#!/bin/bash\ncase $4 in\n" + "".join(f"  {i}) echo '{line}';;\n" for i, line in scontrol.items())
                    + "  *) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1;;\nesac\n",
        "scancel": f"#!/bin/bash\necho \"$@\" >> {folder}/cancelled.txt\n",
        "squeue": "#!/bin/bash\n",
    }
    for name, text in scripts.items():
        (folder / name).write_text(text)
        (folder / name).chmod(stat.S_IRWXU)


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    append_submission(tmp_path / "run", JOBS)
    return tmp_path / "run"


def test_sacct_disabled_the_watcher_reads_scontrol_and_names_the_failure(run_dir, capsys):
    fake_slurm(run_dir.parent / "bin", "echo 'sacct: error: Slurm accounting storage is disabled' >&2; exit 1",
               {"11": "JobId=11 JobName=demo-verbalizer JobState=FAILED Reason=NonZeroExitCode StartTime=2026-01-01T10:00:00 "
                      "EndTime=2026-01-01T10:05:00 ExitCode=1:0",
                "12": "JobId=12 JobName=demo-reasoner JobState=PENDING Reason=DependencyNeverSatisfied StartTime=Unknown "
                      "EndTime=Unknown ExitCode=0:0"})
    assert slurm_watch.watch(run_dir, poll_s=0.01, timeout_s=30) == 1
    err = capsys.readouterr().err
    assert "accounting storage is disabled" in err and "stage verbalizer (Slurm job 11) ended FAILED (exit code 1:0)" in err
    assert (run_dir.parent / "bin" / "cancelled.txt").read_text().split() == ["12"]


def test_preempted_and_not_requeued_is_an_end_state(run_dir, capsys):
    fake_slurm(run_dir.parent / "bin", "echo '11|11|PREEMPTED|2026-01-01T10:00:00|2026-01-01T10:05:00|0:15'; "
                                       "echo '12|12|PENDING|Unknown|Unknown|0:0'", {})
    assert slurm_watch.watch(run_dir, poll_s=0.01, timeout_s=30) == 1
    assert "ended PREEMPTED" in capsys.readouterr().err


def test_preempted_then_requeued_is_followed_not_failed(run_dir):
    fake_slurm(run_dir.parent / "bin", "echo '11|11|PREEMPTED|2026-01-01T10:00:00|2026-01-01T10:05:00|0:15'",
               {"11": "JobId=11 JobState=PENDING Reason=BeginTime StartTime=Unknown EndTime=Unknown ExitCode=0:0"})
    assert slurm_watch.job_states(["11"])["11"]["state"] == "PENDING"


def test_a_job_array_is_live_while_a_task_runs_and_fails_with_its_first_failed_task(run_dir):
    # sacct lists an array's tasks as <array>_<task> with raw ids of their own (the last task's is the array's)
    tasks = ["20_0|21|COMPLETED|2026-01-01T10:00:00|2026-01-01T10:01:00|0:0",
             "20_1|22|{}|2026-01-01T10:00:05|{}|{}",
             "20_2|20|COMPLETED|2026-01-01T10:00:09|2026-01-01T10:02:00|0:0"]
    for second, end, code, state in (("RUNNING", "Unknown", "0:0", "RUNNING"),
                                     ("FAILED", "2026-01-01T10:03:00", "1:0", "FAILED"),
                                     ("COMPLETED", "2026-01-01T10:03:00", "0:0", "COMPLETED")):
        lines = [tasks[0], tasks[1].format(second, end, code), tasks[2]]
        fake_slurm(run_dir.parent / "bin", "; ".join(f"echo '{line}'" for line in lines), {})
        got = slurm_watch.job_states(["20"])["20"]
        assert got["state"] == state and got["start"] == "2026-01-01T10:00:00"
        assert got["end"] == ("Unknown" if state == "RUNNING" else "2026-01-01T10:03:00")
        assert got["exit_code"] == ("1:0" if state == "FAILED" else "0:0")
    # without accounting, scontrol prints a line per task
    fake_slurm(run_dir.parent / "bin", "exit 1", {"20": "JobId=22 JobState=PENDING StartTime=Unknown EndTime=Unknown ExitCode=0:0\n"
                                                        "JobId=21 JobState=COMPLETED StartTime=a EndTime=b ExitCode=0:0"})
    assert slurm_watch.scontrol_states(["20"])["20"]["state"] == "PENDING"


def test_a_rerun_reuses_completed_and_live_stages_and_keeps_the_history(tmp_path):
    run = tmp_path / "run"
    append_submission(run, JOBS)
    previous = previous_jobs(run)
    assert [a for a, _ in plan_stages(["verbalizer", "reasoner"], previous, {"11": "COMPLETED", "12": "CANCELLED"})] == \
        ["reuse", "submit"]
    assert [a for a, _ in plan_stages(["verbalizer", "reasoner"], previous, {"11": "RUNNING", "12": "PENDING"})] == \
        ["reuse", "reuse"]
    assert [a for a, _ in plan_stages(["verbalizer", "reasoner"], previous, {"11": "FAILED", "12": "COMPLETED"})] == \
        ["submit", "submit"]   # a new stage 1 means a new stage 2
    append_submission(run, [{**JOBS[0], "reused": "COMPLETED"}, {**JOBS[1], "job_id": "13"}])
    assert [j["job_id"] for j in read_jobs(run)] == ["11", "13"]
    assert [(j["submission"], j["job_id"]) for j in job_history(run)] == [(0, "11"), (0, "12"), (1, "11"), (1, "13")]
    assert len(json.loads((run / "slurm" / "jobs.json").read_text())) == 4
