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

This is exact autoregressive sampling of the constrained policy: each slot conditions on the
slots actually sampled before it, and p(d_i) = softmax(logits[allowed_i] / temperature), which
is what masking every other token out of the full softmax gives. top_p / top_k / stop strings
/ max_new_tokens are ignored: the completion length is fixed by the spec, and the trainer's
log-probs of a slot token are over the full vocabulary anyway (the constraint only decides
what is sampled).

Batching. All B*G rows (B prompts x G samples) go through the loop above together, in
batches of at most `max_batch_rows` rows, so a batch costs S_max forward calls (its largest
number of slots) instead of S per prompt group, and greedy verbalization of many examples
(G = 1) runs at batch size B instead of 1. Rows differ in prompt, segment lengths and number
of slots, so every chunk is padded:

- step 0 feeds `prompt + seg_0` per prompt, left-padded to a common length; step i >= 1 feeds
  `[d_{i-1}] + seg_i`, also LEFT-padded to the step's longest chunk with the pad id. Each
  row's last real token is then the chunk's last column, so `logits_to_keep=1` gives every
  row's next-slot logits and no [rows, chunk, vocab] tensor is ever built.
- a running 2D attention mask [rows, tokens so far] has 0 at every pad (the prompt's left
  pads and the pads before every later chunk) and is passed with `past_key_values`; the
  position ids count real tokens only (past real count + cumsum(chunk mask) - 1).

Holes in the middle of the mask are safe: the model turns the 2D mask into a 4D causal mask
per row, so a real token never attends to a pad (neither to the pads of its own chunk nor to
the pads cached from earlier chunks), and with the positions counting only real tokens, the
rotary embeddings — the only place absolute positions enter — see exactly the positions of
the unpadded sequence. A real token's output is therefore that of the row's real tokens alone
(up to float rounding). Pad positions compute garbage that nobody reads; the only pad queries
with no visible key are the prompt's left pads, handled as in `generate` with left padding.

Rows are ordered by number of slots, largest first (prompt groups stay contiguous), so the
rows still sampling at step i are a prefix of the batch and finished rows are simply cut
from the batch and its cache. Within a batch a prompt's `prompt + seg_0` is run once and its
cache repeated over its G rows. One generator draws every slot, batch by batch and step by
step in a fixed order: the same seed gives the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from lit_verbrec.rollout.hf import left_pad, pack_rollout, right_pad
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

    def completion(self, choices: list[int]) -> tuple[list[int], list[int]]:
        """(the completion's token ids with allowed[i][choices[i]] at slot i, each slot's position in it)."""
        tokens, positions = list(self.segments[0]), []
        for i, allowed in enumerate(self.allowed):
            positions.append(len(tokens))
            tokens += [allowed[choices[i]], *self.segments[i + 1]]
        return tokens, positions


def slot_temperature(params: SamplingParams, greedy: bool) -> float:
    """The temperature of the slot softmax: params.temperature, or 1 for greedy decoding at <= 0."""
    if params.temperature > 0:
        return params.temperature
    if not greedy:
        raise ValueError(f"sampling needs temperature > 0, got {params.temperature}")
    return 1.0


def slot_rollout(prompts: list[list[int]], n: int, completions: list[list[int]], texts: list[str],
                 choices: list[list[int]], positions: list[list[int]], logprobs: list[list[float]],
                 pad_id: int) -> Rollout:
    """A Rollout of slot samples: loss on the slot positions, and the `info` SlotSampler.generate documents."""
    rollout = pack_rollout(prompts, completions, texts, n, pad_id)
    rollout.loss_mask = torch.zeros_like(rollout.completion_mask)                   # [N, C]
    for row, slot_positions in enumerate(positions):
        rollout.loss_mask[row, slot_positions] = 1
    rollout.info["slots"] = right_pad(choices, -1)[0]                               # [N, S_max]
    rollout.info["slot_positions"] = right_pad(positions, -1)[0]                    # [N, S_max]
    slot_logprobs = torch.zeros(rollout.info["slots"].shape, dtype=torch.float32)
    for row, values in enumerate(logprobs):
        slot_logprobs[row, :len(values)] = torch.tensor(values, dtype=torch.float32)
    rollout.info["slot_logprobs"] = slot_logprobs                                    # [N, S_max]
    return rollout


def action_slot_spec(history_segments: list[str], tokenizer: PreTrainedTokenizerBase) -> SlotSpec:
    """The action verbalizer's spec: the 2L+1 texts of `text.actions.action_segments`, 0/1 slots.

    Each segment is tokenized on its own (no special tokens), and slots are the single tokens
    "0" and "1". On purpose: the completion's tokens are exactly these, and the trainer never
    re-tokenizes the completion text (it uses `completion_ids`), so generation and the log-probs
    see the same tokens even where tokenizing the joined text would merge differently.
    """
    decisions = single_token_ids(["0", "1"], tokenizer)
    segments = [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in history_segments]
    return SlotSpec(segments=segments, allowed=[list(decisions) for _ in range(len(segments) - 1)])


def single_token_ids(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The one token id of each text; a ValueError names any text that is not a single token."""
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    split = {text: found for text, found in zip(texts, ids) if len(found) != 1}
    if split:
        raise ValueError(f"slot choices must be single tokens in this tokenizer; these are not: {split}")
    return [found[0] for found in ids]


def choice_slot_spec(prefix: str, labels: list[str], tokenizer: PreTrainedTokenizerBase) -> SlotSpec:
    """One decision among `labels` after the fixed text `prefix`: "Answer: " then "A" ... "J"."""
    return SlotSpec(segments=[list(tokenizer(prefix, add_special_tokens=False)["input_ids"]), []],
                    allowed=[single_token_ids(labels, tokenizer)])



class SlotSampler:
    """Samples completions of fixed segments and decision slots; see the module docstring.

    `max_batch_rows`: at most this many rows (prompt x sample) share a forward call.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, max_batch_rows: int = 256) -> None:
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, got {max_batch_rows}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_rows = max_batch_rows

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
        for prompt, spec in zip(prompts, specs):
            if spec.num_slots and not prompt and not spec.segments[0]:
                raise ValueError("the first slot needs some context: prompt and segments[0] are both empty")
        temperature = slot_temperature(params, greedy)
        n = params.n
        device = self.model.device
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=device).manual_seed(params.seed)
        # rows with slots, most slots first (stable: a prompt's G rows stay contiguous, in order)
        order = [b * n + g for b in sorted((b for b, spec in enumerate(specs) if spec.num_slots),
                                           key=lambda b: -specs[b].num_slots) for g in range(n)]
        choices: list[list[int]] = [[] for _ in range(len(prompts) * n)]
        logprobs: list[list[float]] = [[] for _ in range(len(prompts) * n)]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(order), self.max_batch_rows):
                    rows = order[start:start + self.max_batch_rows]
                    chosen, chosen_logprobs = self._sample_rows(
                        [row // n for row in rows], prompts, specs, temperature, greedy, generator, device)
                    for row, row_chosen, row_logprobs in zip(rows, chosen, chosen_logprobs):
                        choices[row], logprobs[row] = row_chosen, row_logprobs
        finally:
            self.model.train(was_training)
        built = [specs[row // n].completion(chosen) for row, chosen in enumerate(choices)]
        completions, positions = [tokens for tokens, _ in built], [slot_positions for _, slot_positions in built]
        texts = [self.tokenizer.decode(tokens, skip_special_tokens=True) for tokens in completions]
        return slot_rollout(prompts, n, completions, texts, choices, positions, logprobs, self.tokenizer.pad_token_id)

    def _sample_rows(self, groups: list[int], prompts: list[list[int]], specs: list[SlotSpec], temperature: float,
                     greedy: bool, generator: torch.Generator | None,
                     device: torch.device) -> tuple[list[list[int]], list[list[float]]]:
        """One batch of K rows (their prompt indices, by non-increasing number of slots, a prompt's
        rows contiguous) -> (chosen indices [K][S_k], their log-probs [K][S_k])."""
        pad_id = self.tokenizer.pad_token_id
        rows = len(groups)
        num_slots = [specs[b].num_slots for b in groups]                                  # non-increasing, >= 1
        # step 0: each distinct prompt's prompt + seg_0 once, left-padded; then its cache is repeated
        firsts = {k for k in range(rows) if k == 0 or groups[k] != groups[k - 1]}
        ids, mask = left_pad([prompts[groups[k]] + specs[groups[k]].segments[0] for k in sorted(firsts)], pad_id)  # [U, T]
        ids, mask = ids.to(device), mask.to(device)
        outputs = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0),    # real tokens only; pads: 0 (masked anyway)
            past_key_values=None,  # the model starts a DynamicCache for its config
            use_cache=True,
            logits_to_keep=1,
        )
        cache, logits = outputs.past_key_values, outputs.logits[:, -1]                   # [U, V]
        if len(firsts) != rows:
            distinct = torch.tensor([int(k in firsts) for k in range(rows)]).cumsum(0) - 1  # [K] row -> its prompt
            distinct = distinct.to(device)
            cache.batch_select_indices(distinct)
            mask, logits = mask[distinct], logits[distinct]                               # [K, T], [K, V]
        lengths = mask.sum(dim=1)                                                         # [K] real tokens so far
        chosen = torch.full((rows, num_slots[0]), -1, dtype=torch.long, device=device)
        chosen_logprobs = torch.zeros((rows, num_slots[0]), dtype=torch.float32, device=device)
        previous = None                                                                   # [K_i] ids sampled last
        for i in range(num_slots[0]):
            active = sum(1 for s in num_slots if s > i)          # rows still sampling: a prefix of the batch
            if i > 0:
                if active < previous.shape[0]:                   # rows done after slot i-1 leave the batch
                    cache.batch_select_indices(torch.arange(active, device=device))
                    mask, lengths, previous = mask[:active], lengths[:active], previous[:active]
                segments = [specs[groups[k]].segments[i] for k in range(active)]
                chunk_ids, chunk_mask = left_pad([[pad_id, *segment] for segment in segments], pad_id)  # [K_i, W]
                chunk_ids, chunk_mask = chunk_ids.to(device), chunk_mask.to(device)
                width = chunk_ids.shape[1]
                first_column = torch.tensor([width - 1 - len(segment) for segment in segments], device=device)
                chunk_ids[torch.arange(active, device=device), first_column] = previous  # [d_{i-1}] + seg_i
                mask = torch.cat([mask, chunk_mask], dim=1)                               # [K_i, past + W]
                outputs = self.model(
                    input_ids=chunk_ids,
                    attention_mask=mask,
                    position_ids=(lengths[:, None] + chunk_mask.cumsum(dim=1) - 1).clamp(min=0),
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                cache, logits = outputs.past_key_values, outputs.logits[:, -1]           # [K_i, V]
                lengths = lengths + chunk_mask.sum(dim=1)
            allowed_ids, allowed_mask = right_pad([specs[groups[k]].allowed[i] for k in range(active)], 0)
            allowed_ids, allowed_mask = allowed_ids.to(device), allowed_mask.to(device)   # [K_i, A]
            scores = logits[:active].gather(1, allowed_ids).float() / temperature
            log_probs = torch.log_softmax(scores.masked_fill(allowed_mask == 0, float("-inf")), dim=-1)  # [K_i, A]
            if greedy:
                index = log_probs.argmax(dim=-1)                                          # [K_i]
            else:
                index = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(1)  # [K_i]
            chosen[:active, i] = index
            chosen_logprobs[:active, i] = log_probs.gather(1, index[:, None]).squeeze(1)
            previous = allowed_ids.gather(1, index[:, None]).squeeze(1)                   # [K_i]
        chosen_list, logprob_list = chosen.tolist(), chosen_logprobs.tolist()
        return ([values[:s] for values, s in zip(chosen_list, num_slots)],
                [values[:s] for values, s in zip(logprob_list, num_slots)])
