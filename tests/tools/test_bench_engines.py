"""`bench.py engines`: both engines measured on the same rollouts, and the ratio is theirs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_engines_measures_both_and_prints_their_ratio():
    result = subprocess.run([sys.executable, ROOT / "tools" / "bench.py", "engines", "--prompts", "2", "--group", "2",
                             "--prompt-tokens", "64", "--new-tokens", "8", "--repeats", "1"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    rates = {m[0]: float(m[1]) for m in re.findall(r"^(hf|vllm) *: +([\d.]+) tokens/s \((\d+)", result.stdout, re.M)}
    tokens = [int(t) for _, _, t in re.findall(r"^(hf|vllm) *: +([\d.]+) tokens/s \((\d+)", result.stdout, re.M)]
    assert set(rates) == {"hf", "vllm"} and all(0 < t <= 2 * 2 * 8 for t in tokens)   # B*G*new tokens at most
    ratio = float(re.search(r"vllm / hf tokens/s = ([\d.]+)", result.stdout)[1])
    assert abs(ratio - rates["vllm"] / rates["hf"]) < 0.01 + 0.01 * ratio
