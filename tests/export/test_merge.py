"""The merge check (lit_verbrec/export/merge.py): a right merge passes within float32's rounding
bound on any kernel; a wrong one (scaling, rounded back to NF4, adapter dropped) fails, named."""

from __future__ import annotations

import pytest
import torch
from bitsandbytes import functional as bnb_functional

from lit_verbrec.config.schema import LoraConfig, SizeConfig
from lit_verbrec.export.merge import (
    base_weight_fp32,
    cast_mismatches,
    gamma,
    lora_factors,
    merge_weight,
    merged_state,
)
from lit_verbrec.models.loading import load_policy
from lit_verbrec.models.tokenizers import build_tiny_tokenizer

CORPUS = [f"The user watched Alien ({1970 + i % 30}) and rated it {i % 5} stars; hello world." for i in range(60)]


@pytest.fixture(scope="module")
def qlora_policy(tmp_path_factory):
    """A tiny NF4 policy whose adapter changes the model (B != 0), at Qwen3's init scale and size=tiny's."""
    tokenizer = build_tiny_tokenizer(CORPUS, vocab_size=400)
    size = SizeConfig(name="tiny", tokenizer="builtin", quantization="nf4",
                      lora=LoraConfig(rank=8, alpha=16, dropout=0.05))
    policy = load_policy(size, tokenizer, gradient_checkpointing=False, seed=0,
                         workdir=tmp_path_factory.mktemp("nf4"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.01)
    return policy


def test_gamma_is_the_dot_product_error_bound():
    assert gamma(1) == pytest.approx(2.0 ** -24, rel=1e-6)
    assert gamma(4096) == pytest.approx(4096 * 2.0 ** -24 / (1 - 4096 * 2.0 ** -24))
    with pytest.raises(ValueError, match="no error bound"):
        gamma(2 ** 24)


def test_a_right_merge_is_within_float32s_rounding_bound(qlora_policy):
    state, report = merged_state(qlora_policy)
    assert report["layers"] == 2 * 7 and report["failed"] == []          # 2 layers x 7 projections
    assert 0 < report["max_ratio_to_bound"] <= 1.0
    assert report["min_adapter_effect"] > 10      # a dropped adapter would land 10x outside the bound
    assert all(v.dtype == torch.bfloat16 for v in state.values())
    assert not any("lora_" in k or "base_layer" in k for k in state)
    assert "model.layers.0.self_attn.q_proj.weight" in state and "lm_head.weight" in state
    assert qlora_policy.training is False         # dropout off while checking


def wrong_scaling(layer):
    lora_a, lora_b, scaling = lora_factors(layer)
    return base_weight_fp32(layer.get_base_layer()) + 2 * scaling * (lora_b @ lora_a)   # alpha instead of alpha/r


def merged_into_nf4(layer):
    """W + s*BA rounded back to NF4 (what merging into the 4-bit weights does), dequantized."""
    merged = merge_weight(layer)
    packed, quant_state = bnb_functional.quantize_4bit(merged, quant_type="nf4", compress_statistics=True)
    return bnb_functional.dequantize_4bit(packed, quant_state).float()


def adapter_dropped(layer):
    return base_weight_fp32(layer.get_base_layer())


@pytest.mark.parametrize("wrong_merge", [wrong_scaling, merged_into_nf4, adapter_dropped])
def test_a_wrong_merge_fails_the_check(qlora_policy, wrong_merge):
    _, report = merged_state(qlora_policy, merge=wrong_merge)
    assert report["max_ratio_to_bound"] > 1.0
    assert report["failed"] and all(".lora" not in name for name in report["failed"])


def test_cast_mismatches_are_exact():
    expected = {"a": torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "b": torch.zeros(2, dtype=torch.bfloat16)}
    assert cast_mismatches(dict(expected), expected) == []
    one_ulp = {"a": torch.tensor([1.0, 2.0 + 2 ** -6], dtype=torch.bfloat16), "b": expected["b"]}
    assert cast_mismatches(one_ulp, expected) == ["a"]
    assert cast_mismatches({"a": expected["a"]}, expected) == ["b"]
    assert cast_mismatches({**expected, "b": expected["b"].float()}, expected) == ["b"]
