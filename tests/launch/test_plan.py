"""The cost model's arithmetic (lit_verbrec/launch/plan.py) and tools/plan.py's printout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lit_verbrec.launch.plan import GPUS, Shape, lora_params, memory, step_seconds, weight_bytes

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT.parent / "shared" / "qwen3-tokenizer"


@pytest.mark.parametrize(("name", "billions"), [("8B", 8.19), ("32B", 32.76)])
def test_parameter_counts_match_the_published_sizes(name, billions):
    shape = Shape.from_config(json.loads((CONFIGS / f"Qwen3-{name}.config.json").read_text()))
    assert shape.params / 1e9 == pytest.approx(billions, abs=0.01)


def test_lora_and_weight_bytes_by_hand():
    shape = Shape(layers=2, hidden=8, heads=2, kv_heads=1, head_dim=4, intermediate=16, vocab=10, tied=False)
    # per layer: q 8->8, k 8->4, v 8->4, o 8->8, gate 8->16, up 8->16, down 16->8; r * (in + out) each
    assert lora_params(shape, rank=2) == 2 * 2 * (16 + 12 + 12 + 16 + 24 + 24 + 24)
    assert weight_bytes(shape, "none") == shape.params * 2
    nf4 = weight_bytes(shape, "nf4")
    assert nf4 == pytest.approx(shape.linear_params * (0.5 + 0.127 / 8) + (shape.embedding_params + 2 * 2 * 8) * 2)


def test_memory_parts_and_step_phases():
    shape = Shape(layers=4, hidden=256, heads=4, kv_heads=2, head_dim=64, intermediate=768, vocab=151936, tied=False)
    common = dict(prompt_tokens=1024, new_tokens=32, group=8, chunk=1024, rollouts=8)
    hf = memory(shape, "none", 8, micro_batch=8, vllm=False, **common)
    vllm = memory(shape, "none", 8, micro_batch=8, vllm=True, **common)
    assert set(vllm) - set(hf) == {"vLLM weights (bf16)", "vLLM KV cache"}
    assert vllm["vLLM KV cache"] == 8 * 1056 * 2 * 4 * 2 * 64 * 2
    more = memory(shape, "none", 8, micro_batch=16, vllm=False, **common)
    assert more["activations"] > hf["activations"] and more["base weights"] == hf["base weights"]
    # without checkpointing the 8 samples share one prompt: 1 * 1024 + 8 * 32 tokens, not 8 * 1056
    shared = memory(shape, "none", 8, micro_batch=8, vllm=False, checkpointing=False, **common)
    assert shared["activations"] == (1024 + 8 * 32) * 4 * 34 * 256 + 256 * 151936 * 4
    times = step_seconds(shape, GPUS["h100"], "none", 2, 8, 1024, 32, beta=0.0, mfu=0.5, bandwidth_eff=1.0)
    assert times["reference"] == 0.0
    doubled = step_seconds(shape, GPUS["h100"], "none", 4, 8, 1024, 32, beta=0.04, mfu=0.5, bandwidth_eff=1.0)
    assert doubled["train"] == pytest.approx(2 * times["train"]) and doubled["reference"] > 0


def test_plan_prints_the_arithmetic_for_32b():
    result = subprocess.run([sys.executable, ROOT / "tools" / "plan.py", "size=32b", "--gpu", "h100"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "32.76 B params" in out and "LoRA + grads + AdamW" in out and "vLLM KV cache" in out
    assert "does NOT fit" in out and "GPU-hours" in out


def test_cluster_gpu_choices_are_the_gpus_the_model_knows():
    from lit_verbrec.config.schema import GPU_MODELS

    assert set(GPU_MODELS) == {"", *GPUS}


@pytest.mark.parametrize(("gpu", "code"), [("h100", 2), ("h200", 0)])
def test_submit_refuses_a_stage_that_cannot_fit_its_gpu(gpu, code):
    """32b's vLLM engine holds a bf16 copy of the weights (61 GiB) beside the NF4 policy: over an
    H100's 80 GiB before any KV cache, so nothing is submitted; an H200 takes it."""
    result = subprocess.run([sys.executable, ROOT / "tools" / "submit.py", "stage=both", "size=32b", "cluster=slurm",
                             f"cluster.gpu={gpu}", "--dry-run"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == code, result.stderr[-2000:]
    if code:
        assert "memory estimate, verbalizer on one h100 (80 GiB): 100 GiB before any KV cache" in result.stderr
        assert "does NOT fit" in result.stderr and "not submitted" in result.stderr
        assert "#SBATCH" not in result.stdout
    else:
        assert "memory estimate, verbalizer on one h200 (141 GiB)" in result.stdout and "#SBATCH" in result.stdout
