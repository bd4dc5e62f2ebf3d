"""The first thing to run on a GPU: one GRPO step of each stage on the real Qwen3-8B architecture.

    python tools/gpu_check.py                       # one CUDA GPU, a few minutes
    python tools/gpu_check.py --layers 2 --engines hf
    python tools/gpu_check.py --cpu-self-test       # the same checks on a tiny model on this CPU (make test)

A random-weight model with Qwen3-8B's widths (hidden 4096, 32 heads, 8 KV heads, head_dim 128,
MLP 12288, the real 151,936-token vocabulary when ../shared/qwen3-tokenizer or --tokenizer is
given) and --layers layers, NF4 + LoRA (QLoRA), runs `stage=both` for one optimizer step per
stage with each engine (hf, and vllm when it imports), in bf16-mixed as a real run does, then the
export merge check. It prints, per engine and stage: step time, rollout tokens/s, the training
pass's time and MFU (6 N FLOPs per token, N = all weights), peak GPU memory next to
tools/plan.py's estimate for the same shape, and writes the report to <out>/gpu_check.json.
Any failure (a device or dtype mismatch, a merge outside its bound) is printed and exits 1.
Without a CUDA GPU (and without --cpu-self-test) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
from transformers import AutoTokenizer

from lit_verbrec.config.compose import compose
from lit_verbrec.config.paths import SHARED_QWEN3
from lit_verbrec.export.models import export_merged
from lit_verbrec.launch.local import run_local
from lit_verbrec.launch.plan import GPUS, model_shape, stage_memory
from lit_verbrec.training.run import RunPaths

GIB = 1024 ** 3
QWEN3_8B = {"hidden_size": 4096, "intermediate_size": 12288, "num_attention_heads": 32, "num_key_value_heads": 8,
            "head_dim": 128}
CPU_TINY = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 32}   # head_dim >= 32: vLLM's CPU attention


def run_overrides(args, engine: str, root: Path) -> list[str]:
    arch = CPU_TINY if args.cpu_self_test else QWEN3_8B
    tokenizer = args.tokenizer or ("builtin" if args.cpu_self_test or not (SHARED_QWEN3 / "tokenizer.json").is_file()
                                   else str(SHARED_QWEN3))
    new_tokens = (16, 8) if args.cpu_self_test else (64, 32)
    steps = ["max_steps=1", "group_size=4", "prompts_per_step=2", "micro_batch_size=4", f"engine={engine}",
             "gradient_checkpointing=true", "vllm_gpu_memory_utilization=0.35"]
    return ["size=tiny", f"size.tokenizer={tokenizer}", "size.quantization=nf4", "size.lora.rank=16", "size.lora.alpha=32",
            f"size.tiny.num_hidden_layers={args.layers}", "size.tiny.sliding_window=0", "size.tiny.initializer_range=0.02",
            *[f"size.tiny.{k}={v}" for k, v in arch.items()],
            "data.synthetic.users=40", "data.synthetic.interactions_per_user=30", "data.examples.history_len=16",
            "verbalizer.kind=rewrite", "reasoner.answer=free", "stage=both", "cluster=local",
            *[f"verbalizer.grpo.{s}" for s in steps], f"verbalizer.grpo.max_new_tokens={new_tokens[0]}",
            *[f"reasoner.grpo.{s}" for s in steps], f"reasoner.grpo.max_new_tokens={new_tokens[1]}",
            "train.train_examples=8", "train.val_examples=4", "train.eval_examples=8", "train.val_every_n_steps=0",
            "train.probe_examples=0", "eval.bootstrap=100",
            f"run.root={root}", f"run.name={engine}"]


def last_metrics(stage_dir: Path) -> dict[str, float]:
    """The last logged row of the stage's CSV log (Lightning's CSVLogger)."""
    files = sorted((stage_dir / "logs" / "csv").glob("version_*/metrics.csv"))
    rows = list(csv.DictReader(files[-1].open())) if files else []
    merged: dict[str, float] = {}
    for row in rows:
        merged |= {k: float(v) for k, v in row.items() if v not in ("", None)}
    return merged


def stage_report(cfg, stage: str, metrics: dict[str, float], gpu_name: str) -> dict:
    shape = model_shape(cfg)
    grpo = cfg.verbalizer.grpo if stage == "verbalizer" else cfg.reasoner.grpo
    rollouts = grpo.prompts_per_step * grpo.group_size
    new_tokens = metrics.get("completion/length", 0.0) * rollouts
    train_s, tokens = metrics.get("time/train_s", 0.0), metrics.get("tokens/step", 0.0)
    gpu = GPUS.get(gpu_name)
    report = {"generate_s": metrics.get("time/generate_s"), "rollout_tokens_per_s": new_tokens / max(metrics.get("time/generate_s", 0), 1e-9),
              "train_s": train_s, "train_tokens": tokens, "params": shape.params}
    if gpu is not None and train_s > 0:
        report["train_mfu"] = 6 * shape.params * tokens / train_s / (gpu.bf16_tflops * 1e12)
        report["plan_estimate_gib"] = stage_memory(cfg, stage, shape, gpu)["total_gib"]
    return report


def gpu_name() -> str:
    name = torch.cuda.get_device_name().lower() if torch.cuda.is_available() else ""
    return next((g for g in GPUS if g in name), "h100" if name else "cpu")


def check_engine(args, engine: str, root: Path) -> dict:
    cfg = compose(run_overrides(args, engine, root))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run_local(cfg)
    report = {"engine": engine, "minutes": round((time.perf_counter() - start) / 60, 2)}
    paths = RunPaths.of(cfg)
    for stage in ("verbalizer", "reasoner"):
        report[stage] = stage_report(cfg, stage, last_metrics(paths.stage(stage)), gpu_name())
    if torch.cuda.is_available():
        report["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / GIB
    adapter = paths.stage("verbalizer") / "adapter"
    ids = torch.randint(0, 1000, (2, 32), generator=torch.Generator().manual_seed(0))
    merge = export_merged(cfg, adapter, AutoTokenizer.from_pretrained(adapter), root / f"merged-{engine}", ids)
    report["merge_check"] = {"max_ratio_to_bound": merge["merge"]["max_ratio_to_bound"], "passed": True}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4, help="decoder layers of the 8B-wide model (default 4)")
    parser.add_argument("--engines", default="hf,vllm", help="comma-separated: hf, vllm (skipped if it does not import)")
    parser.add_argument("--tokenizer", default="", help="a Qwen3 tokenizer folder or hub id (default: ../shared's)")
    parser.add_argument("--out", default="", help="report folder (default: a temporary folder)")
    parser.add_argument("--cpu-self-test", action="store_true", help="tiny widths on the CPU: checks this tool itself")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.cpu_self_test:
        print("gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False): nothing measured. "
              "Run it on a GPU node; --cpu-self-test runs the same checks on a tiny model here.")
        return 0
    root = Path(args.out or tempfile.mkdtemp(prefix="lit_verbrec-gpu-check-"))
    results, failures = {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "engines": []}, []
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        if engine == "vllm":
            try:
                import vllm  # noqa: F401
            except ImportError as error:
                results["engines"].append({"engine": "vllm", "skipped": f"vllm does not import: {error}"})
                continue
        try:
            results["engines"].append(check_engine(args, engine, root))
        except Exception as error:   # report every engine's failure, then exit 1
            failures.append(f"{engine}: {type(error).__name__}: {error}")
            results["engines"].append({"engine": engine, "failed": failures[-1], "trace": traceback.format_exc()[-3000:]})
    results["failures"] = failures
    root.mkdir(parents=True, exist_ok=True)
    (root / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in results.items()}, indent=2, default=str))
    print(f"gpu_check: {'FAILED: ' + '; '.join(failures) if failures else 'all checks passed'} "
          f"(report: {root / 'gpu_check.json'})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
