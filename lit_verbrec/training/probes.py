"""Decision probabilities of the action verbalizer by kind of line: does the policy learn to filter?

Validation accuracy says whether the verbalizer got better, not *what* it learned. This probe
reads the policy's own distribution on a fixed batch of examples: for each history line the
probability of keep (k = 1) and of enrich (m = 1), averaged per line class, e.g.

    probe/p_keep/noise  probe/p_enrich/noise  probe/p_keep/taste  probe/p_enrich/taste

A policy that learns to *filter* drives P(enrich | noise) (and P(keep | noise)) down while
P(enrich | taste) goes up; one that only learns to enrich raises both. The class of a line is
the synthetic log's hidden `origin` column when the history has it (taste, noise, dislike,
household), else its event. The probabilities are read with placeholders at the earlier slots
(rollout/factorised.py): exact for the factorised policy, the policy's decision given
"0"s before it for the sequential one. Greedy decisions are P > 0.5.
"""

from __future__ import annotations

from collections import defaultdict

import lightning.pytorch as pl
import torch

from lit_verbrec.rollout.factorised import FactorisedSlotSampler
from lit_verbrec.training.callbacks import EveryNSteps


def line_class(entry: dict) -> str:
    """The line's class: the synthetic log's `origin` if present, else its event."""
    return str(entry.get("origin") or entry["event"])


def decision_probabilities(verbalizer, examples: list[dict]) -> dict[str, float]:
    """{"p_keep/<class>": mean P(k=1), "p_enrich/<class>": mean P(m=1)} over the lines of `examples`."""
    sampler = FactorisedSlotSampler(verbalizer.policy, verbalizer.tokenizer)
    specs = verbalizer.specs(examples)
    fed = [spec.completion([0] * spec.num_slots) for spec in specs]
    log_probs = sampler.slot_log_probs(verbalizer.prompts(examples), fed, specs, temperature=1.0)  # B x [2L, 2]
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])   # class -> [keep, enrich, lines]
    for example, lp in zip(examples, log_probs):
        p_one = lp[:, 1].exp()                                            # [2L] P(decision = "1")
        for t, entry in enumerate(example["history"]):
            acc = sums[line_class(entry)]
            acc[0] += float(p_one[2 * t])
            acc[1] += float(p_one[2 * t + 1])
            acc[2] += 1
    out = {}
    for cls, (keep, enrich, n) in sorted(sums.items()):
        out[f"p_keep/{cls}"] = keep / n
        out[f"p_enrich/{cls}"] = enrich / n
    return out


class DecisionProbe(EveryNSteps):
    """Every `every_n_steps` (and before training), log `probe/<decision_probabilities>`."""

    def __init__(self, examples: list[dict], every_n_steps: int) -> None:
        self.examples, self.every_n_steps = examples, every_n_steps
        self.history: list[dict] = []

    def measure(self, trainer: pl.Trainer, module) -> None:
        with torch.no_grad():
            probs = decision_probabilities(module.verbalizer, self.examples)
        self.history.append({"step": trainer.global_step, **probs})
        for logger in trainer.loggers:
            logger.log_metrics({f"probe/{k}": v for k, v in probs.items()}, step=trainer.global_step)
