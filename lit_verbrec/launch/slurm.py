"""cluster=slurm: every stage is one Slurm job submitted with submitit; stage 2 waits on stage 1.

    python tools/submit.py stage=both size=32b            # two jobs, the second `afterok` the first

The preparation of own logs in shards is five jobs, two of them job arrays (launch/prepare_jobs.py).

Each job runs `srun` with `cluster.tasks_per_node` ranks on each of `cluster.nodes` nodes
(per stage: `cluster.verbalizer.*`, `cluster.reasoner.*`); every rank unpickles the same
StageJob, and Lightning's SLURMEnvironment reads its rank and the rendezvous (MASTER_ADDR =
first node, MASTER_PORT from the job id) from Slurm's variables. Stage 2 reads stage 1's
adapter from the shared run folder. Preemption and the time limit are handled inside the job
(training/preemption.py): checkpoint, requeue, resume. The script: launch/sbatch.py.

A rerun of the same command skips a stage whose last job COMPLETED and waits on one still
queued or running, instead of submitting it twice (launch/jobs.py keeps every submission).

    <run>/config.yaml          the resolved config the jobs run
    <run>/slurm/jobs.json      every submission: stage -> job id and log files (`submit.py status`)
    <run>/slurm/code/<hash>/   the lit_verbrec package the jobs import (cluster.snapshot)
    <run>/slurm/<job id>/      submitit's folder: <id>_submission.sh, pickles, <id>_<rank>_log.{out,err}
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import lit_verbrec
from lit_verbrec.config.compose import save_config
from lit_verbrec.config.schema import Config
from lit_verbrec.launch.jobs import append_submission, plan_stages, previous_jobs, read_jobs
from lit_verbrec.launch.local import run_stage
from lit_verbrec.launch.prepare_jobs import PreparePass, array_size, expand_stages
from lit_verbrec.launch.sbatch import python_command, sbatch_parameters, sbatch_script, stage_config
from lit_verbrec.training import preemption
from lit_verbrec.training.run import RunPaths, data_folder

__all__ = ["StageJob", "dry_run", "read_jobs", "snapshot", "submit"]


class StageJob:
    """What every rank of a stage's job runs (pickled by submitit into the job folder)."""

    def __init__(self, cfg: Config, stage: str) -> None:
        self.cfg, self.stage = stage_config(cfg, stage), stage

    def __call__(self) -> dict:
        # First of all: a preemption signal from now on is recorded, not acted on (submitit's handler
        # would ignore SIGTERM and fail the job on a late SIGUSR2); training/preemption.py acts on it.
        preemption.install()
        restarts, cap = preemption.restart_count(), self.cfg.cluster.max_requeues
        if restarts > cap:
            raise RuntimeError(f"Slurm requeued this job {restarts} times, more than cluster.max_requeues={cap}")
        print(f"stage {self.stage}: code {Path(lit_verbrec.__file__).parent}, attempt {restarts + 1}",
              file=sys.stderr, flush=True)
        return run_stage(self.cfg, self.stage)


def job_folder(run_dir: Path) -> Path:
    return run_dir / "slurm" / "%j"


def snapshot_folder(run_dir: Path) -> Path:
    """<run>/slurm/code/<hash of the package's files>: the same code gets the same folder."""
    package = Path(lit_verbrec.__file__).parent
    digest = hashlib.sha256()
    for path in _package_files(package):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    return run_dir / "slurm" / "code" / digest.hexdigest()[:12]


def snapshot(run_dir: Path) -> Path:
    """Copy the lit_verbrec package the submitting process imports to `snapshot_folder` (once);
    the jobs put that folder first on PYTHONPATH."""
    folder = snapshot_folder(run_dir)
    if not (folder / "lit_verbrec" / "__init__.py").is_file():
        package = Path(lit_verbrec.__file__).parent
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        for path in _package_files(package):
            target = tmp / "lit_verbrec" / path.relative_to(package)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return folder


def _package_files(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def dry_run(cfg: Config) -> str:
    """The scripts of every job, as text; later jobs wait on a placeholder id."""
    run_dir = RunPaths.of(cfg).run.resolve()
    code = snapshot_folder(run_dir) if cfg.cluster.snapshot else None
    parts, after = [], ""
    for stage in expand_stages(cfg):
        script = sbatch_script(cfg, stage, job_folder(run_dir), after, code)
        tasks = array_size(cfg, stage) if stage.startswith("prepare.") else 0
        array = f" (a job array of {tasks} tasks, --array=0-{tasks - 1}: one per shard)" if tasks else ""
        parts.append(f"# ---- {stage}: sbatch script{array} ----\n{script}")
        after = f"<{stage} job id>"
    return "\n".join(parts)


def _submit_job(executor, cfg: Config, stage: str) -> tuple[str, object]:
    """Submit one stage's job (a prepare pass's: its job, or its array of one task per shard);
    (the job id dependencies name, a submitit job for the log paths)."""
    if not stage.startswith("prepare."):
        job = executor.submit(StageJob(cfg, stage))
        return job.job_id, job
    work = PreparePass(stage_config(cfg, "prepare"), stage, data_folder(cfg, RunPaths.of(cfg)).resolve())
    tasks = array_size(cfg, stage)
    if not tasks:
        job = executor.submit(work)
        return job.job_id, job
    jobs = executor.map_array(work, range(tasks))
    return jobs[0].job_id.split("_")[0], jobs[0]


def submit(cfg: Config, states: dict[str, str] | None = None) -> list[dict]:
    """Submit the configured stages as dependent jobs, skipping those an earlier submission completed or
    still runs; record and return this submission's [{stage, job_id, out, err, ...}].
    `states`: job id -> Slurm state of the earlier jobs (read with sacct when not given)."""
    import submitit

    from lit_verbrec.launch.slurm_watch import job_states

    run_dir = RunPaths.of(cfg).run.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir)
    previous = previous_jobs(run_dir)
    if states is None:
        states = {i: s["state"] for i, s in job_states([j["job_id"] for j in previous.values()]).items()}
    code = snapshot(run_dir) if cfg.cluster.snapshot else None
    jobs, after = [], ""
    stages = expand_stages(cfg)
    for stage, (action, earlier) in zip(stages, plan_stages(stages, previous, states), strict=True):
        if action == "reuse":
            state = states[earlier["job_id"]]
            jobs.append({**earlier, "reused": state})
            after = "" if state == "COMPLETED" else earlier["job_id"]
            continue
        executor = submitit.SlurmExecutor(folder=job_folder(run_dir), python=python_command(cfg.cluster.for_stage(stage),
                                                                                           code))
        executor.update_parameters(**sbatch_parameters(cfg, stage, after, code))
        after, job = _submit_job(executor, cfg, stage)
        jobs.append({"stage": stage, "job_id": after, "out": str(job.paths.stdout).replace("%t", "0"),
                     "err": str(job.paths.stderr).replace("%t", "0"), "submitted": time.time(),
                     **({"code": str(code)} if code else {})})
    return append_submission(run_dir, jobs)
