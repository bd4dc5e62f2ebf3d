"""Choosing the rollout engine from `grpo.engine`: one table, one protocol.

Both engines take B prompts (token ids) and return a `Rollout` of B*G rows grouped by
prompt; `sync_adapter(folder)` is called after each optimizer step with the freshly saved
adapter (a no-op for `hf`, which samples from the trainer's own weights).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from lit_verbrec.config.schema import SizeConfig
from lit_verbrec.config.train_schema import GRPOConfig
from lit_verbrec.rollout.hf import HFEngine
from lit_verbrec.rollout.types import Rollout, SamplingParams
from lit_verbrec.rollout.vllm import VLLMEngine


class RolloutEngine(Protocol):
    needs_adapter_sync: bool
    """True: save the adapter after each optimizer step and pass its folder to `sync_adapter`."""

    def generate(self, prompts: list[list[int]], params: SamplingParams,
                 logits_processor: LogitsProcessor | None = None) -> Rollout: ...

    def sync_adapter(self, adapter_dir: Path | None) -> None: ...

    def close(self) -> None:
        """Free what the engine holds beyond the trainer's model (the stage is over)."""


def vllm_base_model(size: SizeConfig, vllm_base: str | None) -> str:
    """What vLLM loads: `vllm_base` if given, else size.model (only valid for an unquantized 8b/32b)."""
    if vllm_base is not None:
        return vllm_base
    if size.name == "tiny" or size.quantization == "nf4":
        raise ValueError("grpo.engine=vllm with a tiny or nf4 model: pass vllm_base, the folder written by "
                         "lit_verbrec.models.loading.save_dequantized_base (vLLM 0.33 has no bitsandbytes)")
    return size.model


def _hf(grpo: GRPOConfig, size: SizeConfig, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
        seed: int, vllm_base: str | None) -> RolloutEngine:
    return HFEngine(model, tokenizer)


def _vllm(grpo: GRPOConfig, size: SizeConfig, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
          seed: int, vllm_base: str | None) -> RolloutEngine:
    return VLLMEngine(vllm_base_model(size, vllm_base), tokenizer, size, grpo, seed)


ENGINES: dict[str, Callable[..., RolloutEngine]] = {"hf": _hf, "vllm": _vllm}
"""grpo.engine -> constructor; GRPOConfig validates the name against ("hf", "vllm")."""


def make_engine(grpo: GRPOConfig, size: SizeConfig, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                seed: int, *, vllm_base: str | None = None) -> RolloutEngine:
    """The engine named by grpo.engine. `seed`: the run's sampling seed (the vLLM engine adds its rank)."""
    return ENGINES[grpo.engine](grpo, size, model, tokenizer, seed, vllm_base)
