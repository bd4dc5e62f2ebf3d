"""The cluster section of the configuration: where and how the stages run (cluster=local|slurm).

Resources apply to both stages unless `cluster.verbalizer.*` / `cluster.reasoner.*` override
them for one stage (stage 2 often needs fewer GPUs or less time than stage 1); the preparation job
(stage=prepare|all) has its own, CPU-only by default, under `cluster.prepare.*`:

    cluster.gpus_per_node=8 cluster.reasoner.gpus_per_node=4 cluster.reasoner.time_min=240
    cluster.prepare.cpus_per_task=32 cluster.prepare.mem_gb=256
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lit_verbrec.config.checks import choice, require

GPU_MODELS = ("", "h100", "h200", "a100")
"""cluster.gpu choices: the GPUs lit_verbrec.launch.plan.GPUS describes (a test keeps the two equal)."""

STAGES = ("prepare", "verbalizer", "reasoner")
"""The jobs a run may submit; each has its own resources under cluster.<stage>."""
INHERIT = -1
"""A per-stage number left at this value takes the cluster-wide one."""


@dataclass
class StageResources:
    time_min: int = INHERIT
    """Time limit of this stage's job, minutes; -1: cluster.time_min."""
    nodes: int = INHERIT
    """Nodes of this stage's job; -1: cluster.nodes."""
    gpus_per_node: int = INHERIT
    """GPUs per node of this stage's job (0: CPU only); -1: cluster.gpus_per_node."""
    tasks_per_node: int = INHERIT
    """Ranks per node of this stage's job (0: one per GPU); -1: cluster.tasks_per_node."""
    cpus_per_task: int = INHERIT
    """CPU cores per rank of this stage's job; -1: cluster.cpus_per_task."""
    mem_gb: int = INHERIT
    """Memory per node of this stage's job in GB (0: the cluster default); -1: cluster.mem_gb."""
    partition: str = ""
    """Partition of this stage's job; empty: cluster.partition."""
    constraint: str = ""
    """Node feature constraint of this stage's job; empty: cluster.constraint."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.type == "int":
                require(getattr(self, f.name) >= INHERIT, f"cluster.<stage>.{f.name}", "must be >= -1 (-1: inherit)")

    def overrides(self) -> dict:
        """The fields this stage sets (everything not left to inherit)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) not in (INHERIT, "")}


@dataclass
class ClusterConfig:
    kind: str = "local"
    """local (stages one after another on this machine) or slurm (dependent jobs via submitit)."""
    partition: str = ""
    """slurm: partition; empty: the cluster default."""
    account: str = ""
    """slurm: account to charge; empty: none."""
    qos: str = ""
    """slurm: quality of service; empty: none."""
    time_min: int = 1440
    """slurm: time limit per stage job, minutes."""
    nodes: int = 1
    """slurm: nodes per stage job."""
    gpus_per_node: int = 8
    """slurm: GPUs per node (0: a CPU-only job)."""
    gpu_request: str = "gpus"
    """slurm: how GPUs are asked for: gpus (--gpus-per-node=N) or gres (--gres=gpu:N, for clusters that
    schedule GPUs as generic resources only). The ranks per node follow gpus_per_node either way."""
    gres_type: str = ""
    """slurm, gpu_request=gres: GPU type in --gres=gpu:<type>:N, e.g. a100; empty: any type."""
    tasks_per_node: int = 0
    """slurm: ranks per node, launched by srun (each drives one GPU); 0: gpus_per_node, or 1 without GPUs."""
    cpus_per_task: int = 8
    """slurm: CPU cores per rank (also exported as SRUN_CPUS_PER_TASK: srun of Slurm 22.05-23.02 does not
    inherit sbatch's --cpus-per-task and would pin each rank to one core)."""
    mem_gb: int = 0
    """slurm: memory per node in GB; 0: the cluster default."""
    constraint: str = ""
    """slurm: node feature constraint, e.g. h100; empty: none."""
    gpu: str = ""
    """slurm: the nodes' GPU model (h100, h200, a100) for a memory estimate before submitting: a stage
    whose estimate exceeds the GPU even before any KV cache is not submitted (launch/plan.py); empty: no check."""
    extra_sbatch: list[str] = field(default_factory=list)
    """slurm: extra sbatch options, long or short: --exclusive, --reservation=x, -A proj, --mail-type END."""
    setup: list[str] = field(default_factory=list)
    """slurm: shell lines run before the job, after the module loads, e.g. source /shared/venv/bin/activate."""
    modules: list[str] = field(default_factory=list)
    """slurm: environment modules loaded before the job (`module load <name>` each), e.g. cuda/12.4."""
    python: str = ""
    """slurm: the command that runs Python in the job; empty: the interpreter running submit.py, or
    `python` inside cluster.container."""
    container: str = ""
    """slurm: a command that runs the job's Python in a container, put before it, e.g.
    `apptainer exec --nv --bind /shared /shared/lit_verbrec.sif`; empty: no container."""
    srun_args: list[str] = field(default_factory=list)
    """slurm: extra srun options, e.g. --container-image=/shared/lit_verbrec.sqsh (pyxis)."""
    snapshot: bool = True
    """slurm: the jobs run a copy of the lit_verbrec package taken at submission (<run>/slurm/code/<time>),
    so edits made while a job waits in the queue, or between requeues, do not change what it runs."""
    hf_home: str = ""
    """slurm: HF_HOME of the jobs, a shared folder holding the pre-downloaded models (checked at submission
    when cluster.offline); empty: the submitting shell's HF_HOME, if any."""
    offline: bool = False
    """slurm: the compute nodes have no internet: HF_HUB_OFFLINE=1 in the jobs, and submission fails unless
    size.model and size.tokenizer are local folders or already in cluster.hf_home."""
    env: dict[str, str] = field(default_factory=lambda: {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "NCCL_DEBUG": "WARN"})
    """slurm: environment variables exported in the job (NCCL and rendezvous settings; MASTER_ADDR and
    MASTER_PORT come from Lightning's SLURMEnvironment: the first node of the job, a port from the job id)."""
    signal_delay_s: int = 300
    """slurm: Slurm sends SIGUSR2 this many seconds before the time limit; the stage then checkpoints at the
    next step boundary and requeues itself. Leave room for one training step plus a checkpoint write."""
    max_requeues: int = 20
    """slurm: a stage's job is requeued at most this many times (time limits and preemptions together);
    past it, a stop checkpoints and the job fails instead (0: never requeue)."""
    verbalizer: StageResources = field(default_factory=StageResources)
    """slurm: stage 1's own resources, where they differ from the cluster-wide ones."""
    reasoner: StageResources = field(default_factory=StageResources)
    """slurm: stage 2's own resources, where they differ from the cluster-wide ones."""
    prepare: StageResources = field(default_factory=lambda: StageResources(nodes=1, gpus_per_node=0, tasks_per_node=1))
    """slurm: the resources of the preparation job (stage=prepare|all): one task on one node, no GPU by
    default; its time, cores, memory and partition are the cluster-wide ones unless set here."""

    @property
    def ranks_per_node(self) -> int:
        """tasks_per_node, or its default: one rank per GPU, one rank on a CPU-only node."""
        return self.tasks_per_node or max(1, self.gpus_per_node)

    def for_stage(self, stage: str) -> ClusterConfig:
        """The resources of `stage`'s job: the cluster-wide ones with that stage's overrides applied.
        A pass of a sharded preparation ("prepare.examples") has the preparation's."""
        own = getattr(self, stage.partition(".")[0])
        return dataclasses.replace(self, **own.overrides(), **dict.fromkeys(STAGES, StageResources()))

    def __post_init__(self) -> None:
        choice(self.kind, "cluster.kind", ("local", "slurm"))
        choice(self.gpu, "cluster.gpu", GPU_MODELS)
        choice(self.gpu_request, "cluster.gpu_request", ("gpus", "gres"))
        for name in ("time_min", "nodes", "cpus_per_task", "signal_delay_s"):
            require(getattr(self, name) > 0, f"cluster.{name}", "must be positive")
        for name in ("gpus_per_node", "tasks_per_node", "mem_gb", "max_requeues"):
            require(getattr(self, name) >= 0, f"cluster.{name}", "must be >= 0")
        require(not self.gpus_per_node or self.ranks_per_node <= self.gpus_per_node, "cluster.tasks_per_node",
                f"must be <= gpus_per_node ({self.gpus_per_node}): each rank drives one GPU")
        for line in self.extra_sbatch:
            require(line.strip().removeprefix("#SBATCH").strip().startswith("-"), "cluster.extra_sbatch",
                    f"{line!r} is not an sbatch option (expected --name[=value] or -X [value])")
        for stage in STAGES:   # each stage's resolved resources must be valid too
            if getattr(self, stage).overrides():
                try:
                    self.for_stage(stage)
                except ValueError as err:
                    raise ValueError(f"cluster.{stage}: {err}") from None
