"""tools/export.py on a tiny QLoRA run: adapter folder, merged bf16 checkpoint, distillation set."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from bitsandbytes import functional as bnb_functional
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from finished_runs import run_tool  # noqa: E402

from lit_verbrec.config.compose import compose_run
from lit_verbrec.export import merge, models
from lit_verbrec.export.distill import FIELDS
from lit_verbrec.models.loading import load_base_model
from lit_verbrec.training.cache import VerbalizationCache, adapter_hash

pytestmark = pytest.mark.xdist_group("after_training")   # the finished tiny runs (conftest.py) are built once, on one pytest-xdist worker


@pytest.fixture(scope="module")
def exported(qlora_run):
    result = run_tool("export.py", f"run={qlora_run}")
    assert result.returncode == 0, result.stderr[-3000:]
    return qlora_run / "export" / "verbalizer"


def test_merged_checkpoint_is_the_adapter_merged_into_the_dequantized_base(exported, qlora_run, tmp_path):
    adapter = exported / "adapter"
    lora_b = [v for k, v in load_file(adapter / "adapter_model.safetensors").items() if "lora_B" in k]
    assert max(float(b.abs().max()) for b in lora_b) > 0        # a trained adapter: the merge changes weights
    merged = AutoModelForCausalLM.from_pretrained(exported / "merged", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in merged.parameters())
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    cfg = compose_run(qlora_run)
    assert cfg.size.quantization == "nf4"
    base = load_base_model(cfg.size, tokenizer, seed=cfg.run.seed, workdir=tmp_path)   # the 4-bit base, as trained
    model = PeftModel.from_pretrained(base, adapter).eval()
    # peft's own merge arithmetic, independent of export/merge.py: every adapted weight, bit for bit
    for name, module in model.get_base_model().named_modules():
        if hasattr(module, "get_delta_weight"):
            weight = module.get_base_layer().weight
            dequantized = bnb_functional.dequantize_4bit(weight.data, weight.quant_state).float()
            expected = (dequantized + module.get_delta_weight("default").float()).to(torch.bfloat16)
            assert torch.equal(merged.get_parameter(f"{name}.weight"), expected), name
    check = json.loads((exported / "merged" / "merge_check.json").read_text())
    assert check["merge"]["layers"] == 2 * 7 and check["merge"]["failed"] == []
    assert check["merge"]["max_ratio_to_bound"] <= 1.0 < check["merge"]["min_adapter_effect"]
    assert check["bf16_cast_mismatches"] == []
    assert check["logit_scale"] > 0 and check["max_abs_logit_diff_vs_adapter_bf16"] >= 0   # recorded, not judged


def test_export_fails_for_a_wrong_merge(exported, qlora_run, tmp_path, monkeypatch):
    """Merged with alpha instead of alpha/r: export names the layers, raises, and keeps the report."""
    def wrong_scaling(layer):
        lora_a, lora_b, scaling = merge.lora_factors(layer)
        return merge.base_weight_fp32(layer.get_base_layer()) + 2 * scaling * (lora_b @ lora_a)

    monkeypatch.setattr(models, "merged_state", functools.partial(merge.merged_state, merge=wrong_scaling))
    cfg = compose_run(qlora_run)
    adapter = exported / "adapter"
    ids = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"14 merged layer\(s\) differ .* beyond float32's rounding bound"):
        models.export_merged(cfg, adapter, AutoTokenizer.from_pretrained(adapter), tmp_path / "merged", ids)
    check = json.loads((tmp_path / "merged" / "merge_check.json").read_text())
    assert check["merge"]["max_ratio_to_bound"] > 1.0 and check["bf16_cast_mismatches"] == []


def test_adapter_folder_loads_with_peft_and_has_a_model_card(exported, qlora_run, tmp_path):
    adapter = exported / "adapter"
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    cfg = compose_run(qlora_run)
    model = PeftModel.from_pretrained(load_base_model(cfg.size, tokenizer, seed=0, workdir=tmp_path), adapter)
    assert any("lora_A" in name for name, _ in model.named_parameters())
    card = (adapter / "README.md").read_text()
    assert "stage-1 action verbalizer" in card and "quantization: nf4" in card and "Test results" in card


def test_distillation_set_has_one_row_per_cached_example(exported, qlora_run):
    adapter = qlora_run / "verbalizer" / "adapter"
    cached = VerbalizationCache(qlora_run / "cache", "action", adapter_hash(adapter)).stored_texts()
    rows = [json.loads(line) for line in (exported / "distillation.jsonl").read_text().splitlines()]
    assert len(rows) == len(cached) > 0 and {r["example_id"] for r in rows} == set(cached)
    assert pq.read_table(exported / "distillation.parquet").to_pylist() == rows
    for row in rows:
        assert tuple(row) == FIELDS
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert row["messages"][2]["content"] == cached[row["example_id"]]
        assert 0.0 <= row["reward"] <= 1.0 and row["compression"] >= 0   # 0: every line dropped
        assert row["candidates"][0] and row["target"] in row["candidates"]


def test_distillation_filters_by_reward(exported, qlora_run, tmp_path):
    everything = [json.loads(line) for line in (exported / "distillation.jsonl").read_text().splitlines()]
    result = run_tool("export.py", f"run={qlora_run}", "export.what=[distillation]", "export.min_reward=0.5",
                      f"out={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    kept = [json.loads(line) for line in (tmp_path / "distillation.jsonl").read_text().splitlines()]
    assert kept == [r for r in everything if r["reward"] >= 0.5]
    assert "distillation: oracle" in result.stderr and f"{len(everything)}/{len(everything)}" in result.stderr
    assert f"wrote {tmp_path}: distillation.jsonl, distillation.parquet, export.json" in result.stdout


def test_export_of_a_missing_stage_names_it(tmp_path, qlora_run):
    result = run_tool("export.py", f"run={qlora_run}", "export.stage=reasoner", "export.what=[distillation]")
    assert result.returncode == 1 and "needs export.stage=verbalizer" in result.stderr
    result = run_tool("export.py", f"run={tmp_path}")
    assert result.returncode == 2 and "not a run folder" in result.stderr
