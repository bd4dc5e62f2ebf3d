"""What the vLLM tests share: a tiny model vLLM's CPU attention takes, its engine settings, adapters.

Imported by path from the test modules of this folder (not a conftest). vLLM's CPU attention
accepts head sizes 32, 64, 80, ... only, so these tests use head_dim 32 (configs/size/tiny.yaml
keeps 16 for the learning demonstration). Every test module builds one engine and shares it
(about 8 s to build in-process); a failing `import vllm` fails the tests, it never skips them.
"""

from __future__ import annotations

import os

import torch

from lit_verbrec.config.schema import GRPOConfig, LoraConfig, SizeConfig, TinyArchitecture
from lit_verbrec.rl.logprobs import completion_logprobs
from lit_verbrec.rollout.types import Rollout

CORPUS = [f"The user watched Alien ({1970 + i % 30}) and rated it {i % 5} stars; hello world." for i in range(60)]
VLLM_SIZE = SizeConfig(name="tiny", tokenizer="builtin", lora=LoraConfig(rank=8, alpha=16, dropout=0.0),
                       tiny=TinyArchitecture(hidden_size=64, num_attention_heads=2, num_key_value_heads=1,
                                             head_dim=32, intermediate_size=128))
VLLM_GRPO = dict(engine="vllm", vllm_max_model_len=512, vllm_kv_cache_mib=32)
"""A 512-token context and a 32 MiB KV cache: vLLM's CPU default would take 30% of the RAM."""
TOLERANCE = 1e-4
"""float32 engine vs trainer, per sampled token (measured: about 6e-6)."""


def environment_as_found():
    """A module fixture's body: an in-process vLLM engine sets process-wide variables (LD_PRELOAD of
    torch's libgomp, LOCAL_WORLD_SIZE=1, VLLM_DIST_IDENT, ...) that every later subprocess of the
    same pytest worker would inherit; a `train.devices=2` run then saw a world of one. Restore them."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


def shut_down(engine=None) -> None:
    """Close the process's engine and the process group vLLM set up in this process (world size 1),
    so the tests after a module see no torch.distributed and the next engine starts a world of its own."""
    from lit_verbrec.rollout.vllm_llm import close_llm

    close_llm()
    assert not torch.distributed.is_initialized()


def grpo(**overrides) -> GRPOConfig:
    return GRPOConfig(**{**VLLM_GRPO, **overrides})


def set_adapter(policy: torch.nn.Module, seed: int | None, std: float = 0.3) -> None:
    """LoRA B random (seed) or zero (None: the policy equals its base)."""
    g = torch.Generator().manual_seed(seed or 0)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=g) * std if seed is not None else 0 * param)


def trainer_logprobs(policy: torch.nn.Module, rollout: Rollout, temperature: float) -> torch.Tensor:
    """[N, C] log-probs as GRPOModule.sequence_logprobs computes them (free sampling)."""
    with torch.no_grad():
        return completion_logprobs(policy, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                                   rollout.completion_mask, temperature, prompt_groups=rollout.group)["logprobs"]


def max_mismatch(rollout: Rollout, logprobs: torch.Tensor) -> float:
    """Largest |engine - given| log-prob over the sampled tokens."""
    mask = rollout.completion_mask.bool()
    return float((rollout.engine_logprobs - logprobs)[mask].abs().max())
