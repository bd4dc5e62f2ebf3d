"""tools/gpu_check.py: says so without a GPU; its CPU self-test runs both stages and the merge check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, ROOT / "tools" / "gpu_check.py", *args], capture_output=True, text=True,
                          timeout=1200, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_without_a_gpu_it_says_so_and_exits_0():
    result = gpu_check()
    assert result.returncode == 0 and "no CUDA GPU on this machine" in result.stdout


def test_cpu_self_test_measures_both_stages_and_checks_the_merge(tmp_path):
    result = gpu_check("--cpu-self-test", "--layers", "1", "--engines", "hf", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["failures"] == [] and [e["engine"] for e in report["engines"]] == ["hf"]
    engine = report["engines"][0]
    for stage in ("verbalizer", "reasoner"):
        measured = engine[stage]
        assert measured["train_s"] > 0 and measured["train_tokens"] > 0 and measured["rollout_tokens_per_s"] > 0
        assert measured["params"] > 0 and "train_mfu" not in measured       # no peak FLOPs known for a CPU
    assert engine["merge_check"]["passed"] and 0 < engine["merge_check"]["max_ratio_to_bound"] <= 1
    assert (tmp_path / "merged-hf" / "merge_check.json").is_file()
    assert "all checks passed" in result.stdout


def test_a_failing_engine_is_named_and_exits_1(tmp_path):
    result = gpu_check("--cpu-self-test", "--layers", "0", "--engines", "hf", "--out", str(tmp_path))
    assert result.returncode == 1 and "FAILED: hf: ConfigError: size.tiny.num_hidden_layers" in result.stdout
    assert json.loads((tmp_path / "gpu_check.json").read_text())["failures"][0].startswith("hf: ConfigError")
