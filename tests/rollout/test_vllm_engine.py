"""VLLMEngine: what can be checked without vLLM here, and a GPU test that runs only where vLLM does.

The GPU test calls `pytest.importorskip("vllm")` itself (not at module level) so that the
CPU tests of this file still run where vLLM is absent; there it is reported as skipped.
"""

from __future__ import annotations

import re
import sys
from types import SimpleNamespace

import pytest
import torch

from lit_verbrec.config.schema import GRPOConfig, LoraConfig, SizeConfig, TinyArchitecture
from lit_verbrec.models.loading import load_policy, save_adapter, save_dequantized_base
from lit_verbrec.models.tokenizers import build_tiny_tokenizer
from lit_verbrec.rollout.engines import make_engine, vllm_base_model
from lit_verbrec.rollout.types import SamplingParams
from lit_verbrec.rollout.vllm import (
    INSTALL_HINT,
    VLLMEngine,
    rollout_from_outputs,
    vllm_max_lora_rank,
)

CORPUS = [f"The user watched Alien ({1970 + i % 30}) and rated it {i % 5} stars; hello world." for i in range(60)]
SIZE = SizeConfig(name="tiny", tokenizer="builtin", lora=LoraConfig(rank=8, alpha=16, dropout=0.0))


def request(*samples: tuple[list[int], str]) -> SimpleNamespace:
    """A stand-in for vllm.RequestOutput: .outputs[i].token_ids / .text."""
    return SimpleNamespace(outputs=[SimpleNamespace(token_ids=tokens, text=text) for tokens, text in samples])


def test_rollout_from_outputs_pads_and_masks():
    prompts = [[5, 6, 7], [8]]
    outputs = [request(([11, 12, 2], "ab"), ([13], "c")), request(([14, 15], "de"), ([16, 17, 18, 2], "fgh"))]
    rollout = rollout_from_outputs(prompts, outputs, n=2, pad_id=0)
    assert rollout.prompt_ids.tolist() == [[5, 6, 7], [5, 6, 7], [0, 0, 8], [0, 0, 8]]
    assert rollout.prompt_mask.tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 1], [0, 0, 1]]
    assert rollout.completion_ids.tolist() == [[11, 12, 2, 0], [13, 0, 0, 0], [14, 15, 0, 0], [16, 17, 18, 2]]
    assert rollout.completion_mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert rollout.group.tolist() == [0, 0, 1, 1] and rollout.texts == ["ab", "c", "de", "fgh"]
    assert all(t.dtype == torch.long for t in (rollout.prompt_ids, rollout.completion_ids, rollout.group))
    with pytest.raises(ValueError, match="samples per prompt"):
        rollout_from_outputs(prompts, outputs, n=3, pad_id=0)


def test_max_lora_rank_is_one_vllm_accepts():
    assert [vllm_max_lora_rank(r) for r in (1, 4, 8, 16, 17, 64, 300)] == [1, 8, 8, 16, 32, 64, 320]
    with pytest.raises(ValueError):
        vllm_max_lora_rank(600)


def test_without_vllm_the_engine_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    tokenizer = build_tiny_tokenizer(CORPUS, vocab_size=400)
    with pytest.raises(ImportError, match=r"pip install lit_verbrec\[vllm\] on a GPU machine"):
        VLLMEngine("some/base", tokenizer, SIZE, GRPOConfig(engine="vllm"), seed=0)
    with pytest.raises(ImportError, match=re.escape(INSTALL_HINT)):
        make_engine(GRPOConfig(engine="vllm"), SIZE, None, tokenizer, seed=0, vllm_base="some/folder")


def test_vllm_needs_a_plain_base_for_tiny_and_nf4():
    with pytest.raises(ValueError, match="save_dequantized_base"):
        vllm_base_model(SizeConfig(name="8b", model="Qwen/Qwen3-8B", quantization="nf4"), None)
    with pytest.raises(ValueError, match="save_dequantized_base"):
        vllm_base_model(SIZE, None)
    assert vllm_base_model(SizeConfig(name="8b", model="Qwen/Qwen3-8B"), None) == "Qwen/Qwen3-8B"
    assert vllm_base_model(SIZE, "/runs/x/vllm-base") == "/runs/x/vllm-base"


def test_vllm_engine_on_a_gpu(tmp_path):
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a GPU")
    # head_dim 64: vLLM's attention kernels do not take the default tiny head_dim of 16
    size = SizeConfig(name="tiny", tokenizer="builtin", lora=LoraConfig(rank=8, alpha=16, dropout=0.0),
                      tiny=TinyArchitecture(hidden_size=128, num_attention_heads=2, num_key_value_heads=1,
                                            head_dim=64, intermediate_size=256))
    tokenizer = build_tiny_tokenizer(CORPUS, vocab_size=400)
    policy = load_policy(size, tokenizer, gradient_checkpointing=False, seed=0)
    base = save_dequantized_base(policy, tmp_path / "base", tokenizer)
    engine = make_engine(GRPOConfig(engine="vllm", vllm_gpu_memory_utilization=0.2), size, policy, tokenizer,
                         seed=0, vllm_base=str(base))
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             return_dict=False) for text in ("hi", "hello world, rated it")]
    params = SamplingParams(n=3, max_new_tokens=12, seed=0)
    rollout = engine.generate(prompts, params)
    assert rollout.completion_ids.shape[0] == 6 and rollout.group.tolist() == [0, 0, 0, 1, 1, 1]
    assert rollout.completion_mask.sum(1).max() <= 12
    assert torch.equal(engine.generate(prompts, params).completion_ids, rollout.completion_ids)  # seeded
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(std=1.0)
    engine.sync_adapter(save_adapter(policy, tmp_path / "adapter-1"))
    assert not torch.equal(engine.generate(prompts, params).completion_ids, rollout.completion_ids)
