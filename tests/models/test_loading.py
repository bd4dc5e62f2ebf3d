"""Model loading: the tiny Qwen3, the tokenizers, QLoRA on CPU, adapter checkpoints, pi_ref."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bitsandbytes.nn import Linear4bit
from peft import PeftModel
from transformers import AutoModelForCausalLM, Qwen3ForCausalLM

from lit_verbrec.config.schema import LoraConfig, SizeConfig
from lit_verbrec.models.loading import (
    LORA_TARGET_MODULES,
    load_adapter,
    load_base_model,
    load_policy,
    load_tokenizer,
    padded_vocab_size,
    reference_policy,
    save_adapter,
    save_dequantized_base,
    tiny_config,
)
from lit_verbrec.models.tokenizers import build_tiny_tokenizer

ROOT = Path(__file__).resolve().parents[2]
QWEN3_TOKENIZER = ROOT.parent / "shared" / "qwen3-tokenizer"
CORPUS = [f"The user watched Alien ({1970 + i % 30}) and rated it {i % 5} stars; hello world." for i in range(60)]
NO_DROPOUT = LoraConfig(rank=8, alpha=16, dropout=0.0)  # deterministic forwards in train mode


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer(CORPUS, vocab_size=400)


def tiny(quantization: str = "none") -> SizeConfig:
    return SizeConfig(name="tiny", tokenizer="builtin", quantization=quantization, lora=NO_DROPOUT)


def batch(tokenizer, n_rows: int = 2, length: int = 12) -> torch.Tensor:
    return torch.randint(0, len(tokenizer), (n_rows, length), generator=torch.Generator().manual_seed(0))


def randomize_lora_b(model: PeftModel) -> None:
    """LoRA B starts at 0 (adapter = identity); give it weights so the adapter matters."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def adamw_step(model: PeftModel, ids: torch.Tensor) -> None:
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()


# ---- tokenizers -------------------------------------------------------------------------

def test_builtin_tokenizer_renders_chatml_pads_left_and_is_deterministic(tokenizer):
    text = tokenizer.apply_chat_template([{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "hello world"}],
                                         tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhello world<|im_end|>\n"
                    "<|im_start|>assistant\n")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True,
                                        return_dict=False)
    assert tokenizer.decode(ids) == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    assert (tokenizer.pad_token, tokenizer.eos_token, tokenizer.padding_side) == ("<|endoftext|>", "<|im_end|>", "left")
    padded = tokenizer(["a", "hello world stars"], padding=True)
    assert padded["attention_mask"][0][0] == 0 and padded["attention_mask"][0][-1] == 1
    assert padded["input_ids"][0][0] == tokenizer.pad_token_id
    again = build_tiny_tokenizer(CORPUS, vocab_size=400)
    trained = json.loads(tokenizer.backend_tokenizer.to_str())
    assert json.loads(again.backend_tokenizer.to_str())["model"] == trained["model"]  # vocab and merges
    assert tokenizer.decode(tokenizer("héllo <think>x</think>\n\n  wörld")["input_ids"]) == "héllo <think>x</think>\n\n  wörld"


def test_load_tokenizer_builtin_needs_a_corpus():
    with pytest.raises(ValueError, match="corpus"):
        load_tokenizer(SizeConfig(name="tiny", tokenizer="builtin"))
    assert len(load_tokenizer(SizeConfig(name="tiny", tokenizer="builtin"), CORPUS)) > 256


@pytest.mark.skipif(not QWEN3_TOKENIZER.is_dir(), reason="needs ../shared/qwen3-tokenizer")
def test_real_qwen3_tokenizer_through_load_tokenizer():
    tokenizer = load_tokenizer(SizeConfig(name="tiny", tokenizer=str(QWEN3_TOKENIZER)))
    assert len(tokenizer) == 151_669 and padded_vocab_size(tokenizer) % 64 == 0
    assert (tokenizer.pad_token, tokenizer.eos_token, tokenizer.padding_side) == ("<|endoftext|>", "<|im_end|>", "left")
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Recommend a film."}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)
    assert text.startswith("<|im_start|>user\nRecommend a film.<|im_end|>\n<|im_start|>assistant\n")


# ---- the tiny model ---------------------------------------------------------------------

def test_tiny_config_is_the_qwen3_architecture(tokenizer):
    size = tiny()
    vocab = padded_vocab_size(tokenizer)
    assert vocab % 64 == 0 and vocab >= len(tokenizer)
    config = tiny_config(size, vocab)
    assert config.rope_parameters["rope_theta"] == 1e6 and config.rms_norm_eps == 1e-6
    assert config.hidden_act == "silu" and not config.tie_word_embeddings and not config.attention_bias
    model = Qwen3ForCausalLM(config)
    t = size.tiny
    attention = t.hidden_size * t.head_dim * (2 * t.num_attention_heads + 2 * t.num_key_value_heads) + 2 * t.head_dim
    layer = attention + 3 * t.hidden_size * t.intermediate_size + 2 * t.hidden_size
    expected = 2 * vocab * t.hidden_size + t.num_hidden_layers * layer + t.hidden_size
    assert sum(p.numel() for p in model.parameters()) == expected


def test_tiny_sliding_window_hides_tokens_outside_the_window(tokenizer):
    size = tiny()
    ids = batch(tokenizer, 1, 40)
    far = ids.clone()
    far[0, 5] = (far[0, 5] + 1) % len(tokenizer)          # 34 tokens before the last position
    changes = []
    for window in (0, 8):
        size.tiny.sliding_window = window
        config = tiny_config(size, padded_vocab_size(tokenizer))
        assert config.layer_types == ["sliding_attention" if window else "full_attention"] * size.tiny.num_hidden_layers
        torch.manual_seed(0)
        model = Qwen3ForCausalLM(config).eval()
        with torch.no_grad():
            changes.append(float((model(ids).logits[0, -1] - model(far).logits[0, -1]).abs().max()))
    assert changes[0] > 1e-3 and changes[1] == 0.0      # 2 layers x window 8 cannot reach 34 tokens back


def test_load_policy_puts_lora_on_every_projection_only(tokenizer):
    model = load_policy(tiny(), tokenizer, gradient_checkpointing=True, seed=0)
    assert isinstance(model, PeftModel) and isinstance(model.get_base_model(), Qwen3ForCausalLM)
    assert model.get_base_model().get_input_embeddings().weight.shape[0] == padded_vocab_size(tokenizer)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    adapted = {name.split(".")[-4] for name in trainable}  # ...q_proj.lora_A.default.weight
    assert adapted == set(LORA_TARGET_MODULES)
    assert len(trainable) == 2 * len(LORA_TARGET_MODULES) * tiny().tiny.num_hidden_layers
    assert model.is_gradient_checkpointing and model.config.use_cache is False
    same = load_policy(tiny(), tokenizer, gradient_checkpointing=False, seed=0)
    different = load_policy(tiny(), tokenizer, gradient_checkpointing=False, seed=1)
    ids = batch(tokenizer)
    assert torch.equal(logits(model, ids), logits(same, ids))
    assert not torch.equal(logits(model, ids), logits(different, ids))


# ---- QLoRA on CPU -----------------------------------------------------------------------

def test_qlora_step_changes_only_lora_weights(tokenizer, tmp_path):
    model = load_policy(tiny("nf4"), tokenizer, gradient_checkpointing=True, seed=0, workdir=tmp_path)
    projections = [m for name, m in model.named_modules() if name.endswith(tuple(LORA_TARGET_MODULES))]
    assert projections and all(isinstance(m.base_layer, Linear4bit) for m in projections)
    before = {name: value.clone() for name, value in model.state_dict().items()}  # params + 4-bit buffers
    assert any(name.endswith("weight.absmax") for name in before)
    adamw_step(model, batch(tokenizer))
    after = model.state_dict()
    assert after.keys() == before.keys()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    lora_b = {name for name in before if "lora_B" in name}
    assert changed and all("lora_" in name for name in changed)
    assert lora_b <= changed
    grads = {name: p.grad for name, p in model.named_parameters() if "lora_B" in name}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_qlora_gradients_are_the_same_after_an_eval_forward(tokenizer, tmp_path):
    """Pins keep_4bit_weights_trainable_on_cpu: a rollout (eval, no grad) must not break training."""
    def lora_grads(eval_first: bool) -> torch.Tensor:
        model = load_policy(tiny("nf4"), tokenizer, gradient_checkpointing=True, seed=0,
                            workdir=tmp_path / str(eval_first))
        randomize_lora_b(model)
        if eval_first:
            logits(model, batch(tokenizer))
        model.train()
        ids = batch(tokenizer)
        model(input_ids=ids, labels=ids).loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
    torch.testing.assert_close(lora_grads(eval_first=True), lora_grads(eval_first=False), rtol=0, atol=0)


# ---- adapter checkpoints and the reference policy ---------------------------------------

def test_adapter_round_trip_gives_identical_logits(tokenizer, tmp_path):
    model = load_policy(tiny(), tokenizer, gradient_checkpointing=False, seed=3)
    adamw_step(model, batch(tokenizer))
    folder = save_adapter(model, tmp_path / "adapter", tokenizer)
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    config = json.loads((folder / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == set(LORA_TARGET_MODULES) and config["r"] == NO_DROPOUT.rank
    restored = load_adapter(load_base_model(tiny(), tokenizer, seed=3), folder)  # the base of seed 3
    ids = batch(tokenizer)
    torch.testing.assert_close(logits(restored, ids), logits(model, ids), rtol=0, atol=0)


def test_reference_policy_is_the_base_and_the_adapter_comes_back(tokenizer):
    model = load_policy(tiny(), tokenizer, gradient_checkpointing=False, seed=0)
    ids = batch(tokenizer)
    initial = logits(model, ids)  # LoRA B = 0: the policy is still its base
    adamw_step(model, ids)
    trained = logits(model, ids)
    assert not torch.allclose(trained, initial)
    with reference_policy(model) as reference:
        torch.testing.assert_close(logits(reference, ids), initial, rtol=0, atol=0)
    torch.testing.assert_close(logits(model, ids), trained, rtol=0, atol=0)
    with pytest.raises(RuntimeError), reference_policy(model):
        raise RuntimeError("a failure inside the reference pass")
    torch.testing.assert_close(logits(model, ids), trained, rtol=0, atol=0)


def test_dequantized_base_matches_the_nf4_base(tokenizer, tmp_path):
    model = load_policy(tiny("nf4"), tokenizer, gradient_checkpointing=False, seed=0, workdir=tmp_path)
    randomize_lora_b(model)
    ids = batch(tokenizer)
    with reference_policy(model):
        nf4_base = logits(model, ids)
    folder = save_dequantized_base(model, tmp_path / "dequantized", tokenizer)
    plain = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert not any(isinstance(m, Linear4bit) for m in plain.modules())
    # bf16 activations in bitsandbytes' matmul vs fp32 here: close, not equal (bf16 keeps ~3
    # significant digits, so the tolerance scales with the logits' magnitude)
    scale = float(nf4_base.abs().max())
    torch.testing.assert_close(logits(plain, ids), nf4_base, rtol=0, atol=2e-2 * scale)
