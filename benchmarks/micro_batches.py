"""Time of a GRPO update over micro-batches: padding-aware (ours) vs padded to the whole step.

    python tools/bench.py micro_batches [--prompts 8] [--group 4] [--micro 4] [--hidden 256] [--reps 3]

The same rollout, model (random Qwen3, 4 layers, LoRA rank 8) and loss, forward + backward
over every micro-batch:
  ours : GRPOModule's plan (rollout/micro_batches.py): groups sorted by length, each
         micro-batch cut to the columns its rows use.
  peer : consecutive slices of `--micro` rows, each padded to the longest prompt and
         completion of the whole step (what the trainer did before).
Prompt lengths are drawn uniformly from 200-1,000 tokens (user histories differ in length),
completions from 16-64. Prints the median time of each, the padded positions each runs, and
the ratios; both must give the same loss (checked).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen3Config, Qwen3ForCausalLM

from lit_verbrec.rl.logprobs import completion_logprobs
from lit_verbrec.rl.losses import grpo_loss, step_normalizer
from lit_verbrec.rollout.micro_batches import MicroBatch, plan_micro_batches, take
from lit_verbrec.rollout.types import Rollout

VOCAB = 8192


def make_rollout(prompts: int, group: int, seed: int = 0) -> Rollout:
    g = torch.Generator().manual_seed(seed)
    prompt_lens = torch.randint(200, 1001, (prompts,), generator=g).repeat_interleave(group)   # [N]
    completion_lens = torch.randint(16, 65, (prompts * group,), generator=g)                   # [N]
    P, C = int(prompt_lens.max()), int(completion_lens.max())
    prompt_mask = (torch.arange(P)[None] >= P - prompt_lens[:, None]).long()
    completion_mask = (torch.arange(C)[None] < completion_lens[:, None]).long()
    groups = torch.arange(prompts).repeat_interleave(group)
    prompt_ids = torch.randint(1, VOCAB, (prompts, P), generator=g)[groups] * prompt_mask
    completion_ids = torch.randint(1, VOCAB, (prompts * group, C), generator=g) * completion_mask
    return Rollout(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                   completion_mask=completion_mask, texts=[""] * len(groups), group=groups,
                   advantages=torch.randn(len(groups), generator=g),
                   old_logprobs=torch.full(completion_mask.shape, -9.0))


def padded_plan(rollout: Rollout, size: int) -> list[MicroBatch]:
    n = rollout.num_sequences
    return [MicroBatch(rows=torch.arange(i, min(i + size, n)), row_list=tuple(range(i, min(i + size, n))),
                       prompt_from=0, completion_to=rollout.completion_ids.shape[1]) for i in range(0, n, size)]


def update(model, rollout: Rollout, plan: list[MicroBatch]) -> tuple[float, float]:
    """(seconds, loss) of forward + backward over every micro-batch of the plan."""
    normalizer = step_normalizer("grpo", rollout.completion_mask)
    model.zero_grad(set_to_none=True)
    t0, total = time.perf_counter(), 0.0
    for part in plan:
        mb = take(rollout, part)
        lp = completion_logprobs(model, mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask,
                                 temperature=1.0, chunk=1024, prompt_groups=mb.group)["logprobs"]
        loss = grpo_loss(lp, mb.old_logprobs, mb.advantages, mb.completion_mask, normalizer=normalizer)["loss"]
        loss.backward()
        total += float(loss.detach())
    return time.perf_counter() - t0, total


def positions(plan: list[MicroBatch], P: int) -> int:
    return sum(p.size * (P - p.prompt_from + p.completion_to) for p in plan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=VOCAB, hidden_size=args.hidden, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=args.hidden // 4, intermediate_size=args.hidden * 3)
    model = get_peft_model(Qwen3ForCausalLM(config), LoraConfig(r=8, target_modules="all-linear"))
    rollout = make_rollout(args.prompts, args.group)
    P = rollout.prompt_ids.shape[1]
    plans = {"ours": plan_micro_batches(rollout.prompt_mask, rollout.completion_mask, rollout.group, args.micro),
             "peer": padded_plan(rollout, args.micro)}
    times: dict[str, list[float]] = {"ours": [], "peer": []}
    losses = {}
    for _ in range(args.reps):   # alternating, so that a busy machine slows both alike
        for name, plan in plans.items():
            seconds, losses[name] = update(model, rollout, plan)
            times[name].append(seconds)
    if abs(losses["ours"] - losses["peer"]) > 1e-4:
        raise SystemExit(f"the two plans gave different losses: {losses}")
    print(f"rollout: {args.prompts} prompts x G={args.group}, prompts 200-1000 tokens (longest {P}), "
          f"completions 16-64, micro-batches of {args.micro} rows; model hidden {args.hidden}, 4 layers, LoRA r=8")
    for name in ("ours", "peer"):
        print(f"{name}: median {statistics.median(times[name]):6.2f} s over {args.reps} reps, "
              f"{positions(plans[name], P):,} positions run")
    ratio = statistics.median(times["ours"]) / statistics.median(times["peer"])
    print(f"ratio ours / peer: time {ratio:.2f}, positions {positions(plans['ours'], P) / positions(plans['peer'], P):.2f} "
          f"(same loss {losses['ours']:.6f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
