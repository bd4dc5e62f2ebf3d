"""`<run>/slurm/jobs.json`: every Slurm job ever submitted for a run, by submission.

    [{"stage": "verbalizer", "job_id": "123", "out": ..., "err": ..., "submitted": <unix time>,
      "submission": 0},
     {"stage": "verbalizer", "job_id": "123", ..., "submission": 1, "reused": "COMPLETED"},
     {"stage": "reasoner",   "job_id": "130", ..., "submission": 1}]

A rerun of `tools/submit.py` appends a submission and never rewrites an earlier one. A stage
whose last job COMPLETED is not submitted again (its record is repeated with `reused`), nor is
one whose last job is still queued or running (the next stage waits on that job instead).
`read_jobs` is the latest submission: what `submit.py status` and the watcher follow.
"""

from __future__ import annotations

import json
from pathlib import Path

from lit_verbrec.data.files import atomic_write

LIVE = ("PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "CONFIGURING", "RESIZING")
"""States of a job that has not ended: a rerun waits on it instead of submitting the stage again."""


def jobs_file(run_dir: Path) -> Path:
    return run_dir / "slurm" / "jobs.json"


def job_history(run_dir: Path) -> list[dict]:
    """Every record of every submission ([] before the first)."""
    path = jobs_file(run_dir)
    return [{"submission": 0, **j} for j in json.loads(path.read_text())] if path.is_file() else []


def read_jobs(run_dir: Path) -> list[dict]:
    """The records of the latest submission, one per stage, in stage order."""
    history = job_history(run_dir)
    if not history:
        raise FileNotFoundError(f"{jobs_file(run_dir)} does not exist: no Slurm jobs were submitted for run folder {run_dir}")
    latest = max(j["submission"] for j in history)
    return [j for j in history if j["submission"] == latest]


def append_submission(run_dir: Path, jobs: list[dict]) -> list[dict]:
    """Record `jobs` as the next submission after the earlier ones; returns them with its number."""
    history = job_history(run_dir)
    number = max((j["submission"] for j in history), default=-1) + 1
    jobs = [{**j, "submission": number} for j in jobs]
    path = jobs_file(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(history + jobs, indent=2) + "\n"))
    return jobs


def previous_jobs(run_dir: Path) -> dict[str, dict]:
    """stage -> the latest record of that stage in any submission."""
    return {j["stage"]: j for j in job_history(run_dir)}


def plan_stages(stages: list[str], previous: dict[str, dict], states: dict[str, str]) -> list[tuple[str, dict | None]]:
    """For each stage, in order: ("reuse", its earlier record) when that job COMPLETED or has not ended,
    else ("submit", None); every stage after a submitted one is submitted too (it reads that stage's
    new output). `states`: job id -> its Slurm state."""
    plan: list[tuple[str, dict | None]] = []
    for stage in stages:
        earlier = previous.get(stage)
        state = states.get(earlier["job_id"], "") if earlier else ""
        fresh = any(action == "submit" for action, _ in plan)
        plan.append(("reuse", earlier) if not fresh and (state == "COMPLETED" or state in LIVE) else ("submit", None))
    return plan
