"""Rollouts with a colocated vLLM engine (GPU only), synced to the trainer by LoRA adapters.

Each training rank builds its own `vllm.LLM` on its GPU next to the trainer (tensor
parallel 1, `gpu_memory_utilization` = grpo.vllm_gpu_memory_utilization), loading the
same base model. After every optimizer step the trainer saves the adapter to a fresh
folder and calls `sync_adapter(folder)`; the following `generate` calls use a NEW
`LoRARequest(lora_name=f"policy-{k}", lora_int_id=k, lora_path=folder)`, so vLLM loads it
(an unseen id), its LRU cache (max_loras=1) drops the previous one, and no prefix-cache
entry of an older policy can be reused (the cache key includes the LoRA id).

Why adapter-only sync and never "merge LoRA into the base and push the weights": with a
4-bit base, merging means dequantize -> add B@A -> requantize, and the NF4 re-rounding is
of the size of a whole small LoRA update, so the pushed policy is not the trained one
(peft#2321: "rounding errors are unavoidable" when merging into 4-bit; trl#5975: merged
sync of QLoRA fails under FSDP2 and adapter-only sync is asked for; also trl#3466,
peft#2501, trl#4973). An adapter file is a few MB and exact.

vLLM 0.33.0 (the version pinned by the `vllm` extra; read from its wheel's sources):
- `quantization="bitsandbytes"` no longer exists (absent from
  `vllm/model_executor/layers/quantization/__init__.py::QuantizationMethods`; no bnb
  loader). So vLLM always loads a plain bf16 base. For an `nf4` run pass the folder
  written by `lit_verbrec.models.loading.save_dequantized_base`: the NF4 weights
  dequantized to bf16, i.e. exactly the base the trainer multiplies with, so samples come
  from the trainer's policy. (The original bf16 checkpoint would sample from a slightly
  different base; 32B in bf16 is 64 GB, too big to sit next to the trainer on an 80 GB
  GPU: there an online-quantized engine, e.g. quantization="fp8_per_channel", is the
  option, at the price of that same mismatch.)
- `LLM(model, tokenizer=, dtype=, seed=, gpu_memory_utilization=, enable_sleep_mode=,
  enable_lora=, max_loras=, max_lora_rank=, generation_config=, distributed_executor_backend=)`;
  `max_lora_rank` must be one of 1, 8, 16, 32, 64, 128, 256, 320, 512 (`vllm/config/lora.py`).
- `LLM.generate(prompts=[TokensPrompt(prompt_token_ids=...)], sampling_params=, lora_request=,
  use_tqdm=)` returns one `RequestOutput` per prompt in prompt order, each with `.outputs`:
  n `CompletionOutput(token_ids, text, finish_reason "stop"|"length", stop_reason)`.
  token_ids include the EOS and the token completing a stop string; `text` skips special
  tokens and, with include_stop_str_in_output=True, ends with the stop string.
- `SamplingParams(n, temperature, top_p, top_k (0 or -1: off), max_tokens, stop,
  stop_token_ids, include_stop_str_in_output, seed, structured_outputs)`; with n > 1 and a
  seed, sample i uses seed + i (`vllm/v1/engine/parallel_sampling.py`).
- Constrained decoding (for the action verbalizer): `SamplingParams(structured_outputs=
  StructuredOutputsParams(regex=... | choice=[...] | json=... | grammar=...))`,
  `from vllm.sampling_params import StructuredOutputsParams`; the older
  `guided_decoding=GuidedDecodingParams(...)` is gone in 0.33.
- `LLM.sleep(level=1)` (weights to CPU, KV cache dropped) / `LLM.wake_up()`.
- `LLM(..., generation_config="vllm")`: ignore the checkpoint's generation_config.json, so
  EOS is the tokenizer's EOS only, as in the HF engine (Qwen3's file adds <|endoftext|>).
- Colocated under DDP (one process per GPU): `distributed_executor_backend=
  "external_launcher"` runs vLLM in-process and reads RANK, LOCAL_RANK, MASTER_ADDR,
  MASTER_PORT (`vllm/v1/executor/uniproc_executor.py`); all ranks must build the engine
  together (its memory check all-reduces). trl's colocate mode does the same.

Old log-probs are NOT taken from vLLM: the trainer recomputes them with its own model
(vLLM's kernels, bf16 base and sampling post-processing make its log-probs differ slightly).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from lit_verbrec.config.schema import SizeConfig
from lit_verbrec.config.train_schema import GRPOConfig
from lit_verbrec.rollout.hf import pack_rollout
from lit_verbrec.rollout.types import Rollout, SamplingParams

INSTALL_HINT = "vLLM is not installed: pip install lit_verbrec[vllm] on a GPU machine"
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""Values vLLM 0.33 accepts for max_lora_rank (`MaxLoRARanks` in vllm/config/lora.py)."""


def import_vllm():
    """The vllm module, or an ImportError that says how to get it."""
    try:
        import vllm
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return vllm


def vllm_max_lora_rank(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds a rank-`rank` adapter."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"size.lora.rank={rank}: vLLM serves LoRA ranks up to {VLLM_LORA_RANKS[-1]}")


def rollout_from_outputs(prompts: Sequence[Sequence[int]], outputs: Sequence, n: int, pad_id: int) -> Rollout:
    """vLLM's RequestOutputs (one per prompt, each with n samples) -> Rollout.

    Only `.outputs[i].token_ids` and `.outputs[i].text` are read. vLLM already ends each
    sample at EOS or a stop string (kept), so every returned token has mask 1.
    """
    if len(outputs) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(outputs)} vLLM outputs")
    completions: list[list[int]] = []
    texts: list[str] = []
    for request in outputs:
        if len(request.outputs) != n:
            raise ValueError(f"expected {n} samples per prompt, got {len(request.outputs)}")
        for sample in request.outputs:
            completions.append(list(sample.token_ids))
            texts.append(sample.text)
    return pack_rollout(prompts, completions, texts, n, pad_id)


def _colocation_kwargs() -> dict[str, str]:
    """In-process engine per rank under torch.distributed (see the module docstring)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return {}
    os.environ["RANK"] = str(torch.distributed.get_rank())
    os.environ["WORLD_SIZE"] = str(torch.distributed.get_world_size())
    os.environ["LOCAL_RANK"] = str(torch.cuda.current_device())
    return {"distributed_executor_backend": "external_launcher"}


class VLLMEngine:
    """A colocated `vllm.LLM` with the same contract as `HFEngine` (see the module docstring).

    `base_model`: what vLLM loads (hub id or folder; for nf4 runs the dequantized base).
    `seed`: the engine's sampling seed; give each rank its own (run.seed + rank), or ranks
    that draw the same prompt draw the same samples.
    """

    needs_adapter_sync = True
    """After each optimizer step the trainer saves the adapter and calls `sync_adapter(folder)`."""

    def __init__(self, base_model: str, tokenizer: PreTrainedTokenizerBase, size: SizeConfig,
                 grpo: GRPOConfig, seed: int) -> None:
        vllm = import_vllm()
        self.tokenizer = tokenizer
        self.sleep_mode = grpo.vllm_sleep_mode
        self.lora_request = None  # None: the base policy (LoRA B = 0 before the first step)
        self.adapter_version = 0
        self.llm = vllm.LLM(
            model=base_model,
            tokenizer=base_model if size.tokenizer == "builtin" else size.tokenizer,
            dtype="bfloat16",
            seed=seed,
            gpu_memory_utilization=grpo.vllm_gpu_memory_utilization,
            enable_sleep_mode=grpo.vllm_sleep_mode,
            enable_lora=True,
            max_loras=1,
            max_lora_rank=vllm_max_lora_rank(size.lora.rank),
            generation_config="vllm",
            **_colocation_kwargs(),
        )
        if self.sleep_mode:
            self.llm.sleep(level=1)

    def sync_adapter(self, adapter_dir: Path | None) -> None:
        """Sample from the adapter saved in `adapter_dir` from the next `generate` on (None: base)."""
        if adapter_dir is None:
            self.lora_request = None
            return
        from vllm.lora.request import LoRARequest

        self.adapter_version += 1  # lora_int_id must be >= 1 and new for new weights
        self.lora_request = LoRARequest(lora_name=f"policy-{self.adapter_version}",
                                        lora_int_id=self.adapter_version, lora_path=str(adapter_dir))

    def sampling_params(self, params: SamplingParams):
        vllm = import_vllm()
        return vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,  # 0: off
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            include_stop_str_in_output=True,
            stop_token_ids=[self.tokenizer.eos_token_id],
            seed=params.seed,
        )

    def generate(self, prompts: list[list[int]], params: SamplingParams, logits_processor=None) -> Rollout:
        """B prompts (token ids) -> Rollout of B*params.n completions, grouped by prompt."""
        if logits_processor is not None:
            raise NotImplementedError("vLLM takes no per-call torch logits processor; use structured_outputs")
        from vllm.inputs import TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=list(prompt)) for prompt in prompts]
        if self.sleep_mode:
            self.llm.wake_up()
        try:
            outputs = self.llm.generate(requests, sampling_params=self.sampling_params(params),
                                        lora_request=self.lora_request, use_tqdm=False)
        finally:
            if self.sleep_mode:
                self.llm.sleep(level=1)
        return rollout_from_outputs(prompts, outputs, params.n, self.tokenizer.pad_token_id)
