"""Ship a trained stage: the adapter alone, or a merged bf16 checkpoint.

    <out>/adapter/   adapter_config.json, adapter_model.safetensors, tokenizer, README.md (model card)
    <out>/merged/    config.json, model.safetensors (bf16), tokenizer: loads with AutoModelForCausalLM

Merging follows the QLoRA rule: never merge into 4-bit weights (rounding W + BA back to NF4
would throw most of the update away). The NF4 base is first dequantized to bf16 — exactly the
weights bitsandbytes multiplies with — then the adapter is merged into that. The merged model
is checked against the adapter model (4-bit base + LoRA, as trained) on a few inputs: the
largest logit difference is recorded, and export fails above `export.check_atol`. Both run in
bf16 (the adapter model's float weights cast to bf16), so the check measures the merge, not
bf16's rounding of a base that trained in fp32 (size=tiny; that difference is recorded too).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from lit_verbrec.config.compose import to_yaml
from lit_verbrec.config.schema import Config
from lit_verbrec.models.loading import load_adapter, load_base_model, save_dequantized_base

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def model_card(cfg: Config, stage: str, metrics: dict | None) -> str:
    """A README.md for the exported folder: what it is, how to load it, its config and scores."""
    grpo = cfg.verbalizer.grpo if stage == "verbalizer" else cfg.reasoner.grpo
    role = (f"the stage-1 {cfg.verbalizer.kind} verbalizer" if stage == "verbalizer"
            else f"the stage-2 reasoner (trained on {cfg.reasoner.input} text)")
    base = cfg.size.model or f"a tiny random-weight Qwen3 (seed {cfg.run.seed}; rebuild it with lit_verbrec)"
    lines = [f"# lit_verbrec {stage} adapter", "",
             f"LoRA adapter of {role}, trained with GRPO by lit_verbrec (run `{cfg.run.name}`).", "",
             f"- base model: {base} (quantization while training: {cfg.size.quantization})",
             f"- LoRA rank {cfg.size.lora.rank}, alpha {cfg.size.lora.alpha}; {grpo.max_steps} steps, "
             f"group size {grpo.group_size}, lr {grpo.lr}, loss {grpo.loss_type}", "",
             "```python", "from peft import PeftModel", "model = PeftModel.from_pretrained(base_model, \"<this folder>\")", "```", ""]
    if metrics:
        lines += ["## Test results", "", "```json", json.dumps(metrics, indent=2), "```", ""]
    lines += ["## Training config", "", "```yaml", to_yaml(cfg).strip(), "```", ""]
    return "\n".join(lines)


def export_adapter(adapter: Path, out: Path, card: str) -> Path:
    """Copy the adapter and its tokenizer to `out` and write the model card."""
    out.mkdir(parents=True, exist_ok=True)
    for path in adapter.iterdir():
        if path.is_file() and path.name != "global_step.txt":
            shutil.copy2(path, out / path.name)
    missing = [name for name in ADAPTER_FILES if not (out / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{adapter} is not a peft adapter folder: no {', '.join(missing)}")
    (out / "README.md").write_text(card)
    return out


@torch.no_grad()
def _logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(input_ids=input_ids).logits.float()


def _cast_float_weights_to_bf16(model: torch.nn.Module) -> None:
    """Every non-4-bit floating weight (embeddings, norms, head, LoRA) to bf16, in place: the
    adapter model as a bf16 model, what the merged bf16 checkpoint should reproduce."""
    for param in model.parameters():
        if param.dtype in (torch.float32, torch.float16):
            param.data = param.data.to(torch.bfloat16)


def export_merged(cfg: Config, adapter: Path, tokenizer, out: Path, check_ids: torch.Tensor, atol: float) -> dict:
    """Dequantize the base, merge the adapter into it in bf16, save to `out`, and check the logits.

    check_ids: [N, T] token ids (no padding) both models are run on.
    Returns {"max_abs_logit_diff", "atol", "inputs"}; raises ValueError above atol.
    """
    with tempfile.TemporaryDirectory(prefix="lit_verbrec-export-") as tmp:
        base = load_base_model(cfg.size, tokenizer, seed=cfg.run.seed, workdir=Path(tmp))
        adapter_model = load_adapter(base, adapter)               # the model as trained
        as_trained = _logits(adapter_model, check_ids)            # [N, T, V]
        dequantized = save_dequantized_base(adapter_model, Path(tmp) / "base-bf16")
        _cast_float_weights_to_bf16(adapter_model)
        reference = _logits(adapter_model, check_ids)             # the same model in bf16
        del adapter_model, base
        bf16_base = AutoModelForCausalLM.from_pretrained(dequantized, dtype=torch.bfloat16)
        merged = load_adapter(bf16_base, adapter).merge_and_unload()
        merged.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    # Check the folder as a user loads it, not the object in memory.
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    merged_logits = _logits(reloaded, check_ids)
    diff = float((merged_logits - reference).abs().max())
    report = {"max_abs_logit_diff": diff, "atol": atol, "inputs": list(check_ids.shape),
              # information only: a base trained in fp32 (size=tiny) also differs by bf16's rounding
              "max_abs_logit_diff_vs_trained_dtype": float((merged_logits - as_trained).abs().max())}
    (out / "merge_check.json").write_text(json.dumps(report, indent=2) + "\n")
    if diff > atol:
        raise ValueError(f"merged model logits differ from the adapter model's by {diff:.4g} > export.check_atol={atol} "
                         f"(report in {out / 'merge_check.json'})")
    return report
