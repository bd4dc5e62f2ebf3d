"""Two finished tiny runs for the tools that read finished runs (export, evaluate, report).

    qlora_run    stage 1 action verbalizer + stage 2 reasoner on its text, NF4 base (QLoRA)
    rewrite_run  stage 1 rewrite verbalizer + stage 2 reasoner on the raw template
Together they fill every row of the paper's table but the ranking-reward ablation. Built once per test run (~1 min).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from finished_runs import train_run  # noqa: E402


@pytest.fixture(scope="session")
def qlora_run(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("qlora"), "size.quantization=nf4", "verbalizer.grpo.lr=2e-2")


@pytest.fixture(scope="session")
def rewrite_run(tmp_path_factory, qlora_run) -> Path:
    return train_run(tmp_path_factory.mktemp("rewrite"), "verbalizer.kind=rewrite", "verbalizer.grpo.max_new_tokens=8",
                  "reasoner.input=template", f"data.prepared={qlora_run / 'data'}")
