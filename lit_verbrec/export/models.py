"""Ship a trained stage: the adapter alone, or a merged bf16 checkpoint.

    <out>/adapter/   adapter_config.json, adapter_model.safetensors, tokenizer, README.md (model card)
    <out>/merged/    config.json, model.safetensors (bf16), tokenizer: loads with AutoModelForCausalLM

Merging follows the QLoRA rule: never merge into 4-bit weights. The NF4 base is dequantized
(exactly the weights bitsandbytes multiplies with) and the adapter merged into it in float32,
one layer at a time, then cast to bf16. Export fails when a layer's merge differs from the
adapter layer beyond float32's rounding bound, or when the saved weights are not exactly the
merge cast to bf16 (lit_verbrec/export/merge.py); whole-model logit differences are recorded
in merged/merge_check.json for information.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from huggingface_hub import save_torch_state_dict
from transformers import AutoModelForCausalLM

from lit_verbrec.config.compose import to_yaml
from lit_verbrec.config.schema import Config
from lit_verbrec.export.merge import cast_mismatches, merged_state
from lit_verbrec.models.loading import load_adapter, load_base_model

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
    """Every non-4-bit floating weight (embeddings, norms, head, LoRA) to bf16, in place."""
    for param in model.parameters():
        if param.dtype in (torch.float32, torch.float16):
            param.data = param.data.to(torch.bfloat16)


def save_merged(model, state: dict[str, torch.Tensor], tokenizer, out: Path) -> None:
    """A plain bf16 checkpoint (sharded safetensors above 5 GB) that AutoModelForCausalLM loads."""
    base = model.get_base_model()
    config = base.config.to_dict()
    config.pop("quantization_config", None)
    config["dtype"] = "bfloat16"
    out.mkdir(parents=True, exist_ok=True)
    type(base.config).from_dict(config).save_pretrained(out)
    base.generation_config.save_pretrained(out)
    save_torch_state_dict(state, out, max_shard_size="5GB")
    tokenizer.save_pretrained(out)


def export_merged(cfg: Config, adapter: Path, tokenizer, out: Path, check_ids: torch.Tensor) -> dict:
    """Merge the adapter into the dequantized base (fp32 per layer, saved in bf16) and check it.

    check_ids: [N, T] token ids (no padding) for the information-only whole-model comparison.
    Returns the report written to `out/merge_check.json`; raises ValueError when a layer's merge is
    outside float32's rounding bound or the saved weights are not the merge cast to bf16
    (lit_verbrec/export/merge.py explains both checks).
    """
    with tempfile.TemporaryDirectory(prefix="lit_verbrec-export-") as tmp:
        base = load_base_model(cfg.size, tokenizer, seed=cfg.run.seed, workdir=Path(tmp))
        adapter_model = load_adapter(base, adapter)               # the model as trained
        state, layers = merged_state(adapter_model, seed=cfg.run.seed)
        save_merged(adapter_model, state, tokenizer, out)
        as_trained = _logits(adapter_model, check_ids)            # [N, T, V] in the trained dtype
        _cast_float_weights_to_bf16(adapter_model)
        adapter_bf16 = _logits(adapter_model, check_ids)          # the same model in bf16
        del adapter_model, base
    # Check the folder as a user loads it, not the object in memory.
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    saved = {k: v for k, v in reloaded.state_dict().items() if k in state}
    mismatched = cast_mismatches(saved, state)
    merged_logits = _logits(reloaded, check_ids)
    report = {"merge": layers, "bf16_cast_mismatches": mismatched,
              "inputs": list(check_ids.shape),
              # information only: bf16 rounding, which depends on the CPU's or GPU's bf16 kernels
              "logit_scale": float(adapter_bf16.abs().max()),
              "max_abs_logit_diff_vs_adapter_bf16": float((merged_logits - adapter_bf16).abs().max()),
              "max_abs_logit_diff_vs_trained_dtype": float((merged_logits - as_trained).abs().max())}
    (out / "merge_check.json").write_text(json.dumps(report, indent=2) + "\n")
    if layers["failed"]:
        raise ValueError(f"{len(layers['failed'])} merged layer(s) differ from the adapter model beyond float32's "
                         f"rounding bound (worst {layers['worst_layer']}: {layers['max_ratio_to_bound']:.3g} x the bound); "
                         f"report in {out / 'merge_check.json'}")
    if mismatched:
        raise ValueError(f"the saved checkpoint is not the merge cast to bf16 for {len(mismatched)} tensor(s), "
                         f"e.g. {mismatched[0]} (report in {out / 'merge_check.json'})")
    return report
