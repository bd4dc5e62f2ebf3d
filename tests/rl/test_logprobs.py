"""Chunked log-probs equal the naive full-logits computation (values, entropy, gradients)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from lit_verbrec.rl.logprobs import (
    chunked_token_logprobs,
    completion_logprobs,
    selective_log_softmax,
)

ROOT = Path(__file__).resolve().parents[2]


def naive(hidden, weight, ids, temperature=1.0):
    logp = torch.log_softmax((hidden @ weight.T).float() / temperature, dim=-1)       # [N, T, V]
    return logp.gather(-1, ids[..., None])[..., 0], -(logp.exp() * logp).sum(-1)


def inputs(N=2, T=13, H=8, V=37, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, T, H, generator=g, dtype=dtype).requires_grad_()
    weight = torch.randn(V, H, generator=g, dtype=dtype).requires_grad_()
    return hidden, weight, torch.randint(0, V, (N, T), generator=g)


def test_selective_log_softmax_matches_log_softmax_gather():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 50, generator=g) * 4
    index = torch.randint(0, 50, (3, 5), generator=g)
    expected = logits.log_softmax(-1).gather(-1, index[..., None])[..., 0]
    torch.testing.assert_close(selective_log_softmax(logits, index), expected, rtol=0, atol=1e-5)
    half = logits.bfloat16()
    torch.testing.assert_close(selective_log_softmax(half, index),
                               half.log_softmax(-1).gather(-1, index[..., None])[..., 0])


@pytest.mark.parametrize("chunk", [1, 7, 26, 1000])   # 26 = N*T; 7 does not divide it
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_equals_naive_values_and_gradients(chunk, temperature):
    hidden, weight, ids = inputs()
    out = chunked_token_logprobs(hidden, weight, ids, temperature, chunk, with_entropy=True)
    ref_logp, ref_ent = naive(hidden, weight, ids, temperature)
    assert out["logprobs"].shape == (2, 13) and out["logprobs"].dtype == torch.float32
    torch.testing.assert_close(out["logprobs"], ref_logp, rtol=0, atol=1e-5)
    torch.testing.assert_close(out["entropy"], ref_ent, rtol=0, atol=1e-5)

    g = torch.Generator().manual_seed(1)
    w_lp, w_ent = torch.randn(2, 13, generator=g), torch.randn(2, 13, generator=g)
    ours = torch.autograd.grad((out["logprobs"] * w_lp).sum() + (out["entropy"] * w_ent).sum(), (hidden, weight))
    theirs = torch.autograd.grad((ref_logp * w_lp).sum() + (ref_ent * w_ent).sum(), (hidden, weight))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_temperature_divides_the_logits():
    hidden, weight, ids = inputs()
    hot = chunked_token_logprobs(hidden, weight, ids, temperature=0.5)["logprobs"]
    doubled = chunked_token_logprobs(hidden * 2, weight, ids, temperature=1.0)["logprobs"]
    torch.testing.assert_close(hot, doubled, rtol=0, atol=1e-5)
    assert not torch.allclose(hot, chunked_token_logprobs(hidden, weight, ids)["logprobs"], atol=1e-3)


@pytest.mark.parametrize("with_entropy", [False, True])
@pytest.mark.parametrize("weight_grad", [False, True])
def test_gradcheck_float64(with_entropy, weight_grad):
    hidden, weight, ids = inputs(N=2, T=5, H=4, V=7, dtype=torch.float64)
    weight.requires_grad_(weight_grad)

    def fn(h, w):
        return tuple(chunked_token_logprobs(h, w, ids, 0.7, 3, with_entropy).values())

    assert torch.autograd.gradcheck(fn, (hidden, weight))


def test_no_weight_gradient_unless_asked_and_bf16_inputs():
    hidden, weight, ids = inputs(dtype=torch.bfloat16)
    weight.requires_grad_(False)
    out = chunked_token_logprobs(hidden, weight, ids, chunk=5)["logprobs"]
    assert out.dtype == torch.float32
    # Logits in fp32 from the bf16 values: equal to the fp32 naive computation on those values
    torch.testing.assert_close(out, naive(hidden.float(), weight.float(), ids)[0], rtol=0, atol=1e-5)
    out.sum().backward()
    assert hidden.grad.dtype == torch.bfloat16 and hidden.grad.abs().sum() > 0 and weight.grad is None


def tiny_qwen3(seed: int = 0, vocab: int = 101) -> Qwen3ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, intermediate_size=128)
    return Qwen3ForCausalLM(config).eval()


def left_padded_batch(vocab=101, N=4, P=6, C=5, pad=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    prompt_lens, completion_lens = torch.tensor([6, 2, 4, 1]), torch.tensor([5, 3, 1, 4])
    prompt_mask = (torch.arange(P)[None] >= P - prompt_lens[:, None]).long()        # left padding
    completion_mask = (torch.arange(C)[None] < completion_lens[:, None]).long()     # right padding
    prompt_ids = torch.randint(1, vocab, (N, P), generator=g).masked_fill(prompt_mask == 0, pad)
    completion_ids = torch.randint(1, vocab, (N, C), generator=g).masked_fill(completion_mask == 0, pad)
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def reference_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature):
    """The obvious way: full logits from the model's own forward, then log_softmax."""
    ids = torch.cat([prompt_ids, completion_ids], 1)
    mask = torch.cat([prompt_mask, completion_mask], 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits    # [N, P+C, V]
    P = prompt_ids.shape[1]
    logp = torch.log_softmax(logits[:, P - 1:-1] / temperature, dim=-1)
    return logp.gather(-1, completion_ids[..., None])[..., 0], -(logp.exp() * logp).sum(-1)


def test_completion_logprobs_match_the_model_logits_with_left_padding():
    model = tiny_qwen3()
    batch = left_padded_batch()
    mask = batch[3].bool()
    ours = completion_logprobs(model, *batch, temperature=0.7, chunk=3, with_entropy=True)
    ref_logp, ref_ent = reference_logprobs(model, *batch, temperature=0.7)
    assert ours["logprobs"].shape == (4, 5)
    torch.testing.assert_close(ours["logprobs"][mask], ref_logp[mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(ours["entropy"][mask], ref_ent[mask], rtol=0, atol=1e-5)

    # Gradients w.r.t. every parameter agree too
    w = torch.randn(4, 5, generator=torch.Generator().manual_seed(3)) * mask
    ours_grads = torch.autograd.grad((ours["logprobs"] * w).sum(), list(model.parameters()))
    ref_grads = torch.autograd.grad((ref_logp * w).sum(), list(model.parameters()))
    for a, b in zip(ours_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_extra_left_padding_changes_nothing():
    """Positions come from the mask: one more pad column must leave the log-probs unchanged."""
    model = tiny_qwen3()
    prompt_ids, prompt_mask, completion_ids, completion_mask = left_padded_batch()
    base = completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask)["logprobs"]
    pad_col = torch.zeros(4, 3, dtype=torch.long)
    padded = completion_logprobs(model, torch.cat([pad_col, prompt_ids], 1), torch.cat([pad_col, prompt_mask], 1),
                                 completion_ids, completion_mask)["logprobs"]
    mask = completion_mask.bool()
    torch.testing.assert_close(padded[mask], base[mask], rtol=0, atol=1e-5)


def test_completion_logprobs_through_a_peft_wrapper():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_qwen3(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    batch = left_padded_batch()
    mask = batch[3].bool()
    ours = completion_logprobs(model, *batch, temperature=0.9)["logprobs"]
    ref = reference_logprobs(model, *batch, temperature=0.9)[0]
    torch.testing.assert_close(ours[mask], ref[mask], rtol=0, atol=1e-5)
    with model.disable_adapter():     # the reference policy: the adapter (random here) is off
        plain = completion_logprobs(model, *batch, temperature=0.9)["logprobs"]
    assert (plain[mask] - ours[mask]).abs().max() > 1e-3
    ours[mask].sum().backward()
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)


def test_bench_logprobs_runs_small():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), "logprobs", "--batch", "2",
                             "--tokens", "64", "--hidden", "16", "--chunk", "32"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"ours \(chunked\): peak\s+[\d.]+ MiB", result.stdout), result.stdout
    assert re.search(r"naive\s+: peak\s+[\d.]+ MiB", result.stdout), result.stdout
    assert re.search(r"ratio: ours / naive peak = [\d.]+", result.stdout), result.stdout
    assert "same log-probs on the checked slice: True" in result.stdout


def test_allowed_ids_give_the_softmax_over_the_allowed_tokens_only():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from lit_verbrec.rl.logprobs import completion_logprobs

    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=1, head_dim=16, intermediate_size=64))
    prompt = torch.randint(0, 50, (3, 4))
    completion = torch.tensor([[7, 9, 7], [9, 9, 7], [7, 7, 9]])
    ones = torch.ones_like
    allowed = torch.tensor([7, 9])
    out = completion_logprobs(model, prompt, ones(prompt), completion, ones(completion), temperature=0.5,
                              chunk=2, with_entropy=True, allowed_ids=allowed)
    logits = model(input_ids=torch.cat([prompt, completion], 1)).logits[:, 3:-1, :][..., allowed] / 0.5
    expected = torch.log_softmax(logits, -1).gather(-1, (completion == 9).long().unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out["logprobs"], expected, rtol=1e-5, atol=1e-5)
    probs = torch.softmax(logits, -1)
    torch.testing.assert_close(out["entropy"], -(probs * probs.log()).sum(-1), rtol=1e-5, atol=1e-5)


def grouped_batch(G=3, seed=0):
    """Two prompts (lengths 6 and 2, left-padded) with G completions each of different lengths."""
    prompt_ids, prompt_mask, _, _ = left_padded_batch(seed=seed)
    group = torch.arange(2).repeat_interleave(G)                                # [2G]
    _, _, completion_ids, completion_mask = left_padded_batch(N=4, seed=seed + 1)
    rows = torch.arange(2 * G) % 4
    return prompt_ids[group], prompt_mask[group], completion_ids[rows], completion_mask[rows], group


@pytest.mark.parametrize("with_entropy", [False, True])
def test_prompt_encoded_once_per_group_gives_the_same_logprobs_and_gradients(with_entropy):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_qwen3(), LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                                    init_lora_weights=False))
    *batch, group = grouped_batch()
    mask = batch[3].bool()
    per_row = completion_logprobs(model, *batch, temperature=0.8, chunk=4, with_entropy=with_entropy)
    shared = completion_logprobs(model, *batch, temperature=0.8, chunk=4, with_entropy=with_entropy,
                                 prompt_groups=group)
    for key in per_row:
        torch.testing.assert_close(shared[key][mask], per_row[key][mask], rtol=0, atol=1e-5)
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    w = torch.randn(mask.shape, generator=torch.Generator().manual_seed(5)) * mask
    for a, b in zip(torch.autograd.grad((shared["logprobs"] * w).sum(), lora),
                    torch.autograd.grad((per_row["logprobs"] * w).sum(), lora)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_shared_prompts_encode_each_prompt_once():
    model = tiny_qwen3()
    *batch, group = grouped_batch(G=4)
    seen = []
    hook = model.model.embed_tokens.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    completion_logprobs(model, *batch, prompt_groups=group)
    hook.remove()
    assert seen == [(2, 6), (8, 4)]     # 2 distinct prompts of 6 tokens, then 8 completions of C - 1 tokens


def test_logits_stay_float32_under_autocast():
    """bf16-mixed wraps the training step in autocast: the kernel's logits must not drop to bf16."""
    hidden, weight, ids = inputs(V=300)
    plain = chunked_token_logprobs(hidden, weight, ids, with_entropy=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = chunked_token_logprobs(hidden, weight, ids, with_entropy=True)
        (mixed["logprobs"].sum() + mixed["entropy"].sum()).backward()
    assert mixed["logprobs"].dtype == torch.float32
    torch.testing.assert_close(mixed["logprobs"], plain["logprobs"], rtol=0, atol=0)
    torch.testing.assert_close(mixed["entropy"], plain["entropy"], rtol=0, atol=0)
    grad = hidden.grad.clone()
    hidden.grad = None
    (plain["logprobs"].sum() + plain["entropy"].sum()).backward()
    torch.testing.assert_close(grad, hidden.grad, rtol=0, atol=0)


def test_allowed_mask_is_the_softmax_over_each_rows_own_choices():
    model = tiny_qwen3()
    g = torch.Generator().manual_seed(3)
    allowed = torch.tensor([5, 9, 11, 20])
    prompt = torch.randint(1, 40, (3, 4), generator=g)
    completion = allowed[torch.tensor([[0], [2], [1]])]                          # [3, 1] each row's choice
    row_mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    ones_p, ones_c = torch.ones_like(prompt), torch.ones_like(completion)
    out = completion_logprobs(model, prompt, ones_p, completion, ones_c, allowed_ids=allowed,
                              allowed_mask=row_mask, with_entropy=True)
    with torch.no_grad():
        logits = model(input_ids=prompt).logits[:, -1, allowed].float()        # [3, K]
    sub = torch.log_softmax(logits.masked_fill(~row_mask, float("-inf")), -1)
    expected = sub.gather(-1, torch.tensor([[0], [2], [1]]))
    torch.testing.assert_close(out["logprobs"], expected, rtol=0, atol=1e-5)
    entropy = -(sub.exp() * sub.masked_fill(~row_mask, 0)).sum(-1, keepdim=True)
    torch.testing.assert_close(out["entropy"], entropy, rtol=0, atol=1e-5)
