"""Two finished tiny runs for the tools that read finished runs (export, evaluate, report).

    qlora_run    stage 1 action verbalizer + stage 2 reasoner on its text, NF4 base (QLoRA)
    rewrite_run  stage 1 rewrite verbalizer + stage 2 reasoner on the raw template
Together they fill all six rows of the paper's table. Built once per session (~1 min).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def _train(root: Path, *args: str) -> Path:
    result = run_tool("submit.py", "stage=both", "cluster=local", f"run.root={root}", *TINY, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "default"


@pytest.fixture(scope="session")
def qlora_run(tmp_path_factory) -> Path:
    # Qwen3's own init range (0.02), not size=tiny's 0.2: at 0.2 the logits reach +-7, where one bf16 step
    # is 0.03, so no two bf16 computations of them agree within the 1e-2 the merge check asks for.
    return _train(tmp_path_factory.mktemp("qlora"), "size.quantization=nf4", "size.tiny.initializer_range=0.02",
                  "verbalizer.grpo.lr=2e-2")


@pytest.fixture(scope="session")
def rewrite_run(tmp_path_factory, qlora_run) -> Path:
    return _train(tmp_path_factory.mktemp("rewrite"), "verbalizer.kind=rewrite", "verbalizer.grpo.max_new_tokens=8",
                  "reasoner.input=template", f"data.prepared={qlora_run / 'data'}")
