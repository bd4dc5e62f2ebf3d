"""Follow a run's Slurm jobs: their states from `sacct`, a status table, and the watch loop.

States come from `sacct` (the accounting database), not `squeue`, because a finished job
leaves the queue at once and its end state (COMPLETED, FAILED, ...) is only in accounting.
On a cluster with accounting disabled (sacct fails) they come from `scontrol show job`,
which knows a finished job for MinJobAge (300 s by default); a job neither knows is UNKNOWN,
an end state. If a stage ends in any state but COMPLETED, the stages after it are cancelled
here; Slurm cancels them too (--kill-on-invalid-dep=yes, launch/sbatch.py), so a run nobody
watches (--detach, Ctrl-C) does not leave them PENDING (DependencyNeverSatisfied) forever.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from lit_verbrec.launch.jobs import read_jobs

FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
         "PREEMPTED", "UNKNOWN")
"""End states. A job preempted with --requeue shows PENDING again once Slurm requeued it; PREEMPTED
stays only on a job that is not requeued (PreemptMode=CANCEL, or no --requeue)."""


def sacct_states(job_ids: list[str]) -> dict[str, dict]:
    """job id -> {state, start, end, exit_code} of each job's latest run ("CANCELLED by 0" -> CANCELLED);
    of a job array, its tasks' together (`combined`); a job sacct does not know yet (just submitted) is
    PENDING. CalledProcessError if sacct fails."""
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o",
                          "JobID,JobIDRaw,State,Start,End,ExitCode"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    states = {j: {"state": "PENDING", "start": "Unknown", "end": "Unknown", "exit_code": ""} for j in job_ids}
    tasks: dict[str, list[dict]] = {}
    for line in out.splitlines():
        job_id, raw, state, start, end, exit_code = line.split("|")
        record = {"state": state.split()[0] if state else "PENDING", "start": start, "end": end, "exit_code": exit_code}
        array, task, _ = job_id.partition("_")        # "123_4": task 4 of array 123 (its raw id is another)
        if task and array in states:
            tasks.setdefault(array, []).append(record)
        elif raw in states:
            states[raw] = record
    return states | {array: combined(records) for array, records in tasks.items()}


def combined(tasks: list[dict]) -> dict:
    """The state of a job array from its tasks': live while any task is, else COMPLETED only when every
    task is (otherwise the first other end state, e.g. FAILED, with that task's exit code)."""
    live = [t for t in tasks if t["state"] not in FINAL]
    failed = [t for t in tasks if t["state"] in FINAL and t["state"] != "COMPLETED"]
    if live:
        state = "RUNNING" if any(t["state"] == "RUNNING" for t in live) else live[0]["state"]
    else:
        state = failed[0]["state"] if failed else "COMPLETED"
    starts = [t["start"] for t in tasks if t["start"] not in ("Unknown", "None", "")]
    ends = [t["end"] for t in tasks if t["end"] not in ("Unknown", "None", "")]
    return {"state": state, "start": min(starts, default="Unknown"),
            "end": "Unknown" if live or not ends else max(ends),
            "exit_code": (failed or tasks)[0]["exit_code"]}


def scontrol_states(job_ids: list[str]) -> dict[str, dict]:
    """The same from `scontrol show job` (no accounting needed); a job it no longer knows is UNKNOWN."""
    states = {}
    for job_id in job_ids:
        out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=60)
        records = []
        for line in out.stdout.splitlines() if out.returncode == 0 else []:   # a job array: a line per task
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            records.append({"state": fields.get("JobState", "UNKNOWN"), "start": fields.get("StartTime", "Unknown"),
                            "end": fields.get("EndTime", "Unknown"), "exit_code": fields.get("ExitCode", "")})
        states[job_id] = (combined(records) if len(records) > 1 else records[0] if records
                          else {"state": "UNKNOWN", "start": "Unknown", "end": "Unknown", "exit_code": ""})
    return states


_warned: list[str] = []


def job_states(job_ids: list[str]) -> dict[str, dict]:
    """sacct_states, or scontrol_states where sacct fails (accounting disabled or down)."""
    if not job_ids:
        return {}
    try:
        states = sacct_states(job_ids)
    except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired) as err:
        if not _warned:
            reason = (getattr(err, "stderr", "") or str(err)).strip().splitlines()
            print(f"sacct failed ({reason[0] if reason else err}); job states from scontrol, which forgets "
                  "finished jobs after MinJobAge", file=sys.stderr, flush=True)
            _warned.append("sacct")
        return scontrol_states(job_ids)
    # The run Slurm preempted may be requeued already: the controller's view wins over the record's.
    preempted = [j for j, s in states.items() if s["state"] == "PREEMPTED"]
    live = {j: s for j, s in scontrol_states(preempted).items() if s["state"] not in ("PREEMPTED", "UNKNOWN")}
    return states | live


def pending_reasons(job_ids: list[str]) -> dict[str, str]:
    """job id -> why Slurm keeps it PENDING (squeue's reason: Dependency, Resources, PartitionConfig, ...)."""
    out = subprocess.run(["squeue", "-h", "-t", "PENDING", "-j", ",".join(job_ids), "-o", "%i|%r"],
                         check=False, capture_output=True, text=True, timeout=60).stdout
    # a pending job array is listed as "123_[0-7]": its reason is the array's
    return {line.split("|", 1)[0].split("_")[0]: line.split("|", 1)[1] for line in out.splitlines() if "|" in line}


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], check=False, timeout=60)


def status_table(jobs: list[dict], states: dict[str, dict]) -> str:
    rows = ["| stage | job | state | start | end | log |", "|---|---|---|---|---|---|"]
    for job in jobs:
        s = states[job["job_id"]]
        rows.append(f"| {job['stage']} | {job['job_id']} | {s['state']} | {s['start']} | {s['end']} | {job['err']} |")
    return "\n".join(rows)


def failure(jobs: list[dict], states: dict[str, dict]) -> dict | None:
    """The first stage that ended in a state other than COMPLETED, or None."""
    return next((j for j in jobs if states[j["job_id"]]["state"] in FINAL
                 and states[j["job_id"]]["state"] != "COMPLETED"), None)


def failure_message(job: dict, state: dict) -> str:
    return (f"stage {job['stage']} (Slurm job {job['job_id']}) ended {state['state']} (exit code {state['exit_code']}); "
            f"its log: {job['err']} (stdout: {job['out']})")


def status(run_dir: Path) -> int:
    """Print the run's job table; 1 if a stage failed (naming it and its log), else 0."""
    jobs = read_jobs(run_dir)
    states = job_states([j["job_id"] for j in jobs])
    print(status_table(jobs, states))
    failed = failure(jobs, states)
    if failed:
        print(failure_message(failed, states[failed["job_id"]]), file=sys.stderr)
        return 1
    return 0


def watch(run_dir: Path, poll_s: float = 5.0, timeout_s: float = 0.0) -> int:
    """Follow the run's jobs until all have ended: 0 if every stage COMPLETED, else 1 (a failed
    stage is named with its log, and the stages after it are cancelled). timeout_s 0: no limit."""
    jobs = read_jobs(run_dir)
    ids = [j["job_id"] for j in jobs]
    seen: dict[str, str] = {}
    start = time.monotonic()
    while True:
        states = job_states(ids)
        reasons = pending_reasons(ids) if any(states[i]["state"] == "PENDING" for i in ids) else {}
        for job in jobs:
            state = states[job["job_id"]]["state"]
            if state == "PENDING" and reasons.get(job["job_id"], "None") != "None":   # a job that cannot start says why
                state = f"PENDING ({reasons[job['job_id']]})"
            if seen.get(job["job_id"]) != state:
                print(f"[{time.strftime('%H:%M:%S')}] {job['stage']} (job {job['job_id']}): {state}", flush=True)
                seen[job["job_id"]] = state
        failed = failure(jobs, states)
        if failed:
            later = [j["job_id"] for j in jobs[jobs.index(failed) + 1:] if states[j["job_id"]]["state"] not in FINAL]
            cancel(later)
            print(failure_message(failed, states[failed["job_id"]]), file=sys.stderr)
            if later:
                print(f"cancelled the stages after it: jobs {', '.join(later)}", file=sys.stderr)
            return 1
        if all(states[i]["state"] == "COMPLETED" for i in ids):
            return 0
        if timeout_s and time.monotonic() - start > timeout_s:
            print(f"stopped watching after {timeout_s:.0f} s; the jobs go on (tools/submit.py status run={run_dir})",
                  file=sys.stderr)
            return 2
        time.sleep(poll_s)
