"""The GRPO loss: hand-computed values, the micro-batch normaliser, and parity with trl 1.16."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

from lit_verbrec.rl.logprobs import completion_logprobs
from lit_verbrec.rl.losses import AGGREGATIONS, grpo_loss, step_normalizer

TOKENIZER = Path(__file__).resolve().parents[3] / "shared" / "qwen3-tokenizer"


MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
ADV = torch.tensor([1.0, -2.0])


@pytest.mark.parametrize(("loss_type", "expected"), [
    ("grpo", (-1 + 2) / 2),          # sequence means -1 and +2, then mean over 2 sequences
    ("dr_grpo", (-3 + 2) / (2 * 4)),  # token sum / (N * max_completion_length = 2 * 4)
    ("dapo", (-3 + 2) / 4),           # token sum / 4 tokens
])
def test_aggregations_by_hand(loss_type, expected):
    lp = torch.zeros(2, 4, requires_grad=True)
    out = grpo_loss(lp, lp.detach(), ADV, MASK, loss_type=loss_type, max_completion_length=4)
    assert out["loss"].item() == pytest.approx(expected, abs=1e-7)
    assert out["policy_loss"].item() == pytest.approx(expected, abs=1e-7)
    # On-policy the gradient is the policy gradient -A_i, times each token's aggregation weight
    out["loss"].backward()
    weight = {"grpo": [[1 / 6] * 3 + [0], [1 / 2, 0, 0, 0]],       # 1 / (N * |sequence|)
              "dr_grpo": [[1 / 8] * 3 + [0], [1 / 8, 0, 0, 0]],    # 1 / (N * max_completion_length)
              "dapo": [[1 / 4] * 3 + [0], [1 / 4, 0, 0, 0]]}[loss_type]   # 1 / tokens
    torch.testing.assert_close(lp.grad, -ADV[:, None] * torch.tensor(weight))


def test_the_table_is_the_only_dispatch():
    assert set(AGGREGATIONS) == {"grpo", "dr_grpo", "dapo"}
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1), loss_type="bnpo")
    with pytest.raises(ValueError, match="max_completion_length"):
        grpo_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1), loss_type="dr_grpo")


def test_clipping_by_hand():
    """One token per sequence; ratio r, advantage A; eps = 0.2 both sides."""
    r = torch.tensor([1.5, 0.5, 0.5, 1.5])
    A = torch.tensor([1.0, 1.0, -1.0, -1.0])
    lp = r.log()[:, None].requires_grad_()
    out = grpo_loss(lp, torch.zeros(4, 1), A, torch.ones(4, 1), loss_type="dapo")
    # min(r A, clip(r) A): 1.2 (clipped above), 0.5 (unclipped: pessimistic), -0.8 (clipped below), -1.5
    assert out["loss"].item() == pytest.approx(-(1.2 + 0.5 - 0.8 - 1.5) / 4, abs=1e-6)
    out["loss"].backward()
    # Clipped tokens get no gradient; unclipped ones get -A * r / 4 (d r / d lp = r)
    torch.testing.assert_close(lp.grad[:, 0], torch.tensor([0.0, -0.5 / 4, 0.0, 1.5 / 4]))


def test_clip_fractions_on_constructed_ratios():
    # Six one-token sequences plus a masked second token with an absurd ratio that must not count.
    r = torch.tensor([0.5, 0.5, 1.5, 1.5, 1.0, 1.1])
    A = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    lp = torch.stack([r.log(), torch.full((6,), 100.0)], dim=1)
    mask = torch.tensor([[1, 0]] * 6)
    out = grpo_loss(lp, torch.zeros(6, 2), A, mask, epsilon=0.2)
    assert out["clip_low_fraction"].item() == pytest.approx(1 / 6)   # r = 0.5, A < 0
    assert out["clip_high_fraction"].item() == pytest.approx(1 / 6)  # r = 1.5, A > 0
    assert out["clip_fraction"].item() == pytest.approx(2 / 6)
    assert out["ratio_mean"].item() == pytest.approx(r.mean().item())
    approx_kl = ((r - 1) - r.log()).mean().item()
    assert out["approx_kl"].item() == pytest.approx(approx_kl, rel=1e-5) and approx_kl > 0
    assert math.isfinite(out["loss"].item())
    # clip-higher (DAPO): 1.5 is inside [0.8, 1.6], so nothing is clipped above
    wide = grpo_loss(lp, torch.zeros(6, 2), A, mask, epsilon=0.2, epsilon_high=0.6)
    assert wide["clip_high_fraction"].item() == 0 and wide["clip_low_fraction"].item() == pytest.approx(1 / 6)


def test_k3_kl_by_hand_and_beta_zero_needs_no_reference():
    lp = torch.zeros(1, 2, requires_grad=True)
    ref = torch.tensor([[math.log(2.0), 0.0]])
    mask = torch.ones(1, 2)
    out = grpo_loss(lp, lp.detach(), torch.zeros(1), mask, beta=0.5, ref_logprobs=ref)
    k3 = 2 - math.log(2) - 1                                # exp(d) - d - 1 with d = log 2, and 0 for d = 0
    assert out["kl"].item() == pytest.approx(k3 / 2, abs=1e-7)
    assert out["loss"].item() == pytest.approx(0.5 * k3 / 2, abs=1e-7)
    zero = grpo_loss(lp, lp.detach(), torch.ones(1), mask, beta=0.0)
    assert zero["kl"].item() == 0.0
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(lp, lp.detach(), torch.ones(1), mask, beta=0.1)


def test_kl_bias_correction_multiplies_by_the_ratio():
    lp = torch.tensor([[0.3]], requires_grad=True)
    ref = torch.tensor([[-0.2]])
    common = dict(beta=1.0, ref_logprobs=ref, loss_type="dapo")
    plain = grpo_loss(lp, torch.zeros(1, 1), torch.zeros(1), torch.ones(1, 1), **common)["loss"]
    corrected = grpo_loss(lp, torch.zeros(1, 1), torch.zeros(1), torch.ones(1, 1), kl_bias_correction=True, **common)
    assert corrected["loss"].item() == pytest.approx(plain.item() * math.exp(0.3), rel=1e-6)


def test_entropy_bonus_lowers_the_loss():
    lp = torch.zeros(2, 4)
    entropy = torch.full((2, 4), 1.0, requires_grad=True)
    low = grpo_loss(lp, lp, ADV, MASK, loss_type="dapo", entropy=entropy, entropy_coef=0.1)
    high = grpo_loss(lp, lp, ADV, MASK, loss_type="dapo", entropy=entropy + 1, entropy_coef=0.1)
    assert high["loss"].item() == pytest.approx(low["loss"].item() - 0.1, abs=1e-7)
    assert high["entropy"].item() == pytest.approx(2.0)
    low["loss"].backward()
    assert (entropy.grad[MASK.bool()] < 0).all() and (entropy.grad[~MASK.bool()] == 0).all()


@pytest.mark.parametrize("loss_type", sorted(AGGREGATIONS))
def test_micro_batch_losses_sum_to_the_full_batch_loss(loss_type):
    g = torch.Generator().manual_seed(0)
    N, C, max_len = 8, 6, 7
    lengths = torch.tensor([6, 1, 3, 5, 2, 6, 4, 1])
    mask = torch.arange(C)[None] < lengths[:, None]
    lp = (torch.randn(N, C, generator=g) * 0.3 - 1).requires_grad_()
    old, ref = lp.detach() + 0.2 * torch.randn(N, C, generator=g), lp.detach() + 0.2 * torch.randn(N, C, generator=g)
    adv = torch.randn(N, generator=g)
    kw = dict(loss_type=loss_type, beta=0.04, max_completion_length=max_len)
    full = grpo_loss(lp, old, adv, mask, ref_logprobs=ref, **kw)["loss"]
    (full_grad,) = torch.autograd.grad(full, lp)

    normalizer = step_normalizer(loss_type, mask, max_len)
    assert normalizer == {"grpo": N, "dr_grpo": N * max_len, "dapo": int(mask.sum())}[loss_type]
    parts, naive_parts = [], []
    for rows in (slice(0, 3), slice(3, 6), slice(6, 8)):
        args = (lp[rows], old[rows], adv[rows], mask[rows])
        parts.append(grpo_loss(*args, ref_logprobs=ref[rows], normalizer=normalizer, **kw)["loss"])
        naive_parts.append(grpo_loss(*args, ref_logprobs=ref[rows], **kw)["loss"])
    total = sum(parts)
    (micro_grad,) = torch.autograd.grad(total, lp)
    assert total.item() == pytest.approx(full.item(), abs=1e-6)
    torch.testing.assert_close(micro_grad, full_grad, rtol=0, atol=1e-7)
    # Without the step's normaliser, averaging micro-batch losses is NOT the full loss (the test can fail)
    assert abs(sum(naive_parts).item() / 3 - full.item()) > 1e-3


def test_masked_positions_cannot_leak_nan():
    lp = torch.tensor([[0.1, float("nan")], [0.0, float("inf")]], requires_grad=True)
    out = grpo_loss(lp, torch.zeros(2, 2), torch.tensor([1.0, -1.0]), torch.tensor([[1, 0], [1, 0]]),
                    beta=0.1, ref_logprobs=torch.zeros(2, 2))
    out["loss"].backward()
    assert math.isfinite(out["loss"].item()) and lp.grad.isfinite().all()


# ---------------------------------------------------------------------------------------------
# Parity with trl 1.16 GRPOTrainer._compute_loss (the acceptance criterion).
#
# trl settings pinned below, and the trl defaults that differ from ours (lit_verbrec GRPOConfig):
#   loss_type         trl "dapo"  | ours "grpo" (paper eq. 5)      -> pinned per test
#   beta              trl 0.0     | ours 0.04                      -> 0.04
#   use_bias_correction_kl  trl True | ours kl_bias_correction=False -> both values, pinned equal
#   bf16              trl True    | ours fp32 on CPU              -> False
#   max_completion_length  trl 512 | ours max_new_tokens 256       -> 8 (dr_grpo's constant)
#   epsilon_high      trl None    | ours 0.0 (both: = epsilon)     -> 0.28 (asymmetric, to test it)
#   entropy bonus     trl: separate token mean | ours: through the aggregation -> entropy_coef 0
#   temperature 0.7, epsilon 0.2, importance_sampling_level "token", top_entropy_quantile 1.0,
#   off_policy_mask_threshold None, delta None, gradient_accumulation_steps 1 (trl divides
#   grpo/dr_grpo by it and rescales dapo's num_items_in_batch by it).
# ---------------------------------------------------------------------------------------------

VOCAB, N, P, C, MAX_LEN, TEMPERATURE = 300, 12, 5, 6, 8, 0.7


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, intermediate_size=128)
    path = tmp_path_factory.mktemp("tiny-qwen3")
    Qwen3ForCausalLM(config).save_pretrained(path)   # beta > 0: trl reloads the reference by name
    return path


def trl_trainer(model_dir, tmp_path, loss_type, bias_correction):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, use_vllm=False, report_to="none", bf16=False,
        per_device_train_batch_size=N, num_generations=4, gradient_accumulation_steps=1,
        max_completion_length=MAX_LEN, temperature=TEMPERATURE, loss_type=loss_type, beta=0.04,
        epsilon=0.2, epsilon_high=0.28, use_bias_correction_kl=bias_correction,
        importance_sampling_level="token", top_entropy_quantile=1.0, entropy_coef=0.0,
        off_policy_mask_threshold=None, delta=None,
    )
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=lambda prompts, **kw: [0.0] * len(prompts), args=args,
                          train_dataset=Dataset.from_dict({"prompt": ["x"] * 4}),
                          processing_class=AutoTokenizer.from_pretrained(TOKENIZER))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1   # set by Trainer's loop; we call _compute_loss directly
    return trainer


def hand_built_batch():
    g = torch.Generator().manual_seed(1)
    prompt_mask = (torch.arange(P)[None] >= P - torch.tensor([5, 3, 4, 2] * 3)[:, None]).long()   # left-padded
    completion_mask = (torch.arange(C)[None] < torch.tensor([6, 1, 3, 5, 2, 6, 4, 6, 3, 1, 5, 2])[:, None]).long()
    prompt_ids = torch.randint(0, VOCAB, (N, P), generator=g).masked_fill(prompt_mask == 0, VOCAB - 1)
    completion_ids = torch.randint(0, VOCAB, (N, C), generator=g).masked_fill(completion_mask == 0, VOCAB - 1)
    return prompt_ids, prompt_mask, completion_ids, completion_mask, torch.randn(N, generator=g), g


@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_loss_and_gradients_match_trl(model_dir, tmp_path, loss_type, bias_correction):
    trainer = trl_trainer(model_dir, tmp_path, loss_type, bias_correction)
    model = trainer.model
    prompt_ids, prompt_mask, completion_ids, completion_mask, advantages, g = hand_built_batch()
    batch = (prompt_ids, prompt_mask, completion_ids, completion_mask)
    with torch.no_grad():
        current = completion_logprobs(model, *batch, temperature=TEMPERATURE)["logprobs"]
    old = current + 0.3 * torch.randn(N, C, generator=g)     # off-policy: clipping is active
    ref = current + 0.3 * torch.randn(N, C, generator=g)

    inputs = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
              "completion_mask": completion_mask, "advantages": advantages, "old_per_token_logps": old,
              "ref_per_token_logps": ref, "num_items_in_batch": completion_mask.sum()}
    model.zero_grad()
    theirs = trainer._compute_loss(model, inputs)
    theirs.backward()
    their_grads = {name: p.grad.clone() for name, p in model.named_parameters()}

    model.zero_grad()
    logprobs = completion_logprobs(model, *batch, temperature=TEMPERATURE, chunk=7)["logprobs"]
    ours = grpo_loss(logprobs, old, advantages, completion_mask, loss_type=loss_type, epsilon=0.2,
                     epsilon_high=0.28, beta=0.04, ref_logprobs=ref, kl_bias_correction=bias_correction,
                     max_completion_length=MAX_LEN)
    ours["loss"].backward()

    assert ours["loss"].item() == pytest.approx(theirs.item(), abs=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, their_grads[name], rtol=0, atol=1e-6, msg=name)
    assert max(g.abs().max().item() for g in their_grads.values()) > 1e-2   # gradients are not trivially 0
    logged = trainer._metrics["train"]
    assert ours["clip_low_fraction"].item() == pytest.approx(logged["clip_ratio/low_mean"][-1], abs=1e-6)
    assert ours["clip_high_fraction"].item() == pytest.approx(logged["clip_ratio/high_mean"][-1], abs=1e-6)
    assert ours["clip_fraction"].item() == pytest.approx(logged["clip_ratio/region_mean"][-1], abs=1e-6)
    assert ours["clip_fraction"].item() > 0.1
    if not bias_correction:   # trl logs the corrected k3 * ratio when the correction is on
        assert ours["kl"].item() == pytest.approx(logged["kl"][-1], abs=1e-6)


@pytest.mark.parametrize("loss_type", sorted(AGGREGATIONS))
def test_ddp_gradient_is_the_whole_batch_gradient(loss_type, tmp_path):
    """Two DDP ranks with unequal token counts: dividing by the ranks' mean count
    (step_normalizer's mean_over_ranks) gives exactly the single-process gradient of the whole batch."""
    import ddp_loss_worker as w  # tests/rl is on sys.path (pytest rootdir-relative import)

    def ddp_grad(mode: str) -> torch.Tensor:
        out = tmp_path / mode
        out.mkdir()
        run = subprocess.run([sys.executable, Path(__file__).with_name("ddp_loss_worker.py"), out, loss_type, mode],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        return torch.load(out / "grad.pt")

    b = w.batch()
    lp = b["logprobs"].clone().requires_grad_()
    full = grpo_loss(lp, b["old"], b["advantages"], b["mask"], loss_type=loss_type, max_completion_length=w.MAX_LEN)
    (whole_batch,) = torch.autograd.grad(full["loss"], lp)
    torch.testing.assert_close(ddp_grad("ranks"), whole_batch, rtol=0, atol=1e-7)
    if loss_type == "dapo":   # each rank's own token count weighs rank 1's few tokens more: not the same gradient
        assert (ddp_grad("own") - whole_batch).abs().max() > 1e-3
