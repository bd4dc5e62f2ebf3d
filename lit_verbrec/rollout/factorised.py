"""Factorised slot sampling: every decision drawn from ONE forward pass per prompt.

The slot sampler (rollout/slots.py) is autoregressive: slot i conditions on the decisions
sampled before it, so the G samples of a prompt differ in their inputs and every sample needs
its own forward pass, in sampling and again in training. Here each slot's input holds a fixed
placeholder (the slot's first allowed token, e.g. `0`) instead of the sampled decision:

    input   prompt  seg_0  ph  seg_1  ph ... ph  seg_S        identical for all G samples
    policy  pi(d | x) = prod_i softmax(W h_{slot_i - 1} restricted to allowed_i / tau)[d_i]

a product of independent choices given the history, each read from the hidden state just
before its slot (a valid policy; the learnability experiment of notes/learnability.md is
this one). The G samples of a prompt then share one forward pass when sampling (draw G
decisions per slot from the same distribution) and when training: the rollout feeds the
placeholders (`completion_ids`) and scores the decisions (`target_ids`), and
`completion_logprobs` runs the decoder once per group. G times fewer decoder tokens, which
is what makes G = 16 affordable on a CPU. What is lost: a decision cannot depend on the
earlier ones (it cannot say "I kept enough lines already"); for large models on GPUs the
autoregressive sampler with vLLM-speed generation is the default.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from lit_verbrec.rl.logprobs import decoder_and_head
from lit_verbrec.rollout.hf import left_pad, right_pad
from lit_verbrec.rollout.slots import SlotSpec, slot_rollout, slot_temperature
from lit_verbrec.rollout.types import Rollout, SamplingParams


class FactorisedSlotSampler:
    """Same interface and `info` as SlotSampler; see the module docstring for the policy."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, max_batch_prompts: int = 32) -> None:
        self.model, self.tokenizer, self.max_batch_prompts = model, tokenizer, max_batch_prompts

    def generate(self, prompts: list[list[int]], specs: list[SlotSpec], params: SamplingParams,
                 greedy: bool = False) -> Rollout:
        if len(prompts) != len(specs):
            raise ValueError(f"got {len(prompts)} prompts and {len(specs)} specs")
        temperature = slot_temperature(params, greedy)
        generator = None if params.seed is None else torch.Generator(self.model.device).manual_seed(params.seed)
        fed = [spec.completion([0] * spec.num_slots) for spec in specs]     # placeholders: each slot's allowed[0]
        log_probs = self.slot_log_probs(prompts, fed, specs, temperature)   # B x [S_b, A]
        n = params.n
        completions, targets, choices, chosen_logprobs, positions = [], [], [], [], []
        for (tokens, slot_positions), spec, lp in zip(fed, specs, log_probs):
            if not spec.num_slots:
                index = torch.zeros(n, 0, dtype=torch.long)
            elif greedy:
                index = lp.argmax(dim=-1).expand(n, -1)                                      # [n, S]
            else:
                index = torch.multinomial(lp.exp(), n, replacement=True, generator=generator).T   # [n, S]
            chosen = lp[torch.arange(spec.num_slots), index].tolist()                       # [n, S]
            for row, row_logprobs in zip(index.tolist(), chosen):
                completions.append(tokens)
                targets.append(spec.completion(row)[0])
                choices.append(row)
                chosen_logprobs.append(row_logprobs)
                positions.append(slot_positions)
        target_ids = right_pad(targets, self.tokenizer.pad_token_id)[0]                   # [N, C]
        # one batch call on a tensor: decode() per row spends most of its time converting lists
        texts = self.tokenizer.batch_decode(target_ids, skip_special_tokens=True)
        rollout = slot_rollout(prompts, n, completions, texts, choices, positions, chosen_logprobs,
                               self.tokenizer.pad_token_id)
        rollout.target_ids = target_ids
        return rollout

    def slot_log_probs(self, prompts, fed, specs, temperature: float) -> list[torch.Tensor]:
        """Per prompt, [S, A] log-probs of each slot's allowed tokens (-inf past a slot's own count)."""
        out: list[torch.Tensor] = []
        decoder, weight = decoder_and_head(self.model)      # logits only at the slots: never [U, T, V]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(prompts), self.max_batch_prompts):
                    block = range(start, min(start + self.max_batch_prompts, len(prompts)))
                    ids, mask = left_pad([prompts[b] + fed[b][0] for b in block], self.tokenizer.pad_token_id)  # [U, T]
                    ids, mask = ids.to(self.model.device), mask.to(self.model.device)
                    hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False,
                                     position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0)).last_hidden_state  # [U, T, H]
                    for u, b in enumerate(block):
                        tokens, slot_positions = fed[b]
                        offset = ids.shape[1] - len(tokens)            # where the completion starts in the row
                        before = [offset + p - 1 for p in slot_positions]                  # [S] positions predicting a slot
                        allowed, allowed_mask = right_pad(specs[b].allowed, 0)            # [S, A]
                        allowed, allowed_mask = allowed.to(ids.device), allowed_mask.to(ids.device)
                        h = hidden[u, before].float()                                       # [S, H]
                        scores = (h[:, None, :] * weight[allowed].float()).sum(-1) / temperature   # [S, A]
                        out.append(torch.log_softmax(scores.masked_fill(allowed_mask == 0, float("-inf")), -1).cpu())
        finally:
            self.model.train(was_training)
        return out
