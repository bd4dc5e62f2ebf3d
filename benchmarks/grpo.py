"""Step time and peak memory of one GRPO step: our VerbalizerGRPO vs trl's GRPOTrainer, same work.

    python tools/bench.py grpo [--steps 3] [--rounds 2] [--prompt-tokens 1024] [--group 8] [--new-tokens 32]

The same work on both sides: a random-weight Qwen3 (hidden 256, 4 layers, the real 151,936-row
vocabulary and tokenizer from ../shared/qwen3-tokenizer), the same seed and LoRA (rank 8 on all
projections), the same prompts (the rewrite verbalizer's chat prompt around synthetic
histories, cut to about --prompt-tokens tokens), G samples of up to --new-tokens tokens each
(a random-weight model over 151,936 tokens almost never samples an end token, so both run full length),
the same reward (0.9 * lexical oracle correct + 0.1 * length plateau), AdamW at the same lr,
beta 0, one optimizer step per rollout, loss "grpo", group-scaled advantages.
trl: GRPOTrainer(use_vllm=False, loss_type="grpo", per-device batch = B * G).

Each side runs in its own fresh process, alternating ours, trl, ours, trl, ... (--rounds);
step time is the median over all steps after each process's first (warm-up) step, peak memory
the process's peak RSS. Prints both and the ratios ours / trl. Targets: time <= 0.8, memory <= 1.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lit_verbrec.config.paths import SHARED_QWEN3

TOKENIZER = SHARED_QWEN3
ARCH = ["size.tiny.hidden_size=256", "size.tiny.num_hidden_layers=4", "size.tiny.num_attention_heads=4",
        "size.tiny.num_key_value_heads=2", "size.tiny.head_dim=64", "size.tiny.intermediate_size=768",
        "size.tiny.initializer_range=0.02"]
LR, SEED = 1e-3, 0


def setup(args):
    """(cfg, tokenizer, catalog, examples with prompts of about args.prompt_tokens tokens)."""
    from lit_verbrec.config.compose import compose
    from lit_verbrec.data.catalog import Catalog
    from lit_verbrec.data.prepared_folder import has_examples, read_prepared
    from lit_verbrec.data.report import DataReport
    from lit_verbrec.data.sources import prepare
    from lit_verbrec.models.loading import load_tokenizer

    cfg = compose(["size=tiny", f"size.tokenizer={TOKENIZER}", *ARCH, "data.synthetic.users=40",
                   "data.examples.history_len=200"])
    folder = Path(args.workdir) / "data"
    if not has_examples(folder):
        prepare(cfg.data, folder, DataReport())
    examples, items = read_prepared(folder, "train")
    catalog = Catalog.from_table(items)
    tokenizer = load_tokenizer(cfg.size)
    from lit_verbrec.text.template import verbalize_template

    chosen = []
    for e in examples.to_pylist()[: args.prompts * args.steps]:
        # keep the most recent lines that fit the prompt budget (the instructions take ~150 tokens)
        while len(tokenizer(verbalize_template(e["history"], catalog))["input_ids"]) > args.prompt_tokens - 150:
            e["history"] = e["history"][max(1, len(e["history"]) // 10):]
        chosen.append(e)
    return cfg, tokenizer, catalog, chosen


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """The resident set now (not the peak), from /proc."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def run_ours(args) -> dict:
    import lightning.pytorch as pl
    import torch

    from lit_verbrec.config.train_schema import GRPOConfig
    from lit_verbrec.models.loading import load_policy
    from lit_verbrec.oracle.lexical import LexicalOracle
    from lit_verbrec.rollout.callback import RolloutCallback
    from lit_verbrec.rollout.hf import HFEngine
    from lit_verbrec.training.batches import ResumableBatches
    from lit_verbrec.training.verbalizer import VerbalizerGRPO
    from lit_verbrec.training.verbalizers import RewriteVerbalizer

    cfg, tokenizer, catalog, examples = setup(args)
    before_model = rss_mib()   # after imports, data and tokenizer: what the model and the step add comes on top
    torch.manual_seed(SEED)
    policy = load_policy(cfg.size, tokenizer, gradient_checkpointing=False, seed=SEED)
    engine = HFEngine(policy, tokenizer)
    grpo = GRPOConfig(group_size=args.group, prompts_per_step=args.prompts, micro_batch_size=args.prompts * args.group,
                      max_new_tokens=args.new_tokens, lr=LR, beta=0.0,
                      loss_type="grpo", max_steps=args.steps, gradient_checkpointing=False, temperature=1.0)
    verbalizer = RewriteVerbalizer(engine, tokenizer, catalog, "rewrite", args.new_tokens)
    module = VerbalizerGRPO(policy, tokenizer, engine, grpo, verbalizer, LexicalOracle(catalog), cfg.reward)
    ends: list[float] = []
    phases: list[dict] = []

    class Clock(pl.Callback):
        def on_train_start(self, trainer, module):
            ends.append(time.perf_counter())

        def on_train_batch_end(self, trainer, module, *rest):
            ends.append(time.perf_counter())
            phases.append({k.removeprefix("time/"): v for k, v in module.rollout_metrics.items() if k.startswith("time/")})

    trainer = pl.Trainer(accelerator="cpu", max_steps=args.steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[RolloutCallback(), Clock()])
    trainer.fit(module, ResumableBatches(examples, args.prompts, SEED, position=lambda: module.batches_done))
    steps = [b - a for a, b in zip(ends, ends[1:])]
    for step, phase in zip(steps, phases):   # the rest of the step: loss, backward, optimizer, callbacks
        phase["loss_backward_optimizer_s"] = step - sum(phase.values())
    return {"step_s": steps, "peak_rss_mib": peak_rss_mib(), "phases": phases, "rss_before_model_mib": before_model}


def run_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig as PeftLoraConfig
    from transformers import Qwen3ForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from lit_verbrec.models.loading import LORA_TARGET_MODULES, padded_vocab_size, tiny_config
    from lit_verbrec.oracle.lexical import lexical_choice
    from lit_verbrec.rl.rewards import verbalizer_reward
    from lit_verbrec.text.template import verbalize_template
    from lit_verbrec.text.verbalizer_prompts import verbalizer_messages
    from lit_verbrec.training.verbalizer import compression_ratio

    cfg, tokenizer, catalog, examples = setup(args)
    torch.manual_seed(SEED)
    model = Qwen3ForCausalLM(tiny_config(cfg.size, padded_vocab_size(tokenizer)))
    rows = [{"prompt": verbalizer_messages("rewrite", verbalize_template(e["history"], catalog)),
             "candidates": e["candidates"], "target_index": e["target_index"],
             "template": verbalize_template(e["history"], catalog)} for e in examples]

    def reward(prompts, completions, candidates, target_index, template, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        correct = torch.tensor([float(lexical_choice(t, c, catalog) == i) for t, c, i in zip(texts, candidates, target_index)])
        ratio = compression_ratio(tokenizer, texts, template)
        return verbalizer_reward(correct, ratio, cfg.reward)["reward"].tolist()

    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            ends.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            ends.append(time.perf_counter())

    config = GRPOConfig(output_dir=str(Path(args.workdir) / "trl"), use_cpu=True, use_vllm=False, loss_type="grpo",
                        beta=0.0, num_iterations=1, scale_rewards="group", learning_rate=LR, max_steps=args.steps,
                        per_device_train_batch_size=args.prompts * args.group, num_generations=args.group,
                        gradient_accumulation_steps=1, max_completion_length=args.new_tokens, temperature=1.0,
                        top_p=1.0, top_k=0,
                        logging_steps=1, report_to="none", save_strategy="no", bf16=False, seed=SEED,
                        gradient_checkpointing=False, dataloader_num_workers=0)
    lora = PeftLoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGET_MODULES, task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=config, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, peft_config=lora, callbacks=[Clock()])
    trainer.train()
    return {"step_s": [b - a for a, b in zip(ends, ends[1:])], "peak_rss_mib": peak_rss_mib()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=1, help="prompts per step (B)")
    parser.add_argument("--group", type=int, default=8, help="samples per prompt (G)")
    parser.add_argument("--prompt-tokens", type=int, default=1024)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--workdir", default="runs/bench-grpo")
    parser.add_argument("--side", choices=("ours", "trl"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        result = (run_ours if args.side == "ours" else run_trl)(args)
        print("RESULT " + json.dumps(result))
        return 0
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {"ours": [], "trl": []}
    for _ in range(args.rounds):
        for side in ("ours", "trl"):
            out = subprocess.run([sys.executable, __file__, *argv, "--side", side], capture_output=True, text=True)
            line = next((line for line in out.stdout.splitlines() if line.startswith("RESULT ")), None)
            if out.returncode != 0 or line is None:
                print(out.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"the {side} run failed (exit {out.returncode})")
            results[side].append(json.loads(line.removeprefix("RESULT ")))
            r = results[side][-1]
            print(f"{side:4}: steps {', '.join(f'{s:.2f}' for s in r['step_s'])} s, peak RSS {r['peak_rss_mib']:.0f} MiB",
                  flush=True)
    summary = {side: {"median_step_s": statistics.median(s for r in runs for s in r["step_s"][1:]),
                      "peak_rss_mib": max(r["peak_rss_mib"] for r in runs)} for side, runs in results.items()}
    time_ratio = summary["ours"]["median_step_s"] / summary["trl"]["median_step_s"]
    mem_ratio = summary["ours"]["peak_rss_mib"] / summary["trl"]["peak_rss_mib"]
    for side, s in summary.items():
        print(f"{side:4}: median step {s['median_step_s']:.2f} s, peak RSS {s['peak_rss_mib']:.0f} MiB")
    phases = [p for r in results["ours"] for p in r["phases"][1:]]
    if phases:
        print("ours, where a step goes (median s): " + ", ".join(
            f"{k} {statistics.median(p[k] for p in phases):.2f}" for k in phases[0]))
    print(f"ratio ours/trl: step time {time_ratio:.2f} (target <= 0.8: {'met' if time_ratio <= 0.8 else 'MISSED'}), "
          f"peak memory {mem_ratio:.2f} (target <= 1: {'met' if mem_ratio <= 1 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
