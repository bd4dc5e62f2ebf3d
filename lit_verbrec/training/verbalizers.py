"""The four verbalizers of the paper (section 4.1) behind one interface.

    template   the paper's fixed template (no model)
    zero_shot  the LLM, untrained, prompted with explicit heuristics
    action     per-line keep/enrich decisions, sampled with the slot sampler (every sample is a
               valid action list) and executed deterministically (text/actions.py)
    rewrite    free text from the rollout engine

`sample` gives G stochastic verbalizations per example for training (a Rollout whose
`render`ed texts the oracle reads); `verbalize` gives one greedy verbalization per example
for validation, the stage-2 cache and evaluation. An example is a row of the examples table
as a dict (history entries as dicts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch

from lit_verbrec.config.console import progress
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.rollout.factorised import FactorisedSlotSampler
from lit_verbrec.rollout.slots import SlotSampler, SlotSpec, action_slot_spec
from lit_verbrec.rollout.types import Rollout, SamplingParams
from lit_verbrec.rollout.types import greedy as greedy_params
from lit_verbrec.text.actions import ActionPlan, action_segments, execute_actions
from lit_verbrec.text.template import verbalize_template
from lit_verbrec.text.verbalizer_prompts import verbalizer_messages


def chat_prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a chat prompt ending with the assistant turn's opening (thinking off)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class TemplateVerbalizer:
    kind = "template"

    def __init__(self, catalog: Catalog, max_tags: int = 3, metadata: Sequence[str] = ()) -> None:
        self.catalog, self.max_tags, self.metadata = catalog, max_tags, tuple(metadata)

    def template(self, history: list[dict]) -> str:
        """The raw template with text.metadata's fields: here the text itself."""
        return verbalize_template(history, self.catalog, self.metadata, self.max_tags)

    def verbalize(self, examples: list[dict], batch_size: int = 0) -> list[str]:
        return [self.template(e["history"]) for e in examples]


class ActionVerbalizer:
    kind = "action"

    def __init__(self, policy, tokenizer, catalog: Catalog, full_lines: bool, max_tags: int = 3,
                 factorised: bool = False) -> None:
        self.policy, self.tokenizer, self.catalog = policy, tokenizer, catalog
        self.full_lines, self.max_tags = full_lines, max_tags
        # sequential: each decision sees the earlier ones; factorised: one forward pass per prompt
        self.sampler = FactorisedSlotSampler(policy, tokenizer) if factorised else SlotSampler(policy, tokenizer)
        spec = action_slot_spec(["", ""], tokenizer)   # the "0"/"1" ids, checked single tokens
        self.decision_ids = torch.tensor(spec.allowed[0])

    def template(self, history: list[dict]) -> str:
        """The plain template: the action verbalizer decides per line what metadata to add
        (config refuses text.metadata with verbalizer.kind=action)."""
        return verbalize_template(history, self.catalog)

    def prompts(self, examples: list[dict]) -> list[list[int]]:
        if self.full_lines:  # the lines are in the answer's fixed text: one short prompt for all
            return [chat_prompt_ids(self.tokenizer, verbalizer_messages("action_full", None))] * len(examples)
        return [chat_prompt_ids(self.tokenizer, verbalizer_messages(
            "action", self.template(e["history"]))) for e in examples]

    def specs(self, examples: list[dict]) -> list[SlotSpec]:
        catalog = self.catalog if self.full_lines else None
        return [action_slot_spec(action_segments(e["history"], catalog), self.tokenizer) for e in examples]

    def sample(self, examples: list[dict], params: SamplingParams, greedy: bool = False) -> Rollout:
        return self.sampler.generate(self.prompts(examples), self.specs(examples), params, greedy=greedy)

    def plans(self, rollout: Rollout) -> list[ActionPlan]:
        slots = rollout.info["slots"]                                              # [N, S] chosen index
        return [ActionPlan.from_slots([int(d) for d in row if d >= 0]) for row in slots]

    def render(self, examples: list[dict], rollout: Rollout) -> list[str]:
        return [execute_actions(examples[g]["history"], plan, self.catalog, self.max_tags)
                for g, plan in zip(rollout.group.tolist(), self.plans(rollout))]

    def verbalize(self, examples: list[dict], batch_size: int = 16) -> list[str]:
        return greedy_verbalizations(self, examples, batch_size, max_new_tokens=1)  # the spec fixes the length


class RewriteVerbalizer:
    """Free-text verbalization (`rewrite`, trained) or its untrained heuristic twin (`zero_shot`)."""

    def __init__(self, engine, tokenizer, catalog: Catalog, kind: str = "rewrite", max_new_tokens: int = 512,
                 batch_size: int = 16, metadata: Sequence[str] = (), max_tags: int = 3, length_cap: float = 0.0) -> None:
        self.engine, self.tokenizer, self.catalog = engine, tokenizer, catalog
        # > 0: a call's completions stop at length_cap x its longest template (in tokens), at most
        # max_new_tokens. A fixed cap below the plateau's ratio makes the length reward unreachable
        # (1024 tokens of a ~4k-token 100-line template: ratio <= 0.25 < length_low 0.3), and beyond
        # reward.length_zero_high the length reward is 0 anyway.
        self.length_cap = length_cap
        self.raw = TemplateVerbalizer(catalog, max_tags, metadata)   # its input: text.metadata's fields on each line
        self.kind, self.max_new_tokens = kind, max_new_tokens
        self.batch_size = batch_size   # examples per `verbalize` sampling call; 0: all at once (vLLM)
        self.decision_ids = None

    def prompts(self, examples: list[dict]) -> list[list[int]]:
        return [chat_prompt_ids(self.tokenizer, verbalizer_messages(
            self.kind, self.template(e["history"]))) for e in examples]

    def template(self, history: list[dict]) -> str:
        """Its input: the raw template with text.metadata's fields (the paper's raw format has year and plot)."""
        return self.raw.template(history)

    def completion_budget(self, examples: list[dict], max_new_tokens: int) -> int:
        """Most tokens a completion of `examples` may have: `max_new_tokens`, or below it
        ceil(length_cap x the longest template's tokens) when length_cap is set."""
        if not self.length_cap or not examples:
            return max_new_tokens
        longest = max(len(self.tokenizer(self.template(e["history"]), add_special_tokens=False)["input_ids"])
                      for e in examples)
        return max(1, min(max_new_tokens, math.ceil(self.length_cap * longest)))

    def sample(self, examples: list[dict], params: SamplingParams, greedy: bool = False) -> Rollout:
        params = replace(params, max_new_tokens=self.completion_budget(examples, params.max_new_tokens))
        return self.engine.generate(self.prompts(examples), greedy_params(params) if greedy else params)

    def render(self, examples: list[dict], rollout: Rollout) -> list[str]:
        return [text.strip() for text in rollout.texts]

    def verbalize(self, examples: list[dict], batch_size: int | None = None) -> list[str]:
        size = self.batch_size if batch_size is None else batch_size
        return greedy_verbalizations(self, examples, size, self.max_new_tokens)


def greedy_verbalizations(verbalizer, examples: list[dict], batch_size: int, max_new_tokens: int) -> list[str]:
    """One greedy verbalization per example, `batch_size` examples per sampling call (0: all)."""
    texts = []
    batch_size = batch_size or max(1, len(examples))
    several = len(examples) > batch_size   # a bar for work of more than one call
    with progress(len(examples) if several else 0, f"{verbalizer.kind} verbalizer", leave=False) as bar:
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            rollout = verbalizer.sample(chunk, SamplingParams(n=1, max_new_tokens=max_new_tokens), greedy=True)
            texts += verbalizer.render(chunk, rollout)
            bar.update(len(chunk))
    return texts
