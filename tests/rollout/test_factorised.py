"""FactorisedSlotSampler: valid action lists, one forward per prompt, and training log-probs that
equal the sampler's (on-policy) with the decoder run once per group."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lit_verbrec.models.loading import load_policy
from lit_verbrec.models.tokenizers import build_tiny_tokenizer
from lit_verbrec.rl.logprobs import completion_logprobs
from lit_verbrec.rollout.factorised import FactorisedSlotSampler
from lit_verbrec.rollout.slots import action_slot_spec
from lit_verbrec.rollout.types import SamplingParams
from lit_verbrec.text.actions import action_segments, parse_actions

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slot_histories import SIZE, history  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    texts = [f"{h['timestamp']:%Y%m%d}, {h['item']}, 0, 1," for s in range(30) for h in history(3, s)]
    tokenizer = build_tiny_tokenizer(texts + ["Keep or drop each line of the history"], vocab_size=400)
    model = load_policy(SIZE, tokenizer, gradient_checkpointing=False, seed=0)
    histories = [history(n, 7 + b) for b, n in enumerate([5, 2, 4])]
    prompts = [tokenizer("Keep or drop each line" + " of the history" * b)["input_ids"] for b in range(3)]
    specs = [action_slot_spec(action_segments(h), tokenizer) for h in histories]
    return tokenizer, model, histories, prompts, specs


def test_samples_are_valid_and_rows_of_a_group_share_their_inputs(setup):
    tokenizer, model, histories, prompts, specs = setup
    rollout = FactorisedSlotSampler(model, tokenizer).generate(prompts, specs, SamplingParams(n=6, max_new_tokens=1, seed=1))
    assert rollout.num_sequences == 18 and rollout.target_ids.shape == rollout.completion_ids.shape
    for row, (text, g) in enumerate(zip(rollout.texts, rollout.group.tolist())):
        plan = parse_actions(text, len(histories[g]))
        assert plan is not None, text
        decisions = [int(tokenizer.decode([t])) for t in rollout.target_ids[row][rollout.loss_mask[row].bool()]]
        assert decisions == [d for pair in zip(plan.keep, plan.enrich) for d in pair]
        assert torch.equal(rollout.completion_ids[row], rollout.completion_ids[g * 6])   # same placeholders fed
    assert len({tuple(t.tolist()) for t in rollout.target_ids[:6]}) > 1                 # the samples differ


def test_training_logprobs_equal_the_samplers_and_dedup_keeps_the_gradient(setup):
    tokenizer, model, histories, prompts, specs = setup
    allowed = torch.tensor(specs[0].allowed[0])
    rollout = FactorisedSlotSampler(model, tokenizer).generate(prompts, specs, SamplingParams(n=4, max_new_tokens=1,
                                                                                              temperature=0.7, seed=2))

    def logprobs(groups):
        model.zero_grad()
        out = completion_logprobs(model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                                  rollout.completion_mask, 0.7, 64, allowed_ids=allowed,
                                  target_ids=rollout.target_ids, input_groups=groups)["logprobs"]
        (out * rollout.loss_mask).sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        return out.detach(), grads

    shared, shared_grads = logprobs(rollout.group)
    separate, separate_grads = logprobs(None)
    mask = rollout.loss_mask.bool()
    slot = rollout.info["slot_logprobs"]
    assert torch.allclose(shared[mask], separate[mask], atol=1e-5)
    assert torch.allclose(shared[mask], slot[slot != 0], atol=1e-4)                  # on-policy: sampler == trainer
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(shared_grads, separate_grads))
    with torch.no_grad():
        entropies = [completion_logprobs(model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                                         rollout.completion_mask, 0.7, 64, with_entropy=True, allowed_ids=allowed,
                                         target_ids=rollout.target_ids, input_groups=groups)["entropy"][mask]
                     for groups in (rollout.group, None)]
    assert torch.allclose(*entropies, atol=1e-5)


def test_greedy_takes_each_slots_argmax_and_is_one_forward_per_prompt_block(setup, monkeypatch):
    tokenizer, model, histories, prompts, specs = setup
    sampler = FactorisedSlotSampler(model, tokenizer)
    calls = []
    decoder_forward = model.get_base_model().model.forward
    monkeypatch.setattr(model.get_base_model().model, "forward", lambda *a, **k: calls.append(1) or decoder_forward(*a, **k))
    rollout = sampler.generate(prompts, specs, SamplingParams(n=3, max_new_tokens=1), greedy=True)
    assert len(calls) == 1                                                           # 3 prompts x 3 rows: one call
    log_probs = sampler.slot_log_probs(prompts, [s.completion([0] * s.num_slots) for s in specs], specs, 1.0)
    for b in range(3):
        assert rollout.info["slots"][3 * b, :specs[b].num_slots].tolist() == log_probs[b].argmax(-1).tolist()
