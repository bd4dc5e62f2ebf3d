"""Exact, fast constrained sampling when everything but a few decision slots is fixed text.

The action verbalizer's completion is `seg_0 d_0 seg_1 d_1 ... d_{S-1} seg_S`: fixed token
segments (forced by the history) around S single-token decision slots (`0`/`1`). Decoding it
with `generate` and a forcing logits processor spends one forward pass per token, ~95% of
them on tokens whose value is already known. With a KV cache the fixed text can instead be
fed in whole chunks, and the model is only asked for a distribution where there is a choice:

    forward(prompt + seg_0)         -> logits at the last position -> sample d_0 among allowed[0]
    forward([d_0] + seg_1)          -> sample d_1
    ...
    forward([d_{S-2}] + seg_{S-1})  -> sample d_{S-1}; then append seg_S (no forward needed)

That is S forward calls per prompt instead of one per completion token, and it is exact
autoregressive sampling of the constrained policy: each slot conditions on the slots actually
sampled before it, and p(d_i) = softmax(logits[allowed_i] / temperature), which is what
masking every other token out of the full softmax gives. top_p / top_k / stop strings /
max_new_tokens are ignored: the completion length is fixed by the spec, and the trainer's
log-probs of a slot token are over the full vocabulary anyway (the constraint only decides
what is sampled).

One prompt's group of G samples is processed at a time. Its rows share every segment length,
so there is no padding inside the loop: the attention mask is all ones and the position ids
are simply past_length + arange(chunk). The prompt (+ seg_0) is run once at batch 1 and its
cache repeated G times, since all G rows see the same prefix before the first slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from lit_verbrec.rollout.hf import pack_rollout, right_pad
from lit_verbrec.rollout.types import Rollout, SamplingParams


@dataclass(frozen=True)
class SlotSpec:
    segments: list[list[int]]   # S+1 fixed token-id segments; segment i precedes slot i, the last follows the last slot
    allowed: list[list[int]]    # S lists: the token ids slot i may take (e.g. [id("0"), id("1")])

    def __post_init__(self) -> None:
        if len(self.segments) != len(self.allowed) + 1:
            raise ValueError(f"a SlotSpec needs len(segments) == len(allowed) + 1, "
                             f"got {len(self.segments)} segments and {len(self.allowed)} slots")
        if any(not ids for ids in self.allowed):
            raise ValueError("every slot needs at least one allowed token id")

    @property
    def num_slots(self) -> int:
        return len(self.allowed)


def action_slot_spec(history_segments: list[str], tokenizer: PreTrainedTokenizerBase) -> SlotSpec:
    """The action verbalizer's spec: the 2L+1 texts of `text.actions.action_segments`, 0/1 slots.

    Each segment is tokenized on its own (no special tokens), and slots are the single tokens
    "0" and "1". On purpose: the completion's tokens are exactly these, and the trainer never
    re-tokenizes the completion text (it uses `completion_ids`), so generation and the log-probs
    see the same tokens even where tokenizing the joined text would merge differently.
    """
    decisions = []
    for digit in ("0", "1"):
        ids = tokenizer(digit, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"decision {digit!r} must be a single token in this tokenizer, got ids {ids}")
        decisions.append(ids[0])
    segments = [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in history_segments]
    return SlotSpec(segments=segments, allowed=[list(decisions) for _ in range(len(segments) - 1)])


class SlotSampler:
    """Samples completions of fixed segments and decision slots; see the module docstring."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def generate(self, prompts: list[list[int]], specs: list[SlotSpec], params: SamplingParams,
                 greedy: bool = False) -> Rollout:
        """B prompts, each with its spec -> Rollout of B*params.n completions, grouped by prompt.

        `greedy`: argmax at every slot (evaluation). `info`: "slots" [N, S_max] the index into
        `allowed[i]` chosen at slot i (-1 past a row's S), "slot_logprobs" [N, S_max] the log-prob
        of that choice under softmax(logits[allowed] / temperature) (temperature 1 when greedy with
        temperature <= 0; 0.0 padding), "slot_positions" [N, S_max] its index in the completion (-1).
        """
        if len(prompts) != len(specs):
            raise ValueError(f"got {len(prompts)} prompts and {len(specs)} specs")
        temperature = params.temperature
        if temperature <= 0:
            if not greedy:
                raise ValueError(f"sampling needs temperature > 0, got {temperature}")
            temperature = 1.0
        device = self.model.device
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=device).manual_seed(params.seed)
        completions: list[list[int]] = []
        choices: list[list[int]] = []
        logprobs: list[list[float]] = []
        positions: list[list[int]] = []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for prompt, spec in zip(prompts, specs):
                    chosen, chosen_logprobs = self._sample_group(prompt, spec, params.n, temperature, greedy,
                                                                 generator, device)   # [G, S], [G, S]
                    for row in range(params.n):
                        tokens, slot_positions = list(spec.segments[0]), []
                        for i, allowed in enumerate(spec.allowed):
                            slot_positions.append(len(tokens))
                            tokens += [allowed[chosen[row][i]], *spec.segments[i + 1]]
                        completions.append(tokens)
                        choices.append(chosen[row])
                        logprobs.append(chosen_logprobs[row])
                        positions.append(slot_positions)
        finally:
            self.model.train(was_training)
        texts = [self.tokenizer.decode(tokens, skip_special_tokens=True) for tokens in completions]
        rollout = pack_rollout(prompts, completions, texts, params.n, self.tokenizer.pad_token_id)
        loss_mask = torch.zeros_like(rollout.completion_mask)                   # [N, C]
        for row, slot_positions in enumerate(positions):
            loss_mask[row, slot_positions] = 1
        rollout.loss_mask = loss_mask
        rollout.info["slots"] = right_pad(choices, -1)[0]                       # [N, S_max]
        rollout.info["slot_positions"] = right_pad(positions, -1)[0]            # [N, S_max]
        slot_logprobs = torch.zeros(rollout.info["slots"].shape, dtype=torch.float32)
        for row, values in enumerate(logprobs):
            slot_logprobs[row, :len(values)] = torch.tensor(values, dtype=torch.float32)
        rollout.info["slot_logprobs"] = slot_logprobs                            # [N, S_max]
        return rollout

    def _sample_group(self, prompt: list[int], spec: SlotSpec, n: int, temperature: float, greedy: bool,
                      generator: torch.Generator | None, device: torch.device) -> tuple[list[list[int]], list[list[float]]]:
        """G = n samples of one prompt's slots -> (chosen indices [G][S], their log-probs [G][S])."""
        if spec.num_slots == 0:
            return [[] for _ in range(n)], [[] for _ in range(n)]
        if not prompt and not spec.segments[0]:
            raise ValueError("the first slot needs some context: prompt and segments[0] are both empty")
        cache = None
        past = 0                                                # tokens already in the cache
        previous = None                                         # [G] ids sampled at the last slot
        chosen = torch.empty((n, spec.num_slots), dtype=torch.long)
        chosen_logprobs = torch.empty((n, spec.num_slots), dtype=torch.float32)
        for i, allowed in enumerate(spec.allowed):
            if i == 0:
                # the shared prefix once, at batch 1; its cache is repeated for the G rows below
                chunk = torch.tensor([prompt + spec.segments[0]], dtype=torch.long, device=device)  # [1, T]
            else:
                fixed = torch.tensor(spec.segments[i], dtype=torch.long, device=device)  # [T - 1]
                chunk = torch.cat([previous[:, None], fixed.expand(n, -1)], dim=1)        # [G, T]
            width = chunk.shape[1]
            outputs = self.model(
                input_ids=chunk,
                attention_mask=torch.ones((chunk.shape[0], past + width), dtype=torch.long, device=device),
                position_ids=torch.arange(past, past + width, device=device).expand(chunk.shape[0], -1),
                past_key_values=cache,  # None: the model starts a DynamicCache for its config
                use_cache=True,
                logits_to_keep=1,
            )
            cache, past = outputs.past_key_values, past + width
            if i == 0:
                cache.batch_repeat_interleave(n)
            allowed_ids = torch.tensor(allowed, dtype=torch.long, device=device)        # [A]
            scores = outputs.logits[:, -1, allowed_ids].float() / temperature             # [1 or G, A]
            log_probs = torch.log_softmax(scores, dim=-1).expand(n, -1)                   # [G, A]
            if greedy:
                index = log_probs.argmax(dim=-1)                                          # [G]
            else:
                index = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(1)  # [G]
            chosen[:, i] = index.cpu()
            chosen_logprobs[:, i] = log_probs.gather(1, index[:, None]).squeeze(1).cpu()
            previous = allowed_ids[index]                                                 # [G]
        return chosen.tolist(), chosen_logprobs.tolist()

