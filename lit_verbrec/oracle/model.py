"""The oracle as an LLM loaded in this process (oracle.kind=model).

For runs where the oracle is an open model on the same GPUs rather than a served one; the
model and tokenizer come in already loaded (lit_verbrec.models does the loading from
config), so this file only turns reasoner prompts into replies: the chat template with
thinking off where the template has the switch (the reward needs an answer, and a thought
that runs past max_tokens leaves none), left padding so that every prompt ends where
generation starts, batched generate, greedy unless cfg.temperature > 0.

`generate_replies` is shared with tools/serve_oracle.py's `model` backend (lit_verbrec/oracle/server_backends.py).

Unlike the network backend, an exception here is not caught: a generate that fails in
process is a bug or out-of-memory, which retrying cannot fix and which must not be hidden
as reward 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lit_verbrec.config.train_schema import OracleConfig
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.oracle.base import Oracle, OracleStats, check_batch
from lit_verbrec.text.answers import parse_answer, parse_ranking
from lit_verbrec.text.prompts import reasoner_messages

__all__ = ["Generation", "generate_replies", "ModelOracle"]


@dataclass
class Generation:
    """One reply: its text (special tokens removed) and token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int


def _template_kwargs(tokenizer) -> dict:
    """enable_thinking=False only for templates that read it (Qwen3); others ignore the rest."""
    template = tokenizer.chat_template
    if template is None:
        raise ValueError("the oracle tokenizer has no chat template; the reasoner prompt is a chat")
    if isinstance(template, dict):  # named templates: the default one is used
        template = template["default"]
    return {"enable_thinking": False} if "enable_thinking" in template else {}


def generate_replies(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int,
                     temperature: float = 0.0) -> list[Generation]:
    """One reply per conversation, generated as one left-padded batch."""
    if tokenizer.pad_token_id is None:
        raise ValueError("the oracle tokenizer has no pad token; batched generation needs one")
    kwargs = _template_kwargs(tokenizer)
    texts = [tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kwargs)
             for messages in conversations]
    # The template already holds every special token; padding_side here, not the caller's
    # tokenizer setting, decides where the pads go.
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    batch = {name: tensor.to(model.device) for name, tensor in batch.items()}
    sampling = ({"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
                if temperature > 0 else {"do_sample": False})
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id, **sampling)
    # Left padding: every prompt ends at the same column, so the new tokens start there.
    new = out[:, batch["input_ids"].shape[1]:].tolist()
    prompt_lengths = batch["attention_mask"].sum(dim=1).tolist()
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    replies = []
    for tokens, prompt_length in zip(new, prompt_lengths):
        end = next((i + 1 for i, token in enumerate(tokens) if token in stops), len(tokens))
        replies.append(Generation(tokenizer.decode(tokens[:end], skip_special_tokens=True),
                                  int(prompt_length), end))
    return replies


class ModelOracle(Oracle):
    """Reasoner prompts answered by an in-process causal LM, batch_size prompts at a time."""

    def __init__(self, model, tokenizer, catalog: Catalog, cfg: OracleConfig, batch_size: int = 8) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        _template_kwargs(tokenizer)  # fail at construction, not at the first reward
        self.model = model
        self.tokenizer = tokenizer
        self.catalog = catalog
        self.cfg = cfg
        self.batch_size = batch_size
        self._stats = OracleStats()

    def choose(self, verbalizations: list[str], candidates: list[list[str]]) -> list[int | None]:
        replies = self._replies(verbalizations, candidates, ranking=False)
        return self._parsed(replies, [parse_answer(r.text, c, self.catalog) for r, c in zip(replies, candidates)])

    def rank(self, verbalizations: list[str], candidates: list[list[str]]) -> list[list[int] | None]:
        replies = self._replies(verbalizations, candidates, ranking=True)
        return self._parsed(replies, [parse_ranking(r.text, len(c)) for r, c in zip(replies, candidates)])

    def _replies(self, verbalizations: list[str], candidates: list[list[str]], ranking: bool) -> list[Generation]:
        check_batch(verbalizations, candidates)
        conversations = [reasoner_messages(text, cands, self.catalog, with_metadata=True, ranking=ranking)
                         for text, cands in zip(verbalizations, candidates)]
        was_training = self.model.training
        self.model.eval()
        try:
            replies: list[Generation] = []
            for start in range(0, len(conversations), self.batch_size):
                replies += generate_replies(self.model, self.tokenizer, conversations[start:start + self.batch_size],
                                            self.cfg.max_tokens, self.cfg.temperature)
        finally:
            self.model.train(was_training)
        return replies

    def _parsed(self, replies: list[Generation], answers: list):
        """Count each reply's tokens and whether it parsed; return the parsed answers."""
        for reply, answer in zip(replies, answers):
            self._stats.invalid_answers += answer is None
            self._stats.add_usage(reply.prompt_tokens, reply.completion_tokens, self.cfg)
        self._stats.examples += len(answers)
        self._stats.requests += len(answers)
        return answers

    def stats(self) -> dict:
        return self._stats.as_dict()
