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
from lit_verbrec.rollout.hf import left_pad, pack_rollout, right_pad
from lit_verbrec.rollout.slots import SlotSpec
from lit_verbrec.rollout.types import Rollout, SamplingParams


class FactorisedSlotSampler:
    """Same interface and `info` as SlotSampler; see the module docstring for the policy."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, max_batch_prompts: int = 32) -> None:
        self.model, self.tokenizer, self.max_batch_prompts = model, tokenizer, max_batch_prompts

    def generate(self, prompts: list[list[int]], specs: list[SlotSpec], params: SamplingParams,
                 greedy: bool = False) -> Rollout:
        if len(prompts) != len(specs):
            raise ValueError(f"got {len(prompts)} prompts and {len(specs)} specs")
        temperature = params.temperature if params.temperature > 0 else 1.0
        if params.temperature <= 0 and not greedy:
            raise ValueError(f"sampling needs temperature > 0, got {params.temperature}")
        generator = None if params.seed is None else torch.Generator(self.model.device).manual_seed(params.seed)
        fed, fed_positions = zip(*(self._placeholder_completion(spec) for spec in specs)) if specs else ((), ())
        log_probs = self._slot_log_probs(prompts, list(fed), list(fed_positions), specs, temperature)  # B x [S_b, A]
        n = params.n
        completions, targets, choices, chosen_logprobs, positions = [], [], [], [], []
        for b, spec in enumerate(specs):
            lp = log_probs[b]                                                             # [S, A]
            if greedy:
                index = lp.argmax(dim=-1).expand(n, -1) if lp.numel() else torch.zeros(n, 0, dtype=torch.long)
            elif lp.numel():
                index = torch.multinomial(lp.exp(), n, replacement=True, generator=generator).T   # [n, S]
            else:
                index = torch.zeros(n, 0, dtype=torch.long)
            for row in index.tolist():
                target = list(fed[b])
                for slot, (pos, k) in enumerate(zip(fed_positions[b], row)):
                    target[pos] = spec.allowed[slot][k]
                completions.append(list(fed[b]))
                targets.append(target)
                choices.append(row)
                chosen_logprobs.append([float(lp[s, k]) for s, k in enumerate(row)])
                positions.append(list(fed_positions[b]))
        texts = [self.tokenizer.decode(t, skip_special_tokens=True) for t in targets]
        rollout = pack_rollout(prompts, completions, texts, n, self.tokenizer.pad_token_id)
        rollout.target_ids = right_pad(targets, self.tokenizer.pad_token_id)[0]           # [N, C]
        rollout.loss_mask = torch.zeros_like(rollout.completion_mask)                     # [N, C]
        for row, slot_positions in enumerate(positions):
            rollout.loss_mask[row, slot_positions] = 1
        rollout.info["slots"] = right_pad(choices, -1)[0]                                 # [N, S_max]
        rollout.info["slot_positions"] = right_pad(positions, -1)[0]                      # [N, S_max]
        slot_logprobs = torch.zeros(rollout.info["slots"].shape, dtype=torch.float32)      # [N, S_max]
        for row, values in enumerate(chosen_logprobs):
            slot_logprobs[row, :len(values)] = torch.tensor(values, dtype=torch.float32)
        rollout.info["slot_logprobs"] = slot_logprobs
        return rollout

    @staticmethod
    def _placeholder_completion(spec: SlotSpec) -> tuple[list[int], list[int]]:
        """(the completion with each slot holding its first allowed token, the slots' positions)."""
        tokens, positions = list(spec.segments[0]), []
        for i, allowed in enumerate(spec.allowed):
            positions.append(len(tokens))
            tokens += [allowed[0], *spec.segments[i + 1]]
        return tokens, positions

    def _slot_log_probs(self, prompts, fed, fed_positions, specs, temperature: float) -> list[torch.Tensor]:
        """Per prompt, [S, A] log-probs of each slot's allowed tokens (-inf past a slot's own count)."""
        out: list[torch.Tensor] = []
        decoder, weight = decoder_and_head(self.model)      # logits only at the slots: never [U, T, V]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(prompts), self.max_batch_prompts):
                    block = range(start, min(start + self.max_batch_prompts, len(prompts)))
                    ids, mask = left_pad([prompts[b] + fed[b] for b in block], self.tokenizer.pad_token_id)  # [U, T]
                    ids, mask = ids.to(self.model.device), mask.to(self.model.device)
                    hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False,
                                     position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0)).last_hidden_state  # [U, T, H]
                    for u, b in enumerate(block):
                        offset = ids.shape[1] - len(fed[b])            # where the completion starts in the row
                        before = [offset + p - 1 for p in fed_positions[b]]                # [S] positions predicting a slot
                        allowed, allowed_mask = right_pad(specs[b].allowed, 0)            # [S, A]
                        allowed, allowed_mask = allowed.to(ids.device), allowed_mask.to(ids.device)
                        h = hidden[u, before].float()                                       # [S, H]
                        scores = (h[:, None, :] * weight[allowed].float()).sum(-1) / temperature   # [S, A]
                        out.append(torch.log_softmax(scores.masked_fill(allowed_mask == 0, float("-inf")), -1).cpu())
        finally:
            self.model.train(was_training)
        return out
