"""Scores at the end of a stage, on held-out test examples, with the stage's own reasoner.

Stage 1 (the learning demonstration): the oracle reads the template, the template with every
line enriched (the best fixed heuristic: keep all, enrich all) and the trained verbalizer's
greedy output; Recall@1 overall and on discovery targets with bootstrap intervals. The
verbalizer has learned to *filter* only if its discovery interval lies above both.
Stage 2: the trained reasoner's greedy answers on its input texts.
"""

from __future__ import annotations

import numpy as np

from lit_verbrec.config.schema import Config
from lit_verbrec.evaluation.metrics import relative_change, summarize
from lit_verbrec.oracle.factory import make_oracle
from lit_verbrec.text.template import METADATA_FIELDS, verbalize_template
from lit_verbrec.training.run import RunPaths, load_examples, prepared_folder, run_tokenizer
from lit_verbrec.training.verbalizers import TemplateVerbalizer


def _score(preds: np.ndarray, examples: list[dict], cfg: Config) -> dict:
    target = np.array([e["target_index"] for e in examples])
    discovery = np.array([e["is_discovery"] for e in examples])
    return summarize(preds, target, discovery, cfg.eval.bootstrap, cfg.eval.confidence, cfg.run.seed)


def verbalizer_results(cfg: Config) -> dict:
    from lit_verbrec.training.inference import frozen_verbalizer

    paths = RunPaths.of(cfg)
    test, catalog = load_examples(prepared_folder(cfg, paths), cfg.eval.split, cfg.train.eval_examples)
    tokenizer = run_tokenizer(cfg, paths, test, catalog)
    oracle = make_oracle(cfg.oracle, catalog, paths.oracle_cache(cfg))
    verbalizer, key = frozen_verbalizer(cfg, paths, tokenizer, catalog)
    texts = {
        "template": TemplateVerbalizer(catalog, cfg.text.max_tags, cfg.text.metadata).verbalize(test),
        "keep all + enrich all": [verbalize_template(e["history"], catalog, METADATA_FIELDS, cfg.text.max_tags) for e in test],
        f"trained {verbalizer.kind} verbalizer": verbalizer.verbalize(test),
    }
    candidates = [e["candidates"] for e in test]
    preds = {name: np.array([-1 if c is None else c for c in oracle.choose(t, candidates)]) for name, t in texts.items()}
    rows = {name: _score(p, test, cfg) for name, p in preds.items()}
    target = np.array([e["target_index"] for e in test])
    discovery = np.array([e["is_discovery"] for e in test])
    for name in rows:
        rows[name]["vs_template_discovery"] = relative_change(preds[name], preds["template"], target, discovery,
                                                             cfg.eval.bootstrap, cfg.eval.confidence, cfg.run.seed)
    trained = rows[f"trained {verbalizer.kind} verbalizer"]
    learned = trained["discovery_low"] > max(rows["template"]["discovery_high"], rows["keep all + enrich all"]["discovery_high"])
    return {"stage": "verbalizer", "reasoner": f"oracle ({cfg.oracle.kind})", "split": cfg.eval.split, "n": len(test),
            "adapter_hash": key, "rows": rows, "learned_beyond_intervals": bool(learned),
            "examples": [{"template": texts["template"][i], "verbalized": texts[f"trained {verbalizer.kind} verbalizer"][i]}
                         for i in range(min(2, len(test)))]}


def reasoner_results(cfg: Config) -> dict:
    from lit_verbrec.training.inference import trained_reasoner
    from lit_verbrec.training.stages import stage2_texts

    paths = RunPaths.of(cfg)
    test, catalog = load_examples(prepared_folder(cfg, paths), cfg.eval.split, cfg.train.eval_examples)
    tokenizer = run_tokenizer(cfg, paths, test, catalog)
    texts, info = stage2_texts(cfg, paths, test, tokenizer, catalog)   # served from the stage-2 cache
    rows = {}
    for name, trained in ((f"untrained reasoner ({cfg.reasoner.input})", False),
                          (f"trained reasoner ({cfg.reasoner.input})", True)):
        preds = trained_reasoner(cfg, paths, tokenizer, catalog, texts, trained=trained).predict(test).numpy()
        rows[name] = _score(preds, test, cfg)
    before, after = rows.values()
    return {"stage": "reasoner", "reasoner": f"the stage-2 reasoner on {cfg.reasoner.input} text", "split": cfg.eval.split,
            "n": len(test), "texts": info, "rows": rows, "input": cfg.reasoner.input,
            "reasoner_learned": bool(after["discovery_low"] > before["discovery_high"])}


def markdown(results: dict) -> str:
    level = "95%"
    lines = [f"## Stage {results['stage']}: {results['reasoner']}, {results['split']} split, {results['n']:,} examples", "",
             f"| System | Recall@1 % ({level} CI) | Discovery Recall@1 % ({level} CI) | ValidRatio |", "|---|---|---|---|"]
    for name, r in results["rows"].items():
        lines.append(f"| {name} | {100 * r['recall']:.1f} [{100 * r['recall_low']:.1f}, {100 * r['recall_high']:.1f}] "
                     f"| {100 * r['discovery_recall']:.1f} [{100 * r['discovery_low']:.1f}, {100 * r['discovery_high']:.1f}] "
                     f"| {r['valid_ratio']:.3f} |")
    if "learned_beyond_intervals" in results:
        lines += ["", "Learned to filter (trained discovery interval above both template and keep-all+enrich-all): "
                  + ("**yes**" if results["learned_beyond_intervals"] else "**no**")]
    if "reasoner_learned" in results:
        lines += ["", f"Reasoner learned from the {results['input']} text (trained discovery interval above the "
                  "untrained reasoner's): " + ("**yes**" if results["reasoner_learned"] else "**no**")]
    return "\n".join(lines)
