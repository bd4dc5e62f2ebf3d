"""The verbalization cache as a chat dataset, for SFT of a smaller verbalizer (distillation).

One row per cached example (stage 2 cached every example it trained, validated and was
scored on), written twice with the same rows: `distillation.jsonl` and `distillation.parquet`.

    example_id, user, split     which example (split: train / val / test of the prepared data)
    messages                    [system, user, assistant]: the rewrite prompt around the user's
                                template history (text/verbalizer_prompts.py), and the trained
                                verbalizer's text as the answer. For an action verbalizer this is
                                the executed text the reasoner read, so the student learns to
                                write the verbalization directly, as a rewrite verbalizer does.
    reward, correct, compression   the stage-1 reward of the text (alpha * correct + (1 - alpha) *
                                length plateau), whether the oracle picked the target, and tokens of
                                the text / tokens of the template (the reasoner's tokenizer)
    target, candidates          the item that came next and the candidate list it was ranked in
    verbalizer, adapter_hash    the verbalizer kind and the hash of the adapter that wrote the text

Rows with reward < `export.min_reward` are left out (0: none).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from lit_verbrec.config.console import progress
from lit_verbrec.config.schema import Config
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.oracle.base import Oracle
from lit_verbrec.rl.rewards import verbalizer_reward
from lit_verbrec.text.verbalizer_prompts import verbalizer_messages
from lit_verbrec.training.verbalizer import compression_ratio
from lit_verbrec.training.verbalizers import TemplateVerbalizer

FIELDS = ("example_id", "user", "split", "messages", "reward", "correct", "compression", "target", "candidates",
          "verbalizer", "adapter_hash")

ORACLE_CHUNK = 256
"""Rows per oracle.choose call: large enough for an endpoint's concurrency, small enough for the bar to move."""


def distillation_rows(cfg: Config, texts: dict[str, str], examples: list[dict], catalog: Catalog, oracle: Oracle,
                      tokenizer, kind: str, key: str) -> list[dict]:
    """Rows for the cached `texts` (example_id -> verbalization) of `examples`, scored by `oracle`."""
    cached = [e for e in examples if e["example_id"] in texts]
    verbalized = [texts[e["example_id"]] for e in cached]
    # the verbalizer's input (text.metadata is empty for an action verbalizer: the config refuses it)
    template = TemplateVerbalizer(catalog, cfg.text.max_tags, cfg.text.metadata).verbalize(cached)
    choices: list[int | None] = []
    # in chunks, for the bar: an endpoint oracle answers thousands of rows in minutes
    with progress(len(cached), "distillation: oracle", unit="examples") as bar:
        for start in range(0, len(cached), ORACLE_CHUNK):
            part = cached[start:start + ORACLE_CHUNK]
            choices += oracle.choose(verbalized[start:start + ORACLE_CHUNK], [e["candidates"] for e in part])
            bar.update(len(part))
    correct = torch.tensor([c is not None and c == e["target_index"] for c, e in zip(choices, cached)], dtype=torch.float)
    ratio = compression_ratio(tokenizer, verbalized, template)
    reward = verbalizer_reward(correct, ratio, cfg.reward)["reward"]
    rows = []
    for i, e in enumerate(cached):
        messages = verbalizer_messages("rewrite", template[i]) + [{"role": "assistant", "content": verbalized[i]}]
        rows.append({"example_id": e["example_id"], "user": e["user"], "split": e["split"], "messages": messages,
                     "reward": float(reward[i]), "correct": bool(correct[i]), "compression": float(ratio[i]),
                     "target": e["target"], "candidates": list(e["candidates"]), "verbalizer": kind, "adapter_hash": key})
    return [r for r in rows if r["reward"] >= cfg.export.min_reward]


def write_distillation(rows: list[dict], out: Path) -> dict[str, Path]:
    """distillation.jsonl and distillation.parquet in `out` (the same rows, FIELDS order)."""
    out.mkdir(parents=True, exist_ok=True)
    jsonl, parquet = out / "distillation.jsonl", out / "distillation.parquet"
    jsonl.write_text("".join(json.dumps({k: r[k] for k in FIELDS}, ensure_ascii=False) + "\n" for r in rows))
    table = pa.Table.from_pylist([{k: r[k] for k in FIELDS} for r in rows]) if rows else pa.table({k: [] for k in FIELDS})
    pq.write_table(table, parquet)
    return {"jsonl": jsonl, "parquet": parquet}
