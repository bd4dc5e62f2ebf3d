"""The sbatch scripts for real clusters (no Slurm needed): --gres, short options, per-stage
resources, the CPU-only preparation job of stage=all, srun's CPUs, interpreter / container / modules, the code snapshot, Slurm-side
cancellation of stage 2, and the model check for offline compute nodes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lit_verbrec
from lit_verbrec.config.compose import ConfigError, compose
from lit_verbrec.launch.offline import model_problems
from lit_verbrec.launch.sbatch import extra_flags, sbatch_script, stage_config
from lit_verbrec.launch.slurm import dry_run, snapshot

SLURM = ["size=32b", "cluster=slurm", "run.root=/shared/runs", "run.name=demo"]


def script(*args: str, stage: str = "verbalizer", after: str = "", code: Path | None = None) -> list[str]:
    cfg = compose([*SLURM, *args])
    return sbatch_script(cfg, stage, Path("/shared/runs/demo/slurm/%j"), after, code).splitlines()


def test_gres_cluster_asks_for_gres_and_keeps_one_rank_per_gpu():
    lines = script("cluster.gpu_request=gres", "cluster.gres_type=a100", "cluster.gpus_per_node=4")
    assert "#SBATCH --gres=gpu:a100:4" in lines and "#SBATCH --ntasks-per-node=4" in lines
    assert not any(line.startswith("#SBATCH --gpus-per-node") for line in lines)
    assert "#SBATCH --gpus-per-node=8" in script()    # the default asks for GPUs as TRES


def test_short_and_spaced_options_in_extra_sbatch_become_sbatch_options():
    assert extra_flags(["-A proj", "-pgpu", "--mail-type END", "--exclusive", "#SBATCH -s", "-c=4"]) == {
        "account": "proj", "partition": "gpu", "mail_type": "END", "exclusive": True, "oversubscribe": True,
        "cpus_per_task": "4"}
    lines = script("cluster.extra_sbatch=[-A proj, -c 4]")
    assert "#SBATCH --account=proj" in lines
    assert [line for line in lines if line.startswith("#SBATCH --cpus-per-task")] == ["#SBATCH --cpus-per-task=4"]
    with pytest.raises(ValueError, match="-Z"):
        extra_flags(["-Z 3"])
    with pytest.raises(ConfigError, match="extra_sbatch"):
        compose([*SLURM, "cluster.extra_sbatch=[exclusive]"])


def test_each_stage_gets_its_own_resources_and_srun_its_cpus():
    args = ("cluster.gpus_per_node=8", "cluster.reasoner.gpus_per_node=2", "cluster.reasoner.time_min=90",
            "cluster.reasoner.cpus_per_task=4")
    stage1, stage2 = script(*args), script(*args, stage="reasoner", after="41")
    assert "#SBATCH --gpus-per-node=8" in stage1 and "#SBATCH --time=1440" in stage1
    assert "export SRUN_CPUS_PER_TASK=8" in stage1
    assert {"#SBATCH --gpus-per-node=2", "#SBATCH --ntasks-per-node=2", "#SBATCH --time=90",
            "#SBATCH --cpus-per-task=4", "export SRUN_CPUS_PER_TASK=4"} <= set(stage2)
    cfg = stage_config(compose([*SLURM, *args]), "reasoner")
    assert (cfg.train.devices, cfg.cluster.gpus_per_node, cfg.cluster.time_min) == (2, 2, 90)
    with pytest.raises(ConfigError, match="cluster.reasoner"):
        compose([*SLURM, "cluster.gpus_per_node=2", "cluster.reasoner.tasks_per_node=4"])


def test_stage_all_prepares_on_one_cpu_task_and_stage_1_waits_on_it():
    cfg = compose([*SLURM, "stage=all", "cluster.nodes=2", "cluster.cpus_per_task=16", "cluster.prepare.mem_gb=256"])
    assert cfg.stage.stages == ["prepare", "verbalizer", "reasoner"]
    printed = dry_run(cfg)
    prepare, verbalizer, reasoner = printed.split("# ---- ")[1:]
    assert prepare.startswith("prepare:") and verbalizer.startswith("verbalizer:") and reasoner.startswith("reasoner:")
    assert {"#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1", "#SBATCH --cpus-per-task=16",
            "#SBATCH --mem=256GB"} <= set(prepare.splitlines())
    assert not any(line.startswith(("#SBATCH --gpus", "#SBATCH --gres", "#SBATCH --dependency"))
                   for line in prepare.splitlines())
    assert "#SBATCH --dependency='afterok:<prepare job id>'" in verbalizer and "#SBATCH --nodes=2" in verbalizer
    assert "#SBATCH --gpus-per-node=8" in verbalizer and "#SBATCH --mem=" not in verbalizer
    assert "#SBATCH --dependency='afterok:<verbalizer job id>'" in reasoner
    assert stage_config(cfg, "prepare").train.devices == 1
    with pytest.raises(ConfigError, match=r"cluster.prepare: the preparation is one process.*2 node\(s\) x 1 task"):
        compose([*SLURM, "stage=all", "cluster.prepare.nodes=2"])
    compose([*SLURM, "stage=both", "cluster.prepare.nodes=2"])   # not run: not checked


def test_stage_2_is_cancelled_by_slurm_when_stage_1_fails():
    assert "#SBATCH --kill-on-invalid-dep=yes" in script(stage="reasoner", after="41")
    assert "#SBATCH --dependency=afterok:41" in script(stage="reasoner", after="41")
    assert not any("kill-on-invalid-dep" in line for line in script())   # stage 1 depends on nothing


def test_container_interpreter_modules_and_offline_hub_cache():
    lines = script("cluster.container=apptainer exec --nv /shared/img.sif", "cluster.modules=[cuda/12.4]",
                   "cluster.hf_home=/shared/hf", "cluster.offline=true", "cluster.snapshot=false")
    assert lines[-1].endswith("apptainer exec --nv /shared/img.sif python -u -m submitit.core._submit /shared/runs/demo/slurm/%j")
    assert lines.index("module load cuda/12.4") < lines.index("export HF_HOME=/shared/hf")
    assert "export HF_HUB_OFFLINE=1" in lines
    assert script("cluster.python=/opt/py/bin/python3", "cluster.snapshot=false")[-1].endswith(
        " /opt/py/bin/python3 -u -m submitit.core._submit /shared/runs/demo/slurm/%j")


def test_snapshot_is_a_copy_of_the_package_that_the_job_imports_first(tmp_path):
    code = snapshot(tmp_path)
    package = Path(lit_verbrec.__file__).parent
    assert (code / "lit_verbrec" / "launch" / "sbatch.py").read_bytes() == (package / "launch" / "sbatch.py").read_bytes()
    assert snapshot(tmp_path) == code                      # same code, same folder
    lines = script(code=code)
    setup = next(line for line in lines if line.startswith("export PYTHONPATH="))
    # what the job's shell and Python do with it, started in this checkout (which has its own lit_verbrec/)
    found = subprocess.run(["bash", "-c", f"{setup}; {sys.executable} -P -c 'import lit_verbrec; print(lit_verbrec.__file__)'"],
                           capture_output=True, text=True, cwd=package.parent, check=True).stdout.strip()
    assert found == str(code / "lit_verbrec" / "__init__.py")


def test_offline_nodes_need_the_model_in_a_folder_or_in_hf_home(tmp_path):
    offline = [*SLURM, "cluster.offline=true", f"cluster.hf_home={tmp_path}", "size.tokenizer=Qwen/Qwen3-32B"]
    problems = model_problems(compose(offline))
    assert len(problems) == 2 and "Qwen/Qwen3-32B is not in the hub cache" in problems[0]
    assert f"HF_HOME={tmp_path} huggingface-cli download Qwen/Qwen3-32B" in problems[0]
    snap = tmp_path / "hub" / "models--Qwen--Qwen3-32B" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap / "tokenizer.json").write_text("{}")
    assert model_problems(compose(offline)) == []
    folder = tmp_path / "empty-model"
    folder.mkdir()
    assert "no config.json" in model_problems(compose([*offline, f"size.model={folder}"]))[0]


def test_own_logs_in_shards_are_prepared_by_five_cpu_jobs_two_of_them_arrays(tmp_path):
    rows = pa.table({"user": [f"u{i % 50}" for i in range(3000)], "item": ["m1"] * 3000, "timestamp": list(range(3000))})
    pq.write_table(rows, tmp_path / "events.parquet")
    cfg = compose([*SLURM, "stage=all", "data=parquet", f"data.path={tmp_path}", "data.interactions=events.parquet",
                   "data.shard_rows=1000", "cluster.prepare.mem_gb=32"])
    parts = dry_run(cfg).split("# ---- ")[1:]
    names = [p.split(":")[0] for p in parts]
    assert names == ["prepare.partition", "prepare.canonical", "prepare.popularity", "prepare.examples",
                     "prepare.publish", "verbalizer", "reasoner"]
    for part, name in zip(parts, names, strict=True):
        if name.startswith("prepare."):
            assert "#SBATCH --mem=32GB" in part and "#SBATCH --ntasks-per-node=1" in part
            assert not any(line.startswith(("#SBATCH --gpus", "#SBATCH --gres")) for line in part.splitlines())
        assert ("a job array of 3 tasks" in part.splitlines()[0]) == (name in ("prepare.canonical", "prepare.examples"))
    for before, part in zip(names, parts[1:]):
        assert f"#SBATCH --dependency='afterok:<{before} job id>'" in part
