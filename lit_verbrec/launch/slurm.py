"""cluster=slurm: every stage is one Slurm job submitted with submitit; stage 2 waits on stage 1.

    python tools/submit.py stage=both size=32b            # two jobs, the second `afterok` the first

Each job runs `srun` with `cluster.tasks_per_node` ranks on each of `cluster.nodes` nodes;
every rank unpickles the same StageJob, and Lightning's SLURMEnvironment reads its rank and
the rendezvous (MASTER_ADDR = first node, MASTER_PORT from the job id) from Slurm's variables.
Stage 2 reads stage 1's adapter from the shared run folder. Preemption and the time limit are
handled inside the job (training/preemption.py): checkpoint, `scontrol requeue`, resume.

    <run>/config.yaml          the resolved config both jobs run
    <run>/slurm/jobs.json      stage -> job id and log files (what `submit.py status` reads)
    <run>/slurm/<job id>/      submitit's folder: <id>_submission.sh, pickles, <id>_<rank>_log.{out,err}
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

from lit_verbrec.config.compose import save_config
from lit_verbrec.config.schema import Config
from lit_verbrec.launch.local import run_stage
from lit_verbrec.training.run import RunPaths


def stage_config(cfg: Config, stage: str) -> Config:
    """The config one stage's job runs: that stage, with one DDP rank per task of the job."""
    return dataclasses.replace(
        cfg, stage=dataclasses.replace(cfg.stage, name=stage),
        train=dataclasses.replace(cfg.train, devices=cfg.cluster.ranks_per_node, num_nodes=cfg.cluster.nodes))


class StageJob:
    """What every rank of a stage's job runs (pickled by submitit into the job folder)."""

    def __init__(self, cfg: Config, stage: str) -> None:
        self.cfg, self.stage = stage_config(cfg, stage), stage

    def __call__(self) -> dict:
        return run_stage(self.cfg, self.stage)


def _extra_flags(lines: list[str]) -> dict:
    """["--exclusive", "--reservation=x"] -> {"exclusive": True, "reservation": "x"}."""
    flags = {}
    for line in lines:
        key, sep, value = line.strip().removeprefix("#SBATCH").strip().lstrip("-").partition("=")
        flags[key] = value if sep else True
    return flags


def sbatch_parameters(cfg: Config, stage: str, after: str = "") -> dict:
    """submitit SlurmExecutor parameters of `stage`'s job; `after`: the job id it waits on (afterok)."""
    c = cfg.cluster
    exports = [f"export {k}={shlex.quote(str(v))}" for k, v in
               {"OMP_NUM_THREADS": c.cpus_per_task, **c.env}.items()]
    params: dict = {
        "job_name": f"{cfg.run.name}-{stage}", "time": c.time_min, "nodes": c.nodes,
        "ntasks_per_node": c.ranks_per_node, "cpus_per_task": c.cpus_per_task,
        "signal_delay_s": c.signal_delay_s, "setup": [*c.setup, *exports],
        # A rank that dies ends the step: its peers would otherwise wait in a collective until the time limit.
        "srun_args": ["--kill-on-bad-exit=1"],
        # --requeue: the job may requeue itself (preemption.py) and be requeued by the admin.
        "additional_parameters": {"requeue": True, **_extra_flags(c.extra_sbatch)},
    }
    optional = {"partition": c.partition, "account": c.account, "qos": c.qos, "constraint": c.constraint,
                "gpus_per_node": c.gpus_per_node, "mem": f"{c.mem_gb}GB" if c.mem_gb else "",
                "dependency": f"afterok:{after}" if after else ""}
    return params | {k: v for k, v in optional.items() if v}


def job_folder(run_dir: Path) -> Path:
    return run_dir / "slurm" / "%j"


def submit_command(folder: Path) -> str:
    """What submitit puts after `srun` in the script: every rank unpickles and runs the job."""
    return " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])


def sbatch_script(cfg: Config, stage: str, after: str = "") -> str:
    """The sbatch script submitit would write for `stage` (for --dry-run: no Slurm needed)."""
    # The private function SlurmExecutor writes its scripts with: the dry run prints the same text.
    from submitit.slurm.slurm import _make_sbatch_string

    folder = job_folder(RunPaths.of(cfg).run).resolve()
    return _make_sbatch_string(command=submit_command(folder), folder=folder, **sbatch_parameters(cfg, stage, after))


def dry_run(cfg: Config) -> str:
    """The scripts of every stage, as text; later stages wait on a placeholder id."""
    parts, after = [], ""
    for stage in cfg.stage.stages:
        parts.append(f"# ---- {stage}: sbatch script ----\n{sbatch_script(cfg, stage, after)}")
        after = f"<{stage} job id>"
    return "\n".join(parts)


def submit(cfg: Config) -> list[dict]:
    """Submit the configured stages as dependent jobs; record and return [{stage, job_id, out, err}]."""
    import submitit

    run_dir = RunPaths.of(cfg).run.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir)
    jobs, after = [], ""
    for stage in cfg.stage.stages:
        executor = submitit.SlurmExecutor(folder=job_folder(run_dir))
        executor.update_parameters(**sbatch_parameters(cfg, stage, after))
        job = executor.submit(StageJob(cfg, stage))
        after = job.job_id
        jobs.append({"stage": stage, "job_id": job.job_id, "out": str(job.paths.stdout).replace("%t", "0"),
                     "err": str(job.paths.stderr).replace("%t", "0"), "submitted": time.time()})
    record_jobs(run_dir, jobs)
    return jobs


def jobs_file(run_dir: Path) -> Path:
    return run_dir / "slurm" / "jobs.json"


def record_jobs(run_dir: Path, jobs: list[dict]) -> None:
    path = jobs_file(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jobs, indent=2) + "\n")


def read_jobs(run_dir: Path) -> list[dict]:
    path = jobs_file(run_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: no Slurm jobs were submitted for run folder {run_dir}")
    return json.loads(path.read_text())
