"""Run the stages of a run: here, or as dependent Slurm jobs.

    python tools/submit.py stage=both size=tiny cluster=local      # this machine, stage 1 then stage 2
    python tools/submit.py stage=both size=32b cluster=slurm       # two Slurm jobs, stage 2 afterok stage 1
    python tools/submit.py stage=all size=32b cluster=slurm data=parquet data.path=...   # prepare the log first (CPU job)
    python tools/submit.py stage=both size=32b cluster=slurm --dry-run   # print the sbatch scripts only
    python tools/submit.py status run=runs/default                 # the jobs of a submitted run

cluster=local trains the stages one after another here (each resumes from its last checkpoint
if interrupted) and writes runs/<run.name>/results.md.

cluster=slurm (options under cluster.*, configs/cluster/slurm.yaml) submits one job per stage
through submitit, prints how to follow them, then watches them until they end: exit 0 if every
stage COMPLETED, else 1 naming the failed stage and its log (later stages are cancelled, by the
watcher and by Slurm itself). Ctrl-C stops watching, not the jobs; --detach returns right after
submitting. Rerunning the same command skips a stage that COMPLETED (and waits on one still in
the queue); each stage that runs again resumes from its last checkpoint. With cluster.offline=true
it first checks that the nodes can load size.model and size.tokenizer (lit_verbrec/launch/offline.py). With
cluster.gpu=h100|h200|a100 it first prints each stage's memory estimate on that GPU and submits
nothing if a stage cannot fit even before any KV cache (lit_verbrec/launch/plan.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from lit_verbrec.config.cli import parse_cli, run_folder
from lit_verbrec.config.paths import SHARED_QWEN3
from lit_verbrec.data.schema import DataError
from lit_verbrec.launch.local import run_local

FLAGS = ("--dry-run", "--detach")
SHARED_CONFIGS = SHARED_QWEN3   # offline model configs, if there


def status_main(argv: list[str]) -> int:
    """`status run=<run folder>` (or run.root=... run.name=...): the table of the run's jobs."""
    from lit_verbrec.launch.slurm_watch import status

    folder, _ = run_folder(__doc__, argv)
    try:
        return status(folder)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2


def memory_check(cfg) -> bool:
    """With cluster.gpu set: print each stage's memory estimate on that GPU (lit_verbrec/launch/plan.py);
    False, with the reason on stderr, when a stage cannot fit even before any KV cache."""
    from lit_verbrec.launch.plan import GPUS, model_shape, stage_memory

    if not cfg.cluster.gpu or not cfg.cluster.gpus_per_node:
        return True
    gpu = GPUS[cfg.cluster.gpu]
    try:
        shape = model_shape(cfg, SHARED_CONFIGS)
    except OSError as err:   # no local config and no hub: say so, do not block the submission
        print(f"memory check skipped: cannot read {cfg.size.model}'s config ({err})", file=sys.stderr)
        return True
    fits = True
    for stage in (s for s in cfg.stage.stages if s != "prepare"):   # the preparation needs no GPU
        fit = stage_memory(cfg, stage, shape, gpu)
        line = (f"memory estimate, {stage} on one {gpu.name} ({gpu.memory_gib} GiB): {fit['floor_gib']:.0f} GiB before "
                f"any KV cache, {fit['total_gib']:.0f} GiB with every rollout in flight -> {fit['verdict']}")
        if fit["verdict"] == "does NOT fit":
            fits = False
            print(f"{line}\nnot submitted: see `python tools/plan.py size={cfg.size.name} stage={stage} --gpu {gpu.name}` "
                  f"for the parts; a GPU with more memory (cluster.gpu), {stage}.grpo.engine=hf (no second copy of the "
                  f"weights), or smaller {stage}.grpo.prompts_per_step / micro_batch_size / max_new_tokens; "
                  "cluster.gpu='' skips this check", file=sys.stderr)
        else:
            print(line)
    return fits


def slurm_main(cfg, flags: set[str]) -> int:
    from lit_verbrec.launch.offline import model_note, model_problems
    from lit_verbrec.launch.slurm import dry_run, submit
    from lit_verbrec.launch.slurm_watch import watch

    if not memory_check(cfg):
        return 2
    problems = model_problems(cfg)
    if problems:
        print("not submitted: the compute nodes could not load the model\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    if model_note(cfg):
        print(model_note(cfg), file=sys.stderr)
    try:
        if "--dry-run" in flags:
            print(dry_run(cfg))
            return 0
        jobs = submit(cfg)
    except ValueError as err:   # e.g. an extra_sbatch option sbatch does not have
        print(f"config error: {err}", file=sys.stderr)
        return 2
    run_dir = Path(cfg.run.root) / cfg.run.name
    for job in jobs:
        if job.get("reused"):
            print(f"{job['stage']}: Slurm job {job['job_id']} is {job['reused']} from an earlier submission: "
                  f"{'not submitted again' if job['reused'] == 'COMPLETED' else 'the next stage waits on it'}")
        else:
            print(f"submitted {job['stage']}: Slurm job {job['job_id']}, log {job['err']}")
    ids = ",".join(j["job_id"] for j in jobs)
    print(f"follow:  squeue -j {ids}   |   tools/submit.py status run={run_dir}   |   tail -f {jobs[-1]['err']}\n"
          f"cancel:  scancel {ids.replace(',', ' ')}\n"
          f"resume:  rerun this command: each stage continues from <run>/<stage>/checkpoints/last.ckpt", flush=True)
    if "--detach" in flags:
        return 0
    try:
        return watch(run_dir)
    except KeyboardInterrupt:
        print(f"\nstopped watching; the jobs go on (tools/submit.py status run={run_dir})", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["status"]:
        return status_main(argv[1:])
    cfg, flags = parse_cli(__doc__, argv, FLAGS)
    if cfg.cluster.kind == "slurm":
        return slurm_main(cfg, flags)
    if flags:
        print(f"config error: {', '.join(sorted(flags))} only apply to cluster=slurm", file=sys.stderr)
        return 2
    try:
        run_local(cfg)
    except DataError as err:   # bad input in the log (file, row, column): the message, not a traceback
        print(f"data error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
