"""A cost model for one stage on GPUs: memory per GPU, step time, GPU-hours. Estimates, not measurements.

Inputs: the model's config (layers, widths, vocabulary), the stage's GRPO settings (G, prompts
per step B, micro-batch, completion length C), the prompt length P, the LoRA rank, the
quantization, and a GPU type. Every number comes with the arithmetic that made it.

Memory per GPU (each DDP rank holds a full replica):
    base weights     nf4: 0.5 B/param + 0.127 bit/param of double-quantized constants for the
                     linear layers; embeddings and LM head stay bf16. none: bf16, 2 B/param.
    LoRA             r * (in + out) per adapted projection; fp32 weight + grad + AdamW's two
                     moments = 16 B/param.
    activations      gradient checkpointing keeps each layer's input (2 B * h per token) and one
                     layer's working set (~34 h bytes per token, Korthikanti et al. 2022, with
                     fused attention) for a micro-batch of m sequences of P + C tokens (without
                     checkpointing: every layer's working set, and the prompt once per group);
                     plus the chunked log-prob buffer (min(chunk, m C) * V * 4 B, rl/logprobs.py).
    vLLM KV cache    2 (K, V) * layers * kv_heads * head_dim * 2 B per token, for the B*G rollouts
                     of a step at full length; vLLM reserves `vllm_gpu_memory_utilization` of the GPU
                     for weights + KV.

Time per step (FLOPs at a stated MFU; decoding at a stated share of memory bandwidth):
    prefill          2 N FLOPs per prompt token, once per prompt (vLLM prefix caching shares it
                     across the G samples)
    decode           C steps, each reading the weights once: C * weight bytes / (bandwidth * eff)
    train            6 N per token of the B*G sequences (forward 2N, backward 2N for activation
                     gradients of the frozen base, recomputation 2N with checkpointing)
    reference        2 N per token when beta > 0 (the adapter-disabled forward)
The oracle's time (stage 1) is not included: it runs on other hardware and overlaps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

GIB = 1024 ** 3
TOKENS_PER_LINE = 45   # a template line in Qwen3's tokenizer, measured on the synthetic log (about 40-50)
LORA_PROJECTIONS = ("q", "k", "v", "o", "gate", "up", "down")


@dataclass(frozen=True)
class GPU:
    name: str
    memory_gib: float
    bf16_tflops: float   # dense, no sparsity
    bandwidth_tbs: float


GPUS = {g.name: g for g in (GPU("h100", 80, 989, 3.35), GPU("h200", 141, 989, 4.8), GPU("a100", 80, 312, 2.0))}


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, c: dict) -> Shape:
        return cls(c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"],
                   c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"], c["intermediate_size"],
                   c["vocab_size"], bool(c.get("tie_word_embeddings", False)))

    def projections(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each adapted projection of one layer."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return {"q": (h, q), "k": (h, kv), "v": (h, kv), "o": (q, h), "gate": (h, i), "up": (h, i), "down": (i, h)}

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.projections().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params + self.layers * 2 * self.hidden


def lora_params(shape: Shape, rank: int) -> int:
    return shape.layers * sum(rank * (a + b) for a, b in shape.projections().values())


def weight_bytes(shape: Shape, quantization: str, dtype_bytes: int = 2) -> float:
    """The base's weights: nf4 linears + bf16 rest, or everything at dtype_bytes (2: bf16; 4: fp32 on CPU)."""
    if quantization == "nf4":
        return shape.linear_params * (0.5 + 0.127 / 8) + (shape.embedding_params + shape.layers * 2 * shape.hidden) * 2
    return shape.params * float(dtype_bytes)


def memory(shape: Shape, quantization: str, rank: int, micro_batch: int, prompt_tokens: int, new_tokens: int,
           group: int, chunk: int, rollouts: int, vllm: bool, checkpointing: bool = True,
           dtype_bytes: int = 2) -> dict[str, float]:
    """Bytes per GPU by part (see the module docstring). Without checkpointing the G samples of a
    prompt share one encoding of it (rl/logprobs.py `prompt_groups`): a micro-batch of m rows then
    carries ceil(m / G) prompts and m completions; with it, every row carries its prompt."""
    scale = dtype_bytes / 2                      # the activation constants are for 2-byte activations
    per_token_layer = 34 * shape.hidden * scale
    stored = shape.layers * 2 * shape.hidden * scale if checkpointing else shape.layers * per_token_layer
    working = per_token_layer if checkpointing else 0
    prompts = micro_batch if checkpointing else -(-micro_batch // group)
    tokens = prompts * prompt_tokens + micro_batch * new_tokens
    parts = {
        "base weights": weight_bytes(shape, quantization, dtype_bytes),
        "LoRA + grads + AdamW": lora_params(shape, rank) * 16.0,
        "activations": tokens * (stored + working) + min(chunk, micro_batch * new_tokens) * shape.vocab * 4.0,
    }
    if vllm:   # vLLM holds its own bf16 weights (the dequantized base for nf4) and the rollouts' KV cache
        parts["vLLM weights (bf16)"] = weight_bytes(shape, "none")
        parts["vLLM KV cache"] = rollouts * (prompt_tokens + new_tokens) * 2 * shape.layers * shape.kv_heads * shape.head_dim * 2.0
    return parts


def step_seconds(shape: Shape, gpu: GPU, quantization: str, prompts: int, group: int, prompt_tokens: int,
                 new_tokens: int, beta: float, mfu: float, bandwidth_eff: float) -> dict[str, float]:
    """Seconds per optimizer step on one GPU by phase (see the module docstring)."""
    flops = gpu.bf16_tflops * 1e12 * mfu
    n = shape.params
    sequences, tokens = prompts * group, prompt_tokens + new_tokens
    # vLLM decodes from its bf16 copy of the weights (a dequantized base for nf4).
    decode_bytes = weight_bytes(shape, "none")
    return {
        "prefill": 2 * n * prompts * prompt_tokens / flops,
        "decode": new_tokens * decode_bytes / (gpu.bandwidth_tbs * 1e12 * bandwidth_eff),
        "train": 6 * n * sequences * tokens / flops,
        "reference": (2 * n * sequences * tokens / flops) if beta > 0 else 0.0,
    }


def model_shape(cfg, configs_dir: Path | None = None) -> Shape:
    """The stage model's shape: size.tiny's architecture, Qwen3-{8B,32B}.config.json in `configs_dir`
    (../shared/qwen3-tokenizer offline), else size.model's config.json (a local folder or the hub)."""
    if cfg.size.name == "tiny":
        t = cfg.size.tiny
        return Shape(t.num_hidden_layers, t.hidden_size, t.num_attention_heads, t.num_key_value_heads, t.head_dim,
                     t.intermediate_size, 151936 if cfg.size.tokenizer != "builtin" else 4096, False)
    local = configs_dir / f"Qwen3-{cfg.size.name.upper()}.config.json" if configs_dir else None
    if local is not None and local.is_file():
        return Shape.from_config(json.loads(local.read_text()))
    from transformers import AutoConfig

    return Shape.from_config(AutoConfig.from_pretrained(cfg.size.model).to_dict())


def stage_memory(cfg, stage: str, shape: Shape, gpu: GPU, prompt_tokens: int = 0, dtype_bytes: int = 2) -> dict:
    """{"parts": bytes by part, "total_gib", "floor_gib" (before any KV cache), "verdict"} of one stage on `gpu`.
    prompt_tokens 0: history_len template lines of TOKENS_PER_LINE plus 200 for the instructions."""
    grpo = cfg.verbalizer.grpo if stage == "verbalizer" else cfg.reasoner.grpo
    prompt = prompt_tokens or cfg.data.examples.history_len * TOKENS_PER_LINE + 200
    parts = memory(shape, cfg.size.quantization, cfg.size.lora.rank, grpo.micro_batch_size, prompt, grpo.max_new_tokens,
                   grpo.group_size, grpo.logprob_chunk, grpo.prompts_per_step * grpo.group_size, grpo.engine == "vllm",
                   grpo.gradient_checkpointing, dtype_bytes)
    total = sum(parts.values()) / GIB
    floor = total - parts.get("vLLM KV cache", 0.0) / GIB   # vLLM decodes fewer rollouts at once with less KV room
    verdict = ("fits" if total <= gpu.memory_gib else "fits, with fewer rollouts decoded at once"
               if floor <= gpu.memory_gib else "does NOT fit")
    return {"parts": parts, "total_gib": total, "floor_gib": floor, "verdict": verdict, "prompt_tokens": prompt}
