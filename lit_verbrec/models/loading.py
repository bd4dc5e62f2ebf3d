"""Tokenizer and policy loading: a tiny random-weight Qwen3, or Qwen3-8B/32B, with LoRA (QLoRA).

The policy is always a `PeftModel`: a frozen base (bitsandbytes NF4 when
`size.quantization == "nf4"`) plus LoRA adapters on every projection of Qwen3 (q, k, v, o,
gate, up, down). Only the adapters train, so

- the reference policy of the KL term is the same model with the adapter switched off
  (`reference_policy`), with no second copy of the weights;
- a checkpoint is the adapter alone (`save_adapter`), in peft's format, which
  `PeftModel.from_pretrained` and vLLM's LoRA loader both read.

`size.name == "tiny"` builds the real Qwen3 architecture (`Qwen3ForCausalLM`, same
activation, norms and rope) with `size.tiny`'s small dimensions and random weights; with
`size.quantization == "nf4"` it goes through a save and a 4-bit reload, so the QLoRA path
(bitsandbytes `Linear4bit`, `prepare_model_for_kbit_training`) runs and is tested on CPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from bitsandbytes import functional as bnb_functional
from bitsandbytes.nn import Linear4bit, Params4bit
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
from safetensors.torch import save_file
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from lit_verbrec.config.schema import SizeConfig
from lit_verbrec.data.files import atomic_folder_write
from lit_verbrec.models.tokenizers import build_tiny_tokenizer

LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
"""Every linear projection of a Qwen3 decoder layer (attention and MLP); not the LM head."""
VOCAB_MULTIPLE = 64
"""Embedding rows are rounded up to a multiple of this (Qwen3-8B: 151,669 tokens, 151,936 rows)."""
GRADIENT_CHECKPOINTING_KWARGS = {"use_reentrant": False}
"""Non-reentrant checkpointing: works with frozen inputs and with DDP's unused-parameter checks."""


def load_tokenizer(size: SizeConfig, corpus: Iterable[str] | None = None) -> PreTrainedTokenizerBase:
    """`builtin`: a BPE trained on `corpus` (required); otherwise a hub id or local folder."""
    if size.tokenizer == "builtin":
        if corpus is None:
            raise ValueError("size.tokenizer=builtin trains a tokenizer: pass the corpus (training texts)")
        return build_tiny_tokenizer(corpus)
    tokenizer = AutoTokenizer.from_pretrained(size.tokenizer, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def padded_vocab_size(tokenizer: PreTrainedTokenizerBase) -> int:
    """len(tokenizer) (added tokens included) rounded up to a multiple of VOCAB_MULTIPLE."""
    return -(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def tiny_config(size: SizeConfig, vocab_size: int) -> Qwen3Config:
    """Qwen3-8B's architecture settings (../shared/qwen3-tokenizer/Qwen3-8B.config.json) at tiny dimensions."""
    tiny = size.tiny
    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_hidden_layers,
        num_attention_heads=tiny.num_attention_heads,
        num_key_value_heads=tiny.num_key_value_heads,
        head_dim=tiny.head_dim,
        hidden_act="silu",
        max_position_embeddings=40960,
        initializer_range=tiny.initializer_range,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        attention_bias=False,
        attention_dropout=0.0,
        use_sliding_window=tiny.sliding_window > 0,
        sliding_window=tiny.sliding_window or None,
        max_window_layers=0,
        # with a window, the first layers slide and the last `global_layers` see everything
        layer_types=(["sliding_attention"] * (tiny.num_hidden_layers - tiny.global_layers)
                     + ["full_attention"] * tiny.global_layers) if tiny.sliding_window > 0 else None,
        tie_word_embeddings=False,
        use_cache=True,
        dtype="float32",
    )


def quantization_config(size: SizeConfig) -> BitsAndBytesConfig | None:
    """QLoRA's NF4 recipe (double quantization, bf16 compute) for `nf4`; None for `none`."""
    if size.quantization == "none":
        return None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def local_device_map() -> dict[str, int] | str:
    """The whole model on this rank's GPU (call after the rank's device is set), else on CPU."""
    if torch.cuda.is_available():
        return {"": torch.cuda.current_device()}
    return "cpu"


def load_policy(size: SizeConfig, tokenizer: PreTrainedTokenizerBase, *, gradient_checkpointing: bool,
                seed: int = 0, workdir: Path | None = None) -> PeftModel:
    """The trainable policy: base model (frozen, NF4 if asked) + LoRA on all Qwen3 projections.

    `seed` fixes the tiny model's random weights and the LoRA initialisation (A random, B zero,
    so the fresh policy equals its base). `workdir` is where a tiny NF4 model is saved before
    its 4-bit reload (bitsandbytes quantizes while loading a checkpoint).
    """
    with torch.random.fork_rng(devices=_cuda_devices()):
        torch.manual_seed(seed)
        base = load_base_model(size, tokenizer, seed=seed, workdir=workdir)
        base.config.use_cache = False  # training forwards never reuse a KV cache
        if size.quantization == "nf4":
            base = prepare_model_for_kbit_training(
                base, use_gradient_checkpointing=gradient_checkpointing,
                gradient_checkpointing_kwargs=GRADIENT_CHECKPOINTING_KWARGS)
        elif gradient_checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=GRADIENT_CHECKPOINTING_KWARGS)
        lora = PeftLoraConfig(
            r=size.lora.rank,
            lora_alpha=size.lora.alpha,
            lora_dropout=size.lora.dropout,
            target_modules=LORA_TARGET_MODULES,
            bias="none",
            task_type="CAUSAL_LM",
        )
        return get_peft_model(base, lora)


def load_base_model(size: SizeConfig, tokenizer: PreTrainedTokenizerBase, *, seed: int = 0,
                    workdir: Path | None = None) -> PreTrainedModel:
    """The base model alone (NF4 if asked), for `load_adapter`; a tiny model's random weights
    are fixed by `seed` (the same seed gives the base a policy of that seed was built on)."""
    if size.name == "tiny":
        with torch.random.fork_rng(devices=_cuda_devices()):
            torch.manual_seed(seed)
            model = Qwen3ForCausalLM(tiny_config(size, padded_vocab_size(tokenizer)))
        if size.quantization == "nf4":
            if workdir is None:
                raise ValueError("a tiny nf4 model is saved and reloaded in 4 bits: pass workdir")
            folder = Path(workdir) / "tiny-base"
            model.save_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(
                folder, quantization_config=quantization_config(size), device_map=local_device_map())
            keep_4bit_weights_trainable_on_cpu(model)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            size.model, quantization_config=quantization_config(size), dtype=torch.bfloat16,
            device_map=local_device_map())
        keep_4bit_weights_trainable_on_cpu(model)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def keep_4bit_weights_trainable_on_cpu(model: torch.nn.Module) -> None:
    """Stop bitsandbytes (0.50) from repacking 4-bit weights for its CPU inference kernel.

    On a CPU with AVX512-BF16, the first eval-mode forward without gradients (a rollout)
    rewrites each `Linear4bit` weight in place into a CPU layout (`packing_format_for_cpu`);
    from then on `matmul_4bit` calls `gemv_4bit`, which has no autograd, so a later training
    step silently drops the gradient through every frozen linear (LoRA gradients of all but
    the last layers come out wrong; tests/models/test_loading.py pins this). Turning the
    feature off per layer keeps the one format the training path differentiates. No effect
    on GPU.
    """
    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _cuda_devices() -> list[int]:
    return [torch.cuda.current_device()] if torch.cuda.is_available() else []


@contextmanager
def reference_policy(model: PeftModel) -> Iterator[PeftModel]:
    """Inside the `with`, `model` computes the reference policy pi_ref: the base, adapter off.

    GRPO's KL term compares the policy to the model it started from. Since only the LoRA
    adapter trains, pi_ref is the same module with the adapter disabled (peft's
    `disable_adapter`): no second copy of 8B/32B weights. The adapter is active again after
    the `with`, also when an exception leaves it. Use under `torch.no_grad()`.
    """
    with model.disable_adapter():
        yield model


def save_adapter(model: PeftModel, folder: Path, tokenizer: PreTrainedTokenizerBase | None = None) -> Path:
    """Write the adapter only (adapter_config.json + adapter_model.safetensors), and the tokenizer if given.

    This is what `load_adapter`, `PeftModel.from_pretrained` and vLLM's `LoRARequest` load.
    `save_embedding_layers=False`: no embeddings are adapted, and it stops peft from looking
    the base model up on a hub to decide.
    """
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True, save_embedding_layers=False)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)

    # a kill mid-save leaves every file of the folder whole (the previous save's or this one's)
    return atomic_folder_write(folder, write, last="adapter_model.safetensors")


def load_adapter(base_model: PreTrainedModel, folder: Path, *, is_trainable: bool = False) -> PeftModel:
    """Put the adapter saved in `folder` on `base_model` (frozen unless `is_trainable`)."""
    return PeftModel.from_pretrained(base_model, Path(folder), is_trainable=is_trainable)


def save_dequantized_base(model: PeftModel | PreTrainedModel, folder: Path, tokenizer: PreTrainedTokenizerBase | None = None,
                          dtype: torch.dtype | None = torch.bfloat16) -> Path:
    """Write the policy's frozen base (or a plain base model) as a plain checkpoint (bf16 by default), NF4 weights dequantized.

    For the vLLM engine on an `nf4` run: vLLM 0.33 has no bitsandbytes support, and loading
    the original bf16 base would sample from a different base than the one being trained
    (the NF4 rounding). Dequantized NF4 weights in bf16 are exactly what bitsandbytes
    multiplies with (compute dtype bf16), so vLLM's base plus the synced adapter is the
    trainer's policy. The base never trains, so this is written once per run (on one rank).
    Weights are moved to CPU one at a time; the adapter is not included.

    `dtype=None` keeps each plain weight's own dtype (a float32 tiny model stays float32, so a
    float32 vLLM engine on CPU computes exactly the trainer's base) and writes NF4 weights in bf16.
    """
    folder = Path(folder)
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    state: dict[str, torch.Tensor] = {}
    for module_name, module in base.named_modules():
        if ".lora_" in f".{module_name}":
            continue
        for param_name, param in module.named_parameters(recurse=False):
            name = f"{module_name}.{param_name}".removeprefix(".").replace(".base_layer.", ".")
            if isinstance(param, Params4bit):
                module.state_dict()  # side effect: undoes bitsandbytes' CPU-only repacking, if any
                weight = bnb_functional.dequantize_4bit(param.data, param.quant_state)  # [out, in]
            else:
                weight = param.data
            target = dtype or (torch.bfloat16 if isinstance(param, Params4bit) else weight.dtype)
            state[name] = weight.to(device="cpu", dtype=target).contiguous()
    config = base.config.to_dict()
    config.pop("quantization_config", None)  # a plain checkpoint now
    # a config built in memory (tiny) names no architecture: vLLM would then serve it as a pooling model
    config["architectures"] = config.get("architectures") or [type(base).__name__]
    config["dtype"] = str(dtype or next(iter(state.values())).dtype).removeprefix("torch.")
    folder.mkdir(parents=True, exist_ok=True)
    type(base.config).from_dict(config).save_pretrained(folder)
    base.generation_config.save_pretrained(folder)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder
