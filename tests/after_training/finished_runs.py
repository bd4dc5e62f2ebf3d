"""What the after-training tests share: the tiny run settings and a tool runner (imported by path,
not from `conftest`, whose module name every test folder shares)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ["size=tiny", "data.synthetic.users=40", "data.synthetic.interactions_per_user=30", "data.synthetic.movies=200",
        "data.synthetic.series=20", "data.examples.history_len=8",
        "verbalizer.grpo.prompts_per_step=2", "verbalizer.grpo.group_size=4", "verbalizer.grpo.max_steps=3",
        "reasoner.grpo.prompts_per_step=2", "reasoner.grpo.group_size=4", "reasoner.grpo.max_steps=2",
        # no validation: the last adapter is exported (a best-at-step-0 adapter would make the merge check trivial)
        "train.val_every_n_steps=0", "train.eval_examples=24", "eval.bootstrap=100"]


def run_tool(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, ROOT / "tools" / tool, *args], capture_output=True, text=True, timeout=900,
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def train_run(root: Path, *args: str) -> Path:
    result = run_tool("submit.py", "stage=both", "cluster=local", f"run.root={root}", *TINY, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "default"
