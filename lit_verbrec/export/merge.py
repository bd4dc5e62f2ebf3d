"""Merge a LoRA adapter into its (dequantized) base, and prove the merge right without a tuned tolerance.

QLoRA's rule: never merge into 4-bit weights (rounding W + BA back to NF4 throws most of the
update away). Each adapted linear is merged in float32, one layer at a time:

    W_merged = dequant(W_nf4) + s * B @ A            [out, in] fp32, s = lora_alpha / r

then cast to bf16 for the checkpoint. Two checks, neither with a number tuned on one machine:

1. The merge, in float32, per layer: for probe inputs x [n, in], the adapter layer as trained
   (4-bit base + LoRA, computed in fp32) and x @ W_merged^T must agree within the rounding
   error float32 can make, the classical bound for dot products of length K (Higham,
   "Accuracy and Stability of Numerical Algorithms", 2002, eq. 3.5):

       |fl(x . w) - x . w|  <=  gamma_K * (|x| . |w|),     gamma_K = K u / (1 - K u),  u = 2^-24

   summed over both sides (the base and the low-rank path on one, the merged product on the
   other). It holds for any summation order, blocking or FMA, so it passes on every CPU and GPU
   kernel for a right merge. A wrong merge (a wrong scaling, an update rounded back to NF4, a
   missing layer) moves the output by the adapter's own contribution, far above the bound for
   any adapter that changed the model (`adapter_effect` in the report says how far).
2. The bf16 cast, exactly: the saved checkpoint, reloaded, holds bit for bit the fp32 merge
   rounded to bf16 (round-to-nearest-even is the same on every CPU and GPU).

Whole-model logits of the bf16 checkpoint against the adapter model in bf16 are recorded for
information: they differ by bf16's rounding, which depends on the CPU's bf16 kernels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from bitsandbytes import functional as bnb_functional
from bitsandbytes.nn import Linear4bit, Params4bit
from peft import PeftModel
from peft.tuners.lora import LoraLayer

UNIT_ROUNDOFF = {torch.float32: 2.0 ** -24, torch.bfloat16: 2.0 ** -8}
PROBE_ROWS = 8
"""Probe inputs per layer (standard normal, seeded)."""


def gamma(k: int, dtype: torch.dtype = torch.float32) -> float:
    """gamma_k = k u / (1 - k u): the relative error bound of a length-k dot product in `dtype`."""
    ku = k * UNIT_ROUNDOFF[dtype]
    if ku >= 1:
        raise ValueError(f"a dot product of length {k} has no error bound in {dtype}")
    return ku / (1 - ku)


def base_weight_fp32(base_layer: torch.nn.Module) -> torch.Tensor:
    """[out, in] the frozen weight as the layer multiplies with it, in fp32 (NF4: dequantized)."""
    weight = base_layer.weight
    if isinstance(weight, Params4bit):
        base_layer.state_dict()  # side effect: undoes bitsandbytes' CPU-only repacking, if any
        return bnb_functional.dequantize_4bit(weight.data, weight.quant_state).float()
    return weight.data.float()


def lora_factors(layer: LoraLayer) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(A [r, in], B [out, r], scaling) of the layer's active adapter, fp32."""
    (name,) = layer.active_adapters
    return layer.lora_A[name].weight.float(), layer.lora_B[name].weight.float(), float(layer.scaling[name])


def merge_weight(layer: LoraLayer) -> torch.Tensor:
    """[out, in] fp32: dequant(W) + s * B @ A."""
    lora_a, lora_b, scaling = lora_factors(layer)
    return base_weight_fp32(layer.get_base_layer()) + scaling * (lora_b @ lora_a)


@torch.no_grad()
def check_layer(layer: LoraLayer, merged: torch.Tensor, generator: torch.Generator) -> dict:
    """Compare the adapter layer (as trained, fp32) with x @ merged^T on probe inputs.

    Returns {"max_abs_diff", "max_ratio_to_bound" (<= 1: within float32's rounding), "adapter_effect"
    (largest |s * x A^T B^T| / bound: how far a merge that dropped the adapter would land)}.
    """
    base_layer = layer.get_base_layer()
    lora_a, lora_b, scaling = lora_factors(layer)
    x = torch.randn(PROBE_ROWS, merged.shape[1], generator=generator).to(merged.device)    # [n, in]
    compute_dtype = getattr(base_layer, "compute_dtype", None)
    if isinstance(base_layer, Linear4bit):
        base_layer.compute_dtype = torch.float32           # the 4-bit matmul in fp32 for this check
    try:
        as_trained = layer(x.to(base_layer.weight.device)).float()                         # [n, out]
    finally:
        if isinstance(base_layer, Linear4bit):
            base_layer.compute_dtype = compute_dtype
    merged_out = x @ merged.T                                                              # [n, out]
    ax = x.abs()
    base = base_weight_fp32(base_layer)
    rank, fan_in = lora_a.shape
    # both sides' rounding: base GEMV + low-rank path (length in, then r) + the merged GEMV and merge sum
    bound = (gamma(fan_in + rank + 2) * (ax @ base.abs().T + scaling * (ax @ lora_a.abs().T) @ lora_b.abs().T)
             + gamma(fan_in + 2) * (ax @ merged.abs().T))
    bound = bound + torch.finfo(torch.float32).tiny                                        # an all-zero row
    diff = (as_trained - merged_out).abs()
    effect = (scaling * (x @ lora_a.T) @ lora_b.T).abs()
    return {"max_abs_diff": float(diff.max()), "max_ratio_to_bound": float((diff / bound).max()),
            "adapter_effect": float((effect / bound).max())}


def merged_state(model: PeftModel, merge: Callable[[LoraLayer], torch.Tensor] = merge_weight,
                 seed: int = 0) -> tuple[dict[str, torch.Tensor], dict]:
    """The merged model's state dict in bf16 (HF names, no peft wrappers) and the per-layer check.

    `merge` computes a layer's fp32 merged weight (a parameter so that a test can hand in a wrong one).
    Returns (state, {"layers", "max_ratio_to_bound", "worst_layer", "min_adapter_effect", "failed": [names]}).
    """
    model.eval()                                   # LoRA dropout off: the layer as the policy is evaluated
    generator = torch.Generator().manual_seed(seed)
    base = model.get_base_model()
    state: dict[str, torch.Tensor] = {}
    checks: dict[str, dict] = {}
    for module_name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            merged = merge(module)
            checks[module_name] = check_layer(module, merged, generator)
            state[f"{module_name}.weight"] = merged.to(device="cpu", dtype=torch.bfloat16)
            continue
        if ".lora_" in f".{module_name}" or ".base_layer" in f".{module_name}":
            continue                               # inside a LoRA layer: merged above
        for param_name, param in module.named_parameters(recurse=False):
            state[f"{module_name}.{param_name}".removeprefix(".")] = param.data.to(device="cpu", dtype=torch.bfloat16)
    worst = max(checks, key=lambda n: checks[n]["max_ratio_to_bound"]) if checks else None
    report = {"layers": len(checks),
              "max_ratio_to_bound": checks[worst]["max_ratio_to_bound"] if worst else 0.0,
              "worst_layer": worst,
              "min_adapter_effect": min((c["adapter_effect"] for c in checks.values()), default=0.0),
              "failed": sorted(n for n, c in checks.items() if c["max_ratio_to_bound"] > 1.0)}
    return state, report


def cast_mismatches(saved: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> list[str]:
    """Names whose saved tensor is not bit for bit the expected bf16 tensor (or is missing / extra)."""
    names = sorted(set(saved) | set(expected))
    return [n for n in names if n not in saved or n not in expected
            or saved[n].dtype != expected[n].dtype or not torch.equal(saved[n].cpu(), expected[n])]
