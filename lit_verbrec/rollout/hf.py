"""Rollouts with transformers' `generate` on the trainer's own model (CPU, tests, debugging).

The engine shares the trainer's weights, so there is nothing to sync after an optimizer
step (`sync_adapter` is a no-op) and samples come from exactly the policy being trained.

Contract shared with the vLLM engine (see `lit_verbrec.rollout.types`):
- B prompts (token ids, chat template already applied) go in once each and are encoded
  once each (`_shared_prefill`); each is then sampled G = params.n times, so rows
  g*G..(g+1)*G-1 are prompt g's samples and `group` holds g.
- A completion ends at the first EOS (kept, mask 1) or at the token that completes the
  first stop string (kept, mask 1; the text is cut at the string's end), else at
  max_new_tokens. Everything after is padding with mask 0.

transformers 5.20 notes: `stop_strings` (with `tokenizer=`) only ends generation early;
where a row stops is recomputed here by decoding (`cut_at_stop`), which is also what the
vLLM engine's detokenizer does. Fields of `GenerationConfig` left at None are filled from
`model.generation_config` (e.g. Qwen3's temperature 0.6, top_k 20), so every sampling field
is set explicitly. Generation runs in eval mode, where transformers skips gradient
checkpointing (`GradientCheckpointingLayer` checkpoints only when training), so the
checkpointing setting is left untouched and the train/eval mode is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerBase,
)

from lit_verbrec.rollout.types import Rollout, SamplingParams


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids [N, P] padded on the left, mask [N, P] with 1 on tokens)."""
    width = max((len(row) for row in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row):] = 1
    return ids, mask


def right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids [N, C] padded on the right, mask [N, C] with 1 on tokens)."""
    width = max((len(row) for row in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, :len(row)] = torch.tensor(list(row), dtype=torch.long)
            mask[i, :len(row)] = 1
    return ids, mask


def pack_rollout(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], texts: list[str],
                 n: int, pad_id: int) -> Rollout:
    """B prompts and their B*n finished completions (grouped by prompt) -> a padded Rollout."""
    if len(completions) != len(prompts) * n or len(texts) != len(completions):
        raise ValueError(f"expected {len(prompts)} prompts x {n} completions and texts, "
                         f"got {len(completions)} completions, {len(texts)} texts")
    prompt_ids, prompt_mask = left_pad(prompts, pad_id)                  # [B, P]
    completion_ids, completion_mask = right_pad(completions, pad_id)     # [B*n, C]
    return Rollout(
        prompt_ids=prompt_ids.repeat_interleave(n, dim=0),              # [B*n, P]
        prompt_mask=prompt_mask.repeat_interleave(n, dim=0),            # [B*n, P]
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        texts=texts,
        group=torch.arange(len(prompts)).repeat_interleave(n),         # [B*n]
    )


def _first_stop_end(text: str, stops: Sequence[str]) -> int | None:
    """End offset of the stop string that completes first in `text`, or None."""
    ends = [text.find(stop) + len(stop) for stop in stops if stop in text]
    return min(ends) if ends else None


def cut_at_stop(tokens: list[int], stops: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], str]:
    """(tokens up to the one completing the first stop string, text cut at that string's end).

    The shortest prefix whose decoded text contains a stop string is found by bisection
    (a longer prefix decodes to a longer text, so "contains a stop" is monotone).
    """
    def decode(prefix: list[int]) -> str:
        return tokenizer.decode(prefix, skip_special_tokens=True)

    text = decode(tokens)
    if _first_stop_end(text, stops) is None:
        return tokens, text
    low, high = 1, len(tokens)  # invariant: tokens[:high] contains a stop
    while low < high:
        middle = (low + high) // 2
        if _first_stop_end(decode(tokens[:middle]), stops) is None:
            low = middle + 1
        else:
            high = middle
    text = decode(tokens[:high])
    return tokens[:high], text[:_first_stop_end(text, stops)]


def finish_completion(tokens: list[int], eos_id: int, stops: Sequence[str],
                      tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], str]:
    """Cut raw generated tokens after the first EOS, then after the first stop string."""
    if eos_id in tokens:
        tokens = tokens[:tokens.index(eos_id) + 1]
    if stops:
        return cut_at_stop(tokens, stops, tokenizer)
    return tokens, tokenizer.decode(tokens, skip_special_tokens=True)


@contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Sample from a fixed seed without moving the caller's RNG; no seed: the global RNG."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


class HFEngine:
    """`generate` on the training model itself; see the module docstring for the contract."""

    needs_adapter_sync = False
    """The trainer need not save an adapter after each step for this engine."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def close(self) -> None:
        """Nothing to free: the engine is the trainer's own model."""

    def sync_adapter(self, adapter_dir: Path | None) -> None:
        """Nothing to do: the engine samples from the trainer's live weights."""

    def generation_config(self, params: SamplingParams) -> GenerationConfig:
        return GenerationConfig(
            do_sample=True,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,  # 0: no top-k filter
            max_new_tokens=params.max_new_tokens,
            min_new_tokens=0,
            num_return_sequences=params.n,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(params.stop) or None,
            use_cache=True,
        )

    def _shared_prefill(self, ids: torch.Tensor, mask: torch.Tensor, params: SamplingParams):
        """Encode each prompt once for its n samples: (ids, mask, generation config, KV cache or None).

        `generate` with num_return_sequences=n copies every prompt n times before the prefill,
        so a 1,024-token prompt is encoded n times. Instead all but the last prompt token run
        once per prompt (positions from the mask, as `generate` counts them; logits for the last
        position only), the cache is repeated n times, and `generate` starts from the last
        prompt token of each of the B*n rows.
        """
        config = self.generation_config(params)
        if params.n == 1 or ids.shape[1] < 2:
            return ids, mask, config, None
        prefix = mask[:, :-1]
        cache = self.model(input_ids=ids[:, :-1], attention_mask=prefix, position_ids=(prefix.cumsum(-1) - 1).clamp(min=0),
                           use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(params.n)
        config.num_return_sequences = 1
        return ids.repeat_interleave(params.n, 0), mask.repeat_interleave(params.n, 0), config, cache

    def generate(self, prompts: list[list[int]], params: SamplingParams,
                 logits_processor: LogitsProcessor | None = None) -> Rollout:
        """B prompts (token ids) -> Rollout of B*params.n completions, grouped by prompt."""
        device = self.model.device
        input_ids, attention_mask = left_pad(prompts, self.tokenizer.pad_token_id)  # [B, P]
        if logits_processor is None or isinstance(logits_processor, LogitsProcessorList):
            processors = logits_processor or LogitsProcessorList()
        else:
            processors = LogitsProcessorList([logits_processor])
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), _seeded(params.seed, device):
                ids, mask, config, cache = self._shared_prefill(input_ids.to(device), attention_mask.to(device), params)
                sequences = self.model.generate(
                    input_ids=ids, attention_mask=mask, generation_config=config, logits_processor=processors,
                    tokenizer=self.tokenizer, **({"past_key_values": cache} if cache is not None else {}),
                )                                                          # [B*n, P + C']
        finally:
            self.model.train(was_training)
        generated = sequences[:, input_ids.shape[1]:].tolist()             # B*n lists of C' ids
        finished = [finish_completion(row, self.tokenizer.eos_token_id, params.stop, self.tokenizer)
                    for row in generated]
        return pack_rollout(prompts, [tokens for tokens, _ in finished], [text for _, text in finished],
                            params.n, self.tokenizer.pad_token_id)
