"""Export a finished stage: the adapter, a merged bf16 checkpoint, and a distillation set.

    python tools/export.py run=runs/default                                  # stage 1: all three
    python tools/export.py run=runs/default export.stage=reasoner export.what=[adapter,merged]
    python tools/export.py run=runs/default export.what=[distillation] export.min_reward=0.9

Reads the run's resolved config (<run>/config.yaml; later key=value arguments override it) and
the stage's best adapter (adapter-best/, else adapter/). Writes into `out` (default
<run>/export/<stage>/): adapter/ (peft folder + tokenizer + README.md model card), merged/
(AutoModelForCausalLM folder, bf16; the NF4 base is dequantized and the adapter merged in
float32, each layer checked against the adapter layer and the saved weights against the merge:
merged/merge_check.json), and
distillation.{jsonl,parquet} (lit_verbrec/export/distill.py documents the fields).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AutoTokenizer

from lit_verbrec.config.cli import run_folder
from lit_verbrec.config.compose import ConfigError, compose_run
from lit_verbrec.config.schema import stage_size
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.data.prepared_folder import read_prepared
from lit_verbrec.export.distill import distillation_rows, write_distillation
from lit_verbrec.export.models import export_adapter, export_merged, model_card
from lit_verbrec.oracle.factory import make_oracle
from lit_verbrec.text.template import verbalize_template
from lit_verbrec.training.cache import VerbalizationCache, adapter_hash, text_key
from lit_verbrec.training.run import RunPaths, best_adapter, prepared_folder

CHECK_INPUTS, CHECK_TOKENS = 4, 48


def run_config(argv: list[str]):
    """The run folder (`run=<folder>`, else run.root/run.name) and its config with argv applied."""
    folder, rest = run_folder(__doc__, argv)
    return folder, compose_run(folder, rest)


def check_ids(cfg, tokenizer) -> torch.Tensor:
    """[CHECK_INPUTS, CHECK_TOKENS] ids of test histories (template text), truncated to one length."""
    examples, items = read_prepared(prepared_folder(cfg, RunPaths.of(cfg)), "test")
    catalog = Catalog.from_table(items)
    texts = [verbalize_template(e["history"], catalog) for e in examples.slice(0, CHECK_INPUTS).to_pylist()]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][:CHECK_TOKENS] for t in texts]
    length = min(len(i) for i in ids)
    return torch.tensor([i[:length] for i in ids])


def stage_metrics(run: Path, stage: str) -> dict | None:
    path = run / "results.json"
    entries = json.loads(path.read_text()) if path.is_file() else []
    return next(({k: v for k, v in e.items() if k in ("rows", "split", "n", "reasoner")} for e in entries
                 if e["stage"] == stage), None)


def distillation(cfg, run: Path, adapter: Path, tokenizer, out: Path) -> dict:
    key = adapter_hash(adapter)
    cache = VerbalizationCache(RunPaths.of(cfg).cache, cfg.verbalizer.kind, text_key(key, cfg.text.metadata))
    texts = cache.stored_texts()
    if not texts:
        raise FileNotFoundError(f"no verbalization cache {cache.path} for adapter {adapter} (hash {key}): "
                                "stage 2 (stage=reasoner) writes it")
    examples, items = read_prepared(prepared_folder(cfg, RunPaths.of(cfg)))
    catalog = Catalog.from_table(items)
    oracle = make_oracle(cfg.oracle, catalog, RunPaths.of(cfg).oracle_cache(cfg))
    rows = distillation_rows(cfg, texts, examples.to_pylist(), catalog, oracle, tokenizer, cfg.verbalizer.kind, key)
    paths = write_distillation(rows, out)
    return {"rows": len(rows), "cached": len(texts), "min_reward": cfg.export.min_reward,
            **{k: str(v) for k, v in paths.items()}}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        run, cfg = run_config(argv)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    stage = cfg.export.stage
    adapter = best_adapter(run / stage)
    if not (adapter / "adapter_config.json").is_file():
        print(f"error: no {stage} adapter in {run / stage} (train it first: tools/train.py stage={stage})", file=sys.stderr)
        return 1
    out = Path(cfg.out) if cfg.out else run / "export" / stage
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    summary: dict = {"run": str(run), "stage": stage, "adapter": str(adapter)}
    try:
        if "adapter" in cfg.export.what:
            card = model_card(cfg, stage, stage_metrics(run, stage))
            summary["adapter_export"] = str(export_adapter(adapter, out / "adapter", card))
        if "merged" in cfg.export.what:
            # the stage's own model settings (a tiny reasoner may have its own attention window)
            stage_cfg = replace(cfg, size=stage_size(cfg, stage))
            summary["merged"] = export_merged(stage_cfg, adapter, tokenizer, out / "merged",
                                              check_ids(cfg, tokenizer)) | {"folder": str(out / "merged")}
        if "distillation" in cfg.export.what:
            if stage != "verbalizer":
                raise ValueError("export.what=distillation needs export.stage=verbalizer (the cache holds stage 1's texts)")
            summary["distillation"] = distillation(cfg, run, adapter, tokenizer, out)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    (out / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
