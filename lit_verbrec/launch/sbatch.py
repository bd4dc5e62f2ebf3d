"""The sbatch script of a stage's job: resources, environment, the Python command, dependencies.

Everything here is text: `submit` hands these parameters to submitit's SlurmExecutor, and
`--dry-run` prints the script the same private submitit function writes.

    --gpus-per-node=N | --gres=gpu[:type]:N     cluster.gpu_request (ranks per node follow N)
    export SRUN_CPUS_PER_TASK=<cpus_per_task>    srun of Slurm 22.05-23.02 ignores sbatch's value
    --requeue                                    preemption may requeue the job
    --kill-on-invalid-dep=yes                    stage 2 is cancelled by Slurm when stage 1 fails,
                                                 whoever watches (or nobody)
    module load ...; setup lines; exports       cluster.modules, cluster.setup, cluster.env
    export PYTHONPATH=<snapshot>; python -P     cluster.snapshot: the code copied at submission
    <container> <python> -u -m submitit...       cluster.container, cluster.python
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

from lit_verbrec.config.schema import ClusterConfig, Config

SHORT_OPTIONS = {"A": "account", "p": "partition", "q": "qos", "t": "time", "N": "nodes", "n": "ntasks",
                 "c": "cpus-per-task", "C": "constraint", "G": "gpus", "w": "nodelist", "x": "exclude",
                 "J": "job-name", "d": "dependency", "D": "chdir", "M": "clusters", "L": "licenses",
                 "m": "distribution", "b": "begin", "a": "array", "e": "error", "o": "output", "i": "input",
                 "F": "nodefile", "S": "core-spec", "s": "oversubscribe", "H": "hold", "k": "no-kill",
                 "O": "overcommit", "Q": "quiet", "W": "wait", "I": "immediate"}
"""sbatch's short options and their long names (sbatch(1)); the last seven take no value."""
SHORT_FLAGS = set("sHkOQWI")


def stage_config(cfg: Config, stage: str) -> Config:
    """The config one stage's job runs: that stage, its resources, one DDP rank per task of the job."""
    cluster = cfg.cluster.for_stage(stage)
    return dataclasses.replace(
        cfg, stage=dataclasses.replace(cfg.stage, name=stage), cluster=cluster,
        train=dataclasses.replace(cfg.train, devices=cluster.ranks_per_node, num_nodes=cluster.nodes))


def extra_flags(lines: list[str]) -> dict:
    """["--exclusive", "--reservation=x", "-A proj", "-pgpu", "--mail-type END"] ->
    {"exclusive": True, "reservation": "x", "account": "proj", "partition": "gpu", "mail_type": "END"}
    (underscores: submitit writes them back as dashes, and an option given here replaces the same one
    set from cluster.*)."""
    flags = {}
    for line in lines:
        option = line.strip().removeprefix("#SBATCH").strip()
        if option.startswith("--"):
            key, sep, value = option[2:].replace(" ", "=", 1).partition("=")
        elif option.startswith("-") and len(option) > 1:
            letter, value = option[1], option[2:].strip().removeprefix("=").strip()
            if letter not in SHORT_OPTIONS:
                raise ValueError(f"cluster.extra_sbatch: unknown short option -{letter} in {line!r}; write the long form")
            key, sep = SHORT_OPTIONS[letter], "=" if value and letter not in SHORT_FLAGS else ""
        else:
            raise ValueError(f"cluster.extra_sbatch: {line!r} is not an sbatch option")
        flags[key.strip().replace("-", "_")] = value.strip() if sep else True
    return flags


def environment(c: ClusterConfig) -> dict:
    """Variables exported in the job (before cluster.env, which may override them)."""
    env = {"OMP_NUM_THREADS": c.cpus_per_task, "SRUN_CPUS_PER_TASK": c.cpus_per_task}
    if c.hf_home:
        env["HF_HOME"] = c.hf_home
    if c.offline:
        env |= {"HF_HUB_OFFLINE": 1, "TRANSFORMERS_OFFLINE": 1}
    return env | c.env


def python_command(c: ClusterConfig, snapshot: Path | None) -> str:
    """What runs Python in the job: [container] python [-P]. -P (Python >= 3.11): the current folder
    does not go first on sys.path, so the snapshot on PYTHONPATH is what is imported, even when the
    job starts in a checkout that holds its own lit_verbrec/."""
    python = c.python or ("python" if c.container else shlex.quote(sys.executable))
    return " ".join(part for part in (c.container, python, "-P" if snapshot else "") if part)


def submit_command(folder: Path, python: str) -> str:
    """What submitit puts after `srun` in the script: every rank unpickles and runs the job."""
    return " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder))])


def sbatch_parameters(cfg: Config, stage: str, after: str = "", snapshot: Path | None = None) -> dict:
    """submitit SlurmExecutor parameters of `stage`'s job; `after`: the job id it waits on (afterok)."""
    c = cfg.cluster.for_stage(stage)
    exports = [f"export {k}={shlex.quote(str(v))}" for k, v in environment(c).items()]
    if snapshot:
        exports.append(f"export PYTHONPATH={shlex.quote(str(snapshot))}${{PYTHONPATH:+:$PYTHONPATH}}")
    params: dict = {
        "job_name": f"{cfg.run.name}-{stage}", "time": c.time_min, "nodes": c.nodes,
        "ntasks_per_node": c.ranks_per_node, "cpus_per_task": c.cpus_per_task, "signal_delay_s": c.signal_delay_s,
        "setup": [*(f"module load {m}" for m in c.modules), *c.setup, *exports],
        # A rank that dies ends the step: its peers would otherwise wait in a collective until the time limit.
        "srun_args": ["--kill-on-bad-exit=1", *c.srun_args],
        # --requeue: the job may requeue itself (training/preemption.py) and be requeued by Slurm on preemption.
        "additional_parameters": {"requeue": True, **({"kill_on_invalid_dep": "yes"} if after else {}),
                                  **extra_flags(c.extra_sbatch)},
    }
    gpus = {}
    if c.gpus_per_node and c.gpu_request == "gres":
        gpus["gres"] = f"gpu:{c.gres_type + ':' if c.gres_type else ''}{c.gpus_per_node}"
    elif c.gpus_per_node:
        gpus["gpus_per_node"] = c.gpus_per_node
    optional = {"partition": c.partition, "account": c.account, "qos": c.qos, "constraint": c.constraint,
                "mem": f"{c.mem_gb}GB" if c.mem_gb else "", "dependency": f"afterok:{after}" if after else "", **gpus}
    return params | {k: v for k, v in optional.items() if v}


def sbatch_script(cfg: Config, stage: str, folder: Path, after: str = "", snapshot: Path | None = None) -> str:
    """The sbatch script submitit writes for `stage` (for --dry-run: no Slurm needed)."""
    # The private function SlurmExecutor writes its scripts with: the dry run prints the same text.
    from submitit.slurm.slurm import _make_sbatch_string

    python = python_command(cfg.cluster.for_stage(stage), snapshot)
    return _make_sbatch_string(command=submit_command(folder, python), folder=folder,
                               **sbatch_parameters(cfg, stage, after, snapshot))
