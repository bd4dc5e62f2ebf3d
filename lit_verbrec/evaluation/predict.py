"""Batch answers for new users from a finished run: what a team runs after training.

Each example (a user's history and candidates, as tools/prepare_data.py writes them) is
verbalized by the run's stage-1 verbalizer (the template for a run whose reasoner reads the
template, or that has no stage-1 adapter), then answered by the run's stage-2 reasoner
(predict.reasoner=trained) or the oracle (predict.reasoner=oracle). Both models are served
greedily by the engine `predict.engine` names; on vLLM one engine in the process serves both
adapters (lit_verbrec/training/inference.py).

The output is a Parquet dataset: one part file per `predict.chunk` examples
(`part-00000.parquet`, ...), each written to a temporary name and renamed into place once
complete. A rerun with the same output folder skips the parts already there, so a large file
interrupted half-way costs at most one chunk. Columns: see `COLUMNS`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lit_verbrec.config.console import progress
from lit_verbrec.config.schema import Config
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.data.prepared_folder import read_prepared
from lit_verbrec.oracle.factory import make_oracle
from lit_verbrec.training.inference import (
    engine_name,
    frozen_verbalizer,
    resolve_engine,
    trained_reasoner,
)
from lit_verbrec.training.run import RunPaths, best_adapter, prepared_folder, run_tokenizer
from lit_verbrec.training.verbalizers import TemplateVerbalizer

COLUMNS = {
    "example_id": "the example's id in the input",
    "user": "its user",
    "split": "its split in the input",
    "verbalization": "the text the reasoner read",
    "verbalizer": "who wrote it: template, action or rewrite",
    "answer_index": "0-based index of the chosen candidate, -1 for no valid answer",
    "answer_item_id": "the chosen candidate's item id (null for no valid answer)",
    "answer_title": "its title",
    "reasoner": "who answered: the trained reasoner or the oracle",
}


def _uses_verbalizer(cfg: Config, paths: RunPaths) -> bool:
    if cfg.predict.reasoner == "trained" and cfg.reasoner.input == "template":
        return False   # the trained reasoner learned to read the template
    return (best_adapter(paths.stage("verbalizer")) / "adapter_config.json").is_file()


class Predictor:
    """example dicts -> COLUMNS rows, with the run's verbalizer and reasoner (or the oracle)."""

    def __init__(self, cfg: Config, paths: RunPaths, catalog: Catalog, sample: list[dict], out: Path) -> None:
        tokenizer = run_tokenizer(cfg, paths, sample, catalog)
        self.catalog = catalog
        self.template = TemplateVerbalizer(catalog, cfg.text.max_tags, cfg.text.metadata)   # without a verbalizer
        self.verbalizer = None
        if _uses_verbalizer(cfg, paths):
            self.verbalizer, _ = frozen_verbalizer(cfg, paths, tokenizer, catalog,
                                                   resolve_engine(cfg.predict.engine, cfg.verbalizer.grpo.engine))
        if cfg.predict.reasoner == "trained":
            self.reasoner = trained_reasoner(cfg, paths, tokenizer, catalog, {},
                                             resolve_engine(cfg.predict.engine, cfg.reasoner.grpo.engine))
            self.reasoner_name = f"trained reasoner ({engine_name(self.reasoner.engine)})"
            self.oracle = None
        else:
            self.oracle = make_oracle(cfg.oracle, catalog, out / "oracle_cache")
            self.reasoner_name = f"oracle ({cfg.oracle.kind})"

    def texts(self, examples: list[dict]) -> list[str]:
        if self.verbalizer is None:
            return self.template.verbalize(examples)
        return self.verbalizer.verbalize(examples)

    def answers(self, examples: list[dict], texts: list[str]) -> list[int]:
        if self.oracle is not None:
            picks = self.oracle.choose(texts, [e["candidates"] for e in examples])
            return [-1 if p is None else p for p in picks]
        self.reasoner.texts = {e["example_id"]: t for e, t in zip(examples, texts)}
        return self.reasoner.predict(examples).tolist()

    def rows(self, examples: list[dict]) -> pa.Table:
        texts = self.texts(examples)
        picks = self.answers(examples, texts)
        items = [e["candidates"][p] if p >= 0 else None for e, p in zip(examples, picks)]
        return pa.table({
            "example_id": [e["example_id"] for e in examples], "user": [str(e["user"]) for e in examples],
            "split": [e["split"] for e in examples],
            "verbalization": texts, "verbalizer": [self.verbalizer.kind if self.verbalizer else "template"] * len(texts),
            "answer_index": pa.array(picks, pa.int32()), "answer_item_id": items,
            "answer_title": [self.catalog[i].display_title if i is not None else None for i in items],
            "reasoner": [self.reasoner_name] * len(texts)})


def part_path(out: Path, index: int) -> Path:
    return out / f"part-{index:05d}.parquet"


def predict(cfg: Config, out: Path) -> dict:
    """Write the answers for `predict.input` into `out` (see the module docstring); returns
    {"out", "examples", "parts_written", "parts_reused"}."""
    paths = RunPaths.of(cfg)
    folder = Path(cfg.predict.input) if cfg.predict.input else prepared_folder(cfg, paths)
    examples, items = read_prepared(folder, None if cfg.predict.split == "all" else cfg.predict.split)
    if cfg.predict.max_examples:
        examples = examples.slice(0, cfg.predict.max_examples)
    catalog = Catalog.from_table(items)
    out.mkdir(parents=True, exist_ok=True)
    chunk = cfg.predict.chunk
    starts = range(0, examples.num_rows, chunk)
    todo = [i for i, _ in enumerate(starts) if not part_path(out, i).is_file()]
    predictor = Predictor(cfg, paths, catalog, examples.slice(0, 300).to_pylist(), out) if todo else None
    remaining = sum(min(chunk, examples.num_rows - starts[i]) for i in todo)
    with progress(remaining, "predict") as bar:
        for index in todo:
            rows = predictor.rows(examples.slice(starts[index], chunk).to_pylist())
            tmp = part_path(out, index).with_suffix(f".tmp{os.getpid()}")
            pq.write_table(rows, tmp)
            os.replace(tmp, part_path(out, index))
            bar.update(rows.num_rows)
    return {"out": str(out), "examples": examples.num_rows, "parts_written": len(todo),
            "parts_reused": len(starts) - len(todo)}
