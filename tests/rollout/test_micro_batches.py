"""Padding-aware micro-batches: the plan by hand, fewer padded positions, and the same log-probs,
loss and gradients as the whole padded batch."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen3Config, Qwen3ForCausalLM

from lit_verbrec.rl.logprobs import completion_logprobs
from lit_verbrec.rl.losses import AGGREGATIONS, grpo_loss, step_normalizer
from lit_verbrec.rollout.micro_batches import plan_micro_batches, take
from lit_verbrec.rollout.types import Rollout

G = 2
# 3 prompts x G completions; group 1 is the short one, group 2 the long one
PROMPT_LENS = [4, 4, 1, 1, 7, 7]
COMPLETION_LENS = [3, 1, 2, 1, 6, 5]
P, C, VOCAB = 7, 6, 61


def rollout(seed: int = 0) -> Rollout:
    g = torch.Generator().manual_seed(seed)
    N = len(PROMPT_LENS)
    prompt_mask = (torch.arange(P)[None] >= P - torch.tensor(PROMPT_LENS)[:, None]).long()        # left padding
    completion_mask = (torch.arange(C)[None] < torch.tensor(COMPLETION_LENS)[:, None]).long()     # right padding
    group = torch.arange(N) // G
    prompts = torch.randint(1, VOCAB, (N // G, P), generator=g)[group].masked_fill(prompt_mask == 0, 0)
    completions = torch.randint(1, VOCAB, (N, C), generator=g).masked_fill(completion_mask == 0, 0)
    return Rollout(prompt_ids=prompts, prompt_mask=prompt_mask, completion_ids=completions,
                   completion_mask=completion_mask, texts=[""] * N, group=group,
                   advantages=torch.randn(N, generator=g), old_logprobs=-torch.rand(N, C, generator=g) - 1)


def test_plan_by_hand():
    r = rollout()
    plan = plan_micro_batches(r.prompt_mask, r.completion_mask, r.group, size=2)
    # groups longest first (7+6, 4+3, 1+2), a group's rows together, each cut to the columns its rows use
    assert [p.rows.tolist() for p in plan] == [[4, 5], [0, 1], [2, 3]]
    assert [(p.prompt_from, p.completion_to) for p in plan] == [(0, 6), (3, 3), (6, 2)]
    short = take(r, plan[2])
    assert short.prompt_ids.shape == (2, 1) and short.completion_ids.shape == (2, 2)
    assert short.old_logprobs.shape == (2, 2) and short.texts == ["", ""]
    assert torch.equal(short.prompt_ids[:, 0], r.prompt_ids[2:4, -1])


def test_plan_covers_every_row_once_and_respects_the_size():
    r = rollout()
    for size in (1, 3, 4, 100):
        plan = plan_micro_batches(r.prompt_mask, r.completion_mask, r.group, size)
        rows = torch.cat([p.rows for p in plan]).tolist()
        assert sorted(rows) == list(range(len(PROMPT_LENS))) and all(p.size <= size for p in plan)
    padded_positions = sum(p.size * (P - p.prompt_from + p.completion_to)
                           for p in plan_micro_batches(r.prompt_mask, r.completion_mask, r.group, 2))
    assert padded_positions == 2 * (7 + 6) + 2 * (4 + 3) + 2 * (1 + 2) == 46   # instead of 6 rows * (7 + 6) = 78


def tiny_lora_model():
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=8, intermediate_size=64)
    return get_peft_model(Qwen3ForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                             init_lora_weights=False))


def logprobs_of(model, r: Rollout) -> torch.Tensor:
    return completion_logprobs(model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask,
                               temperature=1.0, chunk=4, prompt_groups=r.group)["logprobs"]


@pytest.mark.parametrize("loss_type", sorted(AGGREGATIONS))
def test_trimmed_micro_batches_give_the_whole_batch_loss_and_gradient(loss_type):
    model, r = tiny_lora_model(), rollout()
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    mask = r.completion_mask.bool()
    kw = dict(loss_type=loss_type, max_completion_length=C)

    whole_logprobs = logprobs_of(model, r)                                         # [N, C]
    whole = grpo_loss(whole_logprobs, r.old_logprobs, r.advantages, r.completion_mask, **kw)["loss"]
    whole_grads = torch.autograd.grad(whole, lora)

    normalizer = step_normalizer(loss_type, r.completion_mask, C)
    total, assembled = 0.0, torch.zeros(mask.shape)
    for part in plan_micro_batches(r.prompt_mask, r.completion_mask, r.group, size=2):
        mb = take(r, part)
        lp = logprobs_of(model, mb)                                                # [2, C'] with C' <= C
        assembled[part.rows, :lp.shape[1]] = lp.detach()
        total = total + grpo_loss(lp, mb.old_logprobs, mb.advantages, mb.completion_mask, normalizer=normalizer,
                                  **kw)["loss"]
    torch.testing.assert_close(assembled[mask], whole_logprobs.detach()[mask], rtol=0, atol=1e-5)
    assert total.item() == pytest.approx(whole.item(), abs=1e-6)
    for a, b in zip(torch.autograd.grad(total, lora), whole_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_rollout_to_moves_every_tensor_field():
    """Engines build rollouts on the CPU; the callback hands the trainer one on the model's device."""
    rollout = Rollout(prompt_ids=torch.ones(2, 3, dtype=torch.long), prompt_mask=torch.ones(2, 3, dtype=torch.long),
                      completion_ids=torch.ones(2, 4, dtype=torch.long), completion_mask=torch.ones(2, 4, dtype=torch.long),
                      texts=["a", "b"], group=torch.zeros(2, dtype=torch.long), rewards=torch.ones(2),
                      allowed_mask=torch.ones(2, 5, dtype=torch.bool), info={"k": 1})
    moved = rollout.to("meta")
    tensors = {f.name for f in fields(Rollout) if isinstance(getattr(rollout, f.name), torch.Tensor)}
    assert tensors == {"prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "group", "rewards", "allowed_mask"}
    assert all(getattr(moved, name).device.type == "meta" for name in tensors)
    assert moved.texts == ["a", "b"] and moved.info == {"k": 1} and moved.advantages is None
    assert rollout.prompt_ids.device.type == "cpu"                     # the original is left where it was
