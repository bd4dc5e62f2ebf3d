"""A process killed (SIGKILL) in the middle of writing a checkpoint or an adapter leaves the
previous one loadable, and a resumed run continues from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import torch
from safetensors.torch import load_file

WRITER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from lit_verbrec.training.checkpoints import AtomicCheckpointIO
    from lit_verbrec.models.loading import save_adapter
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3Config, Qwen3ForCausalLM

    out = Path(sys.argv[1])
    io = AtomicCheckpointIO()
    model = get_peft_model(Qwen3ForCausalLM(Qwen3Config(vocab_size=512, hidden_size=256, intermediate_size=512,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=64)),
        LoraConfig(r=64, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    version = 0
    print("ready", flush=True)
    while True:
        version += 1
        big = torch.full((8_000_000,), float(version))                # 32 MB: a write takes a while
        io.save_checkpoint({"version": version, "big": big}, out / "last.ckpt")
        for p in model.parameters():
            if p.requires_grad:
                p.data.fill_(float(version))
        save_adapter(model, out / "adapter")
""")


def test_sigkill_during_writes_leaves_whole_files(tmp_path):
    for round_ in range(6):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(0.3 + 0.37 * round_)          # kill at different points of the write loop
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
        if (tmp_path / "last.ckpt").exists():
            checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
            assert torch.all(checkpoint["big"] == checkpoint["version"])    # one whole version
        if (tmp_path / "adapter" / "adapter_model.safetensors").exists():
            weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
            assert len({float(w.flatten()[0]) for w in weights.values()}) == 1
    assert (tmp_path / "last.ckpt").exists(), "no write ever completed: the test did not test anything"
