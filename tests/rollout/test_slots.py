"""SlotSampler: valid action lists, exact per-slot distributions, S_max forward calls per batch of rows."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

from lit_verbrec.models.loading import load_policy
from lit_verbrec.models.tokenizers import build_tiny_tokenizer
from lit_verbrec.rollout.slots import SlotSampler, SlotSpec, action_slot_spec
from lit_verbrec.rollout.types import SamplingParams
from lit_verbrec.text.actions import ActionPlan, action_segments, parse_actions, render_actions

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slot_histories import SIZE, history  # noqa: E402


def corpus() -> list[str]:
    rng = random.Random(0)
    texts = []
    for seed in range(40):
        lines = history(4, seed)
        plan = ActionPlan.from_slots([rng.randrange(2) for _ in range(8)])
        texts.append(render_actions(lines, plan))
    return texts + [f"Keep or drop each line {i}: the user watched item {i * 37 % 1000}." for i in range(40)]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer(corpus(), vocab_size=400)


@pytest.fixture(scope="module")
def model(tokenizer):
    return load_policy(SIZE, tokenizer, gradient_checkpointing=True, seed=0)


def chat(tokenizer, text: str) -> list[int]:
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                         return_dict=False)


def action_batch(tokenizer, n_lines: list[int], seed: int = 0):
    """Prompts of different lengths with their histories and action specs."""
    histories = [history(n, seed * 100 + b) for b, n in enumerate(n_lines)]
    prompts = [chat(tokenizer, "Keep or drop each line" + " of the user history" * b) for b in range(len(n_lines))]
    specs = [action_slot_spec(action_segments(h), tokenizer) for h in histories]
    return prompts, histories, specs


def count_forwards(model, monkeypatch) -> list[torch.Tensor]:
    """Wrap model.forward; returns the list of last-position logits [rows, V] of each call."""
    calls, forward = [], model.forward

    def counted(*args, **kwargs):
        outputs = forward(*args, **kwargs)
        calls.append(outputs.logits[:, -1].detach().clone())
        return outputs
    monkeypatch.setattr(model, "forward", counted)
    return calls


def full_logits(model, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """One forward without a cache over prompt + completion -> logits [len, V]."""
    model.eval()
    with torch.no_grad():
        ids = torch.tensor([prompt + completion])
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits[0]


def test_every_sample_is_a_valid_action_list(model, tokenizer):
    n_lines = [3, 5, 2]
    for seed in range(20):
        prompts, histories, specs = action_batch(tokenizer, n_lines, seed)
        rollout = SlotSampler(model, tokenizer).generate(prompts, specs, SamplingParams(n=8, max_new_tokens=0, seed=seed))
        assert rollout.group.tolist() == [b for b in range(3) for _ in range(8)]
        for row in range(24):
            b, spec = row // 8, specs[row // 8]
            slots = rollout.info["slots"][row, :spec.num_slots].tolist()
            assert (rollout.info["slots"][row, spec.num_slots:] == -1).all()
            plan = parse_actions(rollout.texts[row], n_lines[b])
            assert plan == ActionPlan.from_slots(slots)
            assert rollout.texts[row] == render_actions(histories[b], plan)
            expected = list(spec.segments[0])
            for i, choice in enumerate(slots):
                expected += [spec.allowed[i][choice], *spec.segments[i + 1]]
            width = len(expected)
            assert rollout.completion_ids[row, :width].tolist() == expected
            assert rollout.completion_mask[row].tolist() == [1] * width + [0] * (rollout.completion_ids.shape[1] - width)


def slot0_runs(specs, n: int, max_batch_rows: int) -> int:
    """How many times slot 0's logits are computed: once per prompt in each batch holding its rows
    (rows ordered by decreasing number of slots, a prompt's rows contiguous, batches of max_batch_rows)."""
    order = [b for b in sorted(range(len(specs)), key=lambda b: -specs[b].num_slots) if specs[b].num_slots
             for _ in range(n)]
    return sum(len(set(order[start:start + max_batch_rows])) for start in range(0, len(order), max_batch_rows))


def assert_exact(model, rollout, prompts, specs, n, temperature, calls, max_batch_rows=256):
    """Every slot's log-prob (and the logits it came from) equals an uncached forward of that row's
    real tokens alone (no padding); every cached logits row is accounted for."""
    cached = torch.cat(calls)                                                  # [all rows of all calls, V]
    expected_rows = slot0_runs(specs, n, max_batch_rows)
    for row in range(len(prompts) * n):
        prompt, spec = prompts[row // n], specs[row // n]
        width = int(rollout.completion_mask[row].sum())
        logits = full_logits(model, prompt, rollout.completion_ids[row, :width].tolist())  # [P + C, V]
        expected_rows += max(spec.num_slots - 1, 0)
        for i, position in enumerate(rollout.info["slot_positions"][row, :spec.num_slots].tolist()):
            assert rollout.loss_mask[row, position] == 1
            before = len(prompt) + position - 1  # the logits that predict the slot token
            assert (cached - logits[before]).abs().amax(dim=1).min() < 1e-5  # some call computed exactly these
            log_probs = torch.log_softmax(logits[before, spec.allowed[i]] / temperature, dim=-1)
            choice = int(rollout.info["slots"][row, i])
            assert rollout.completion_ids[row, position] == spec.allowed[i][choice]
            assert abs(float(log_probs[choice]) - float(rollout.info["slot_logprobs"][row, i])) < 1e-5
    assert cached.shape[0] == expected_rows  # slot 0 once per prompt (and batch), then once per row and slot


@pytest.mark.parametrize("temperature,max_batch_rows", [(1.0, 256), (0.7, 256), (1.0, 5), (1.0, 1)])
def test_slot_distributions_match_a_full_forward(model, tokenizer, monkeypatch, temperature, max_batch_rows):
    prompts, _, specs = action_batch(tokenizer, [4, 2, 3])   # prompts of different lengths: left padding
    calls = count_forwards(model, monkeypatch)
    rollout = SlotSampler(model, tokenizer, max_batch_rows=max_batch_rows).generate(
        prompts, specs, SamplingParams(n=4, max_new_tokens=0, temperature=temperature, seed=1))
    monkeypatch.undo()
    assert slot0_runs(specs, 4, max_batch_rows) == {256: 3, 5: 5, 1: 12}[max_batch_rows]
    assert_exact(model, rollout, prompts, specs, 4, temperature, calls, max_batch_rows)


def random_specs(tokenizer, count: int, seed: int) -> list[SlotSpec]:
    """Specs with 0..6 slots, segments of 0..9 tokens (some equal to the pad id: only the mask may
    tell pads apart) and 1..4 allowed tokens per slot."""
    rng = random.Random(seed)
    vocab = [tokenizer.pad_token_id] + list(range(5, 300))
    specs = []
    for _ in range(count):
        slots = rng.randrange(7)
        segments = [[rng.choice(vocab) for _ in range(rng.randrange(10))] for _ in range(slots + 1)]
        if not segments[0] and rng.random() < 0.5:
            segments[0] = [rng.choice(vocab)]
        allowed = [rng.sample(vocab, rng.randrange(1, 5)) for _ in range(slots)]
        specs.append(SlotSpec(segments=segments, allowed=allowed))
    return specs


@pytest.mark.parametrize("n,max_batch_rows", [(1, 256), (3, 256), (3, 4)])
def test_mixed_specs_are_exact_per_row(model, tokenizer, monkeypatch, n, max_batch_rows):
    specs = random_specs(tokenizer, 7, seed=n + max_batch_rows)
    assert len({spec.num_slots for spec in specs}) > 2
    prompts = [chat(tokenizer, "x" * (3 * b)) for b in range(len(specs))]
    calls = count_forwards(model, monkeypatch)
    rollout = SlotSampler(model, tokenizer, max_batch_rows=max_batch_rows).generate(
        prompts, specs, SamplingParams(n=n, max_new_tokens=0, temperature=0.9, seed=2))
    monkeypatch.undo()
    if max_batch_rows == 256:
        assert len(calls) == max(spec.num_slots for spec in specs)
    assert_exact(model, rollout, prompts, specs, n, 0.9, calls, max_batch_rows)
    for row in range(len(specs) * n):
        spec = specs[row // n]
        assert (rollout.info["slots"][row, spec.num_slots:] == -1).all()
        assert (rollout.info["slot_logprobs"][row, spec.num_slots:] == 0).all()
        expected = list(spec.segments[0])
        for i, choice in enumerate(rollout.info["slots"][row, :spec.num_slots].tolist()):
            expected += [spec.allowed[i][choice], *spec.segments[i + 1]]
        assert rollout.completion_ids[row, :len(expected)].tolist() == expected
        assert int(rollout.completion_mask[row].sum()) == len(expected)


def test_greedy_is_the_argmax_and_seeds_fix_samples(model, tokenizer):
    prompts, _, specs = action_batch(tokenizer, [20, 20])
    sampler = SlotSampler(model, tokenizer)
    greedy = sampler.generate(prompts, specs, SamplingParams(n=3, max_new_tokens=0, seed=0), greedy=True)
    again = sampler.generate(prompts, specs, SamplingParams(n=3, max_new_tokens=0, seed=5), greedy=True)
    assert torch.equal(greedy.completion_ids, again.completion_ids)
    for row in range(6):
        prompt, spec = prompts[row // 3], specs[row // 3]
        logits = full_logits(model, prompt, greedy.completion_ids[row].tolist())
        for i, position in enumerate(greedy.info["slot_positions"][row].tolist()):
            assert int(greedy.info["slots"][row, i]) == int(logits[len(prompt) + position - 1, spec.allowed[i]].argmax())
    params = SamplingParams(n=8, max_new_tokens=0, seed=3)
    first, second = sampler.generate(prompts, specs, params), sampler.generate(prompts, specs, params)
    assert torch.equal(first.completion_ids, second.completion_ids) and first.texts == second.texts
    other = sampler.generate(prompts, specs, SamplingParams(n=8, max_new_tokens=0, seed=4))
    assert not torch.equal(first.info["slots"], other.info["slots"])
    assert len({tuple(row) for row in first.info["slots"].tolist()}) > 1  # rows of a group differ too


def test_forward_calls_are_per_slot_of_the_batch(model, tokenizer, monkeypatch):
    prompts, _, specs = action_batch(tokenizer, [6, 1, 0, 3])
    calls = count_forwards(model, monkeypatch)
    SlotSampler(model, tokenizer).generate(prompts, specs, SamplingParams(n=8, max_new_tokens=0, seed=0))
    assert len(calls) == max(spec.num_slots for spec in specs) == 12
    # step 0 once per prompt with slots; then rows by decreasing S (12, 6, 2) drop out as they finish
    assert [c.shape[0] for c in calls] == [3] + [24] + [16] * 4 + [8] * 6
    calls.clear()
    SlotSampler(model, tokenizer, max_batch_rows=8).generate(prompts, specs, SamplingParams(n=8, max_new_tokens=0, seed=0))
    assert len(calls) == 12 + 6 + 2   # one batch per prompt group: the old per-group cost
    assert [c.shape[0] for c in calls[:2]] == [1, 8]


def test_many_prompts_share_the_forward_calls(model, tokenizer, monkeypatch):
    n_lines = [3, 8, 1, 5, 2, 8, 4, 6, 7, 2, 3, 1]
    prompts, _, specs = action_batch(tokenizer, n_lines, seed=3)
    calls = count_forwards(model, monkeypatch)
    batched = SlotSampler(model, tokenizer).generate(prompts, specs, SamplingParams(n=1, max_new_tokens=0), greedy=True)
    assert len(calls) == 2 * max(n_lines)   # S_max in total, not S per prompt
    assert calls[0].shape[0] == len(prompts)
    monkeypatch.undo()
    single = SlotSampler(model, tokenizer, max_batch_rows=1).generate(prompts, specs, SamplingParams(n=1, max_new_tokens=0),
                                                                     greedy=True)
    assert torch.equal(batched.completion_ids, single.completion_ids) and batched.texts == single.texts
    assert torch.equal(batched.info["slots"], single.info["slots"])
    torch.testing.assert_close(batched.info["slot_logprobs"], single.info["slot_logprobs"], atol=1e-5, rtol=0)


def test_mixed_specs_pad_and_mask_exactly_the_slots(model, tokenizer):
    a, b, c = (tokenizer.convert_tokens_to_ids(t) for t in ("a", "b", "c"))
    specs = [
        SlotSpec(segments=[[a, b], [], [c, c, c], []], allowed=[[a, b, c], [b], [a, c]]),
        SlotSpec(segments=[[c]], allowed=[]),  # no slot: the completion is the fixed text
        SlotSpec(segments=[[], [a]], allowed=[[b, c]]),
    ]
    prompts = [chat(tokenizer, "x"), chat(tokenizer, "a longer prompt here"), chat(tokenizer, "y")]
    rollout = SlotSampler(model, tokenizer).generate(prompts, specs, SamplingParams(n=2, max_new_tokens=0, seed=0))
    assert rollout.completion_ids.shape == rollout.loss_mask.shape == (6, 8)
    assert rollout.info["slots"].shape == rollout.info["slot_logprobs"].shape == (6, 3)
    lengths, slot_positions = [8, 8, 1, 1, 2, 2], [[2, 3, 7], [2, 3, 7], [], [], [0], [0]]
    for row in range(6):
        mask = [1] * lengths[row] + [0] * (8 - lengths[row])
        assert rollout.completion_mask[row].tolist() == mask
        assert rollout.loss_mask[row].nonzero().flatten().tolist() == slot_positions[row]
        assert rollout.info["slot_positions"][row].tolist() == slot_positions[row] + [-1] * (3 - len(slot_positions[row]))
        assert (rollout.completion_ids[row, lengths[row]:] == tokenizer.pad_token_id).all()
        assert rollout.prompt_ids[row, -len(prompts[row // 2]):].tolist() == prompts[row // 2]
    assert rollout.completion_ids[0, [0, 1, 4, 5, 6]].tolist() == [a, b, c, c, c]
    assert rollout.completion_ids[0, 3] == b and rollout.completion_ids[2, 0] == c
    assert rollout.info["slots"][2].tolist() == [-1, -1, -1] and rollout.info["slots"][0, 1] == 0


def test_training_mode_is_restored(model, tokenizer):
    prompts, _, specs = action_batch(tokenizer, [2])
    sampler = SlotSampler(model, tokenizer)
    for mode in (True, False):
        model.train(mode)
        sampler.generate(prompts, specs, SamplingParams(n=2, max_new_tokens=0, seed=0))
        assert model.training is mode and all(m.training is mode for m in model.modules())
    model.eval()


def test_action_spec_needs_single_token_decisions(tokenizer):
    spec = action_slot_spec(["a, ", ", ", ","], tokenizer)
    assert spec.num_slots == 2 and spec.allowed[0] == [tokenizer.convert_tokens_to_ids("0"),
                                                      tokenizer.convert_tokens_to_ids("1")]

    class MergedDigits:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [7, 8] if text == "0" else [9]}
    with pytest.raises(ValueError, match="single token"):
        action_slot_spec(["a", "b"], MergedDigits())
    with pytest.raises(ValueError, match="len"):
        SlotSpec(segments=[[1]], allowed=[[2]])
