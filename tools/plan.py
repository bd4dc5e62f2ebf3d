"""Estimate memory per GPU, step time and GPU-hours of a stage before submitting it.

    python tools/plan.py size=32b                         # stage 1 (verbalizer) on H100s
    python tools/plan.py size=8b stage=reasoner --gpu h200 --mfu 0.3
    python tools/plan.py --measure-cpu       # the estimate vs a measured CPU step of benchmarks/grpo.py's model

Reads the model config (../shared/qwen3-tokenizer/Qwen3-{8B,32B}.config.json when present, else
size.model's config.json; size=tiny: the size.tiny architecture) and the stage's GRPO settings
from the usual config (any key=value applies). Options: --gpu h100|h200|a100, --mfu (default
0.35), --bandwidth-eff (0.6), --prompt-tokens (default: history_len lines * 45 tokens + 200),
--gpus (default: cluster.nodes * ranks per node with cluster=slurm, else train.devices). The model and arithmetic are in
lit_verbrec/launch/plan.py; every figure is an estimate.
"""

from __future__ import annotations

import sys

from lit_verbrec.config.cli import parse_cli
from lit_verbrec.config.paths import REPO, SHARED_QWEN3
from lit_verbrec.launch.plan import GIB, GPUS, lora_params, model_shape, stage_memory, step_seconds

SHARED = SHARED_QWEN3
OPTIONS = {"--gpu": "h100", "--mfu": "0.35", "--bandwidth-eff": "0.6", "--prompt-tokens": "0", "--gpus": "0"}


def split_options(argv: list[str]) -> tuple[dict[str, str], list[str], bool]:
    options, rest, measure = dict(OPTIONS), [], "--measure-cpu" in argv
    args = [a for a in argv if a != "--measure-cpu"]
    while args:
        arg = args.pop(0)
        if arg in OPTIONS:
            options[arg] = args.pop(0)
        else:
            rest.append(arg)
    return options, rest, measure


sys.path.insert(0, str(REPO))                 # benchmarks/ is a folder of the checkout, not of the package
from benchmarks import grpo as bench_grpo  # noqa: E402

# --measure-cpu: the model and step of `benchmarks/grpo.py` (hidden 256, 4 layers, real vocabulary).
MEASURE = [f"size.tokenizer={bench_grpo.TOKENIZER}", *bench_grpo.ARCH, "verbalizer.grpo.prompts_per_step=1",
           "verbalizer.grpo.group_size=8", "verbalizer.grpo.micro_batch_size=8", "verbalizer.grpo.max_new_tokens=32",
           "verbalizer.grpo.engine=hf", "verbalizer.grpo.gradient_checkpointing=false", "size.quantization=none",
           "stage=verbalizer"]


def measured_cpu_peak_mib(grpo, prompt_tokens: int) -> float:
    """Peak RSS over one GRPO step of bench_grpo's model on CPU (fp32), less the RSS before the model was built."""
    import argparse

    args = argparse.Namespace(steps=1, rounds=1, prompts=grpo.prompts_per_step, group=grpo.group_size,
                              prompt_tokens=prompt_tokens, new_tokens=grpo.max_new_tokens, workdir="runs/plan-measure")
    result = bench_grpo.run_ours(args)
    return result["peak_rss_mib"] - result["rss_before_model_mib"]


def main(argv: list[str] | None = None) -> int:
    options, rest, measure = split_options(list(sys.argv[1:] if argv is None else argv))
    if measure:
        rest, options["--prompt-tokens"] = ["size=tiny", *rest, *MEASURE], "1024"
    cfg, _ = parse_cli(__doc__, rest)
    stage = next((s for s in cfg.stage.stages if s != "prepare"), None)   # the first training stage
    if stage is None:
        print("config error: stage=prepare runs on CPU; plan.py estimates a training stage (verbalizer, reasoner)",
              file=sys.stderr)
        return 2
    grpo = cfg.verbalizer.grpo if stage == "verbalizer" else cfg.reasoner.grpo
    gpu, shape = GPUS[options["--gpu"]], model_shape(cfg, SHARED)
    world = int(options["--gpus"]) or (cfg.cluster.nodes * cfg.cluster.ranks_per_node if cfg.cluster.kind == "slurm"
                                       else cfg.train.devices * cfg.train.num_nodes)
    fit = stage_memory(cfg, stage, shape, gpu, int(options["--prompt-tokens"]), dtype_bytes=4 if measure else 2)
    parts, prompt = fit["parts"], fit["prompt_tokens"]
    tokens = prompt + grpo.max_new_tokens
    print(f"{cfg.size.name} {stage}: {shape.params / 1e9:.2f} B params ({shape.layers} layers, hidden {shape.hidden}, "
          f"vocab {shape.vocab}), LoRA r={cfg.size.lora.rank}: {lora_params(shape, cfg.size.lora.rank) / 1e6:.1f} M params")
    print(f"per rank and step: B={grpo.prompts_per_step} prompts x G={grpo.group_size}, P={prompt} + C={grpo.max_new_tokens} "
          f"tokens, micro-batch {grpo.micro_batch_size}, quantization {cfg.size.quantization}, engine {grpo.engine}\n")
    print("memory per GPU (estimate):")
    for name, value in parts.items():
        print(f"  {name:22} {value / GIB:8.2f} GiB")
    print(f"  {'total':22} {fit['total_gib']:8.2f} GiB with every rollout of the step in flight; {fit['floor_gib']:.2f} GiB "
          f"before any KV cache; GPU: {gpu.memory_gib} GiB ({gpu.name})  -> {fit['verdict']}")
    if grpo.engine == "vllm":
        budget = grpo.vllm_gpu_memory_utilization * gpu.memory_gib
        need = (parts["vLLM weights (bf16)"] + parts["vLLM KV cache"]) / GIB
        print(f"  vLLM share: {grpo.vllm_gpu_memory_utilization} x {gpu.memory_gib} = {budget:.1f} GiB for {need:.1f} GiB "
              "(weights + KV of one step's rollouts)" + ("" if need <= budget else "  -> raise vllm_gpu_memory_utilization"))
    times = step_seconds(shape, gpu, cfg.size.quantization, grpo.prompts_per_step, grpo.group_size, prompt,
                         grpo.max_new_tokens, grpo.beta, float(options["--mfu"]), float(options["--bandwidth-eff"]))
    step = sum(times.values())
    print(f"\nstep time on one {gpu.name} at MFU {options['--mfu']}, {options['--bandwidth-eff']} of "
          f"{gpu.bandwidth_tbs} TB/s while decoding (estimate):")
    for name, value in times.items():
        print(f"  {name:10} {value:8.2f} s")
    tokens_per_s = grpo.prompts_per_step * grpo.group_size * tokens / step
    hours = grpo.max_steps * step * world / 3600
    print(f"  {'total':10} {step:8.2f} s  ->  {tokens_per_s:,.0f} trained tokens/s per GPU; {grpo.max_steps} steps on "
          f"{world} GPUs = {grpo.max_steps * step / 3600:.1f} h wall, {hours:.0f} GPU-hours (oracle time not included)")
    if measure:
        measured = measured_cpu_peak_mib(grpo, prompt)
        print(f"\nCPU check (fp32): estimated {fit['total_gib'] * 1024:.0f} MiB, measured peak RSS growth over one step "
              f"{measured:.0f} MiB (peak RSS less the RSS before the model was built; includes generation buffers, "
              "LoRA/optimizer set-up and the allocator's slack)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
