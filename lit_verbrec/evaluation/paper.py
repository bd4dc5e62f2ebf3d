"""The paper's configurations side by side (Tables 1-3), on the same examples and candidates.

    template                        the oracle reasoner on the fixed template
    zero-shot                       ... on an untrained LLM's rewrite (the prompt has hand rules)
    action                          ... on a stage-1 action verbalizer's text
    rewrite                         ... on a stage-1 rewrite verbalizer's text
    ranking reward                  ... on the text of a stage-1 verbalizer trained with reward.kind=rank
    untrained reasoner on template  the stage-2 model before training, on the template
    untrained reasoner on <kind> text  ... on the frozen verbalizer's text
    <kind> + trained reasoner       a stage-2 reasoner on its frozen verbalizer's text
    reasoner trained on raw         a stage-2 reasoner trained on the template (reasoner.input=template)

Rows 1-5 share one reasoner (the configured oracle) and are compared with its template row;
rows 6-9 are the stage-2 reasoner, untrained or trained, and are compared with row 6 (the same
model on the template before training), so that every Delta compares like with like. Which
run fills which row is read from each run folder's config (`eval.runs`): a stage-1 adapter of
verbalizer.kind=action (and reward.kind=top1) fills `action`, one trained with reward.kind=rank
fills `ranking reward`, and so on. A row no run can fill says which run it
needs. Compression is tokens of the text the reasoner reads / tokens of the template, in the
run's tokenizer.
"""

from __future__ import annotations

import numpy as np

from lit_verbrec.config.compose import compose_run
from lit_verbrec.config.data_schema import TextConfig
from lit_verbrec.config.schema import Config
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.oracle.base import Oracle
from lit_verbrec.training.inference import (
    engine_name,
    frozen_engine,
    frozen_verbalizer,
    inference_batch,
    trained_reasoner,
)
from lit_verbrec.training.run import RunPaths, run_tokenizer
from lit_verbrec.training.stages import stage2_texts
from lit_verbrec.training.verbalizer import compression_ratio
from lit_verbrec.training.verbalizers import RewriteVerbalizer, TemplateVerbalizer


def _has_adapter(cfg: Config, stage: str) -> bool:
    stage_dir = RunPaths.of(cfg).stage(stage)
    return any((stage_dir / name / "adapter_config.json").is_file() for name in ("adapter-best", "adapter"))


def assign_runs(folders: list[str]) -> dict[str, Config]:
    """Row name -> the config of the run that fills it (the first run that can)."""
    rows: dict[str, Config] = {}
    for folder in folders:
        cfg = compose_run(folder)
        if _has_adapter(cfg, "verbalizer"):
            rows.setdefault(cfg.verbalizer.kind if cfg.reward.kind == "top1" else "ranking reward", cfg)
        if _has_adapter(cfg, "reasoner"):
            name = ("reasoner trained on raw" if cfg.reasoner.input == "template"
                    else f"{cfg.verbalizer.kind} + trained reasoner")
            rows.setdefault(name, cfg)
    return rows


def _compression(tokenizer, texts: list[str], templates: list[str]) -> float:
    return float(compression_ratio(tokenizer, texts, templates).mean())


def _oracle_row(oracle: Oracle, texts: list[str], examples: list[dict]) -> np.ndarray:
    return np.array([-1 if c is None else c for c in oracle.choose(texts, [e["candidates"] for e in examples])])


def _engine(engine: str, trained_with: str) -> str:
    """eval.engine: `as_trained` -> the engine the run's stage trained with."""
    return trained_with if engine == "as_trained" else engine


def paper_rows(examples: list[dict], catalog: Catalog, oracle: Oracle, folders: list[str],
               max_new_tokens: int = 256, engine: str = "as_trained", text: TextConfig | None = None) -> dict:
    """{"preds": {row: [N] indices}, "unavailable": {row: why}, "compression": {row: ratio},
    "texts": {row: [N] texts the reasoner read, where a verbalizer wrote them},
    "engines": {row: hf | vllm, what served its model}, "order": [row names in table order],
    "references": {stage-2 row: the row its Delta is taken against}}.
    `engine`: what serves the models (eval.engine: as_trained | hf | vllm); on vllm one engine in
    the process serves every row's adapter (lit_verbrec/training/inference.py).
    `text`: text.metadata's fields on the template lines (the raw row and the zero-shot input)."""
    text = text or TextConfig()
    runs = assign_runs(folders)
    templates = TemplateVerbalizer(catalog, text.max_tags, text.metadata).verbalize(examples)
    out: dict = {"preds": {"template": _oracle_row(oracle, templates, examples)}, "unavailable": {},
                 "compression": {"template": 1.0}, "texts": {"template": templates}, "engines": {}}
    first = next(iter(runs.values()), None)
    needs = {"zero-shot": "needs a run folder in eval.runs (its model and tokenizer)",
             "action": "needs a stage-1 run with verbalizer.kind=action in eval.runs",
             "rewrite": "needs a stage-1 run with verbalizer.kind=rewrite in eval.runs",
             "ranking reward": "needs a stage-1 run with reward.kind=rank in eval.runs"}
    for name in needs:
        cfg = first if name == "zero-shot" else runs.get(name)
        if cfg is None:
            out["unavailable"][name] = needs[name]
            continue
        paths = RunPaths.of(cfg)
        tokenizer = run_tokenizer(cfg, paths, examples, catalog)
        served_by = _engine(engine, cfg.verbalizer.grpo.engine)
        if name == "zero-shot":
            served, _ = frozen_engine(cfg, paths, cfg.verbalizer.grpo, tokenizer, None, served_by)
            verbalizer = RewriteVerbalizer(served, tokenizer, catalog, "zero_shot", max_new_tokens,
                                           batch_size=inference_batch(served), metadata=text.metadata,
                                           max_tags=text.max_tags)
        else:
            verbalizer, _ = frozen_verbalizer(cfg, paths, tokenizer, catalog, served_by)
        texts = verbalizer.verbalize(examples)
        out["engines"][name] = engine_name(getattr(verbalizer, "engine", None))
        out["preds"][name] = _oracle_row(oracle, texts, examples)
        out["compression"][name] = _compression(tokenizer, texts, templates)
        out["texts"][name] = texts
    out["order"] = ["template", *needs]
    _stage2_rows(out, runs, examples, catalog, templates, engine)
    return out


def _stage2_rows(out: dict, runs: dict[str, Config], examples: list[dict], catalog: Catalog, templates: list[str],
                 engine: str) -> None:
    """The stage-2 reasoner's rows, each read by the reasoner it names: untrained on the template (the
    reference of the four), untrained on the verbalized text, trained on it, trained on the template."""
    trained = next((n for n in runs if n.endswith("+ trained reasoner")), "rewrite + trained reasoner")
    kind = trained.split(" + ")[0]
    verbalized, raw = runs.get(trained), runs.get("reasoner trained on raw")
    base = verbalized or raw                      # the stage-2 model before training: either run holds it
    rows = {"untrained reasoner on template": (base, False, "template"),
            f"untrained reasoner on {kind} text": (verbalized, False, "verbalized"),
            trained: (verbalized, True, "verbalized"), "reasoner trained on raw": (raw, True, "template")}
    why = {"reasoner trained on raw": "needs a stage-2 run with reasoner.input=template in eval.runs",
           "untrained reasoner on template": "needs a stage-2 run in eval.runs (its model, before training)"}
    out["references"] = dict.fromkeys(rows, "untrained reasoner on template")
    for name, (cfg, is_trained, reads) in rows.items():
        out["order"].append(name)
        if cfg is None:
            out["unavailable"][name] = why.get(name, "needs a stage-2 run (reasoner.input=verbalized) in eval.runs")
            continue
        paths = RunPaths.of(cfg)
        tokenizer = run_tokenizer(cfg, paths, examples, catalog)
        if reads == "template":
            texts = {e["example_id"]: t for e, t in zip(examples, templates)}
        else:
            texts, _ = stage2_texts(cfg, paths, examples, tokenizer, catalog, _engine(engine, cfg.verbalizer.grpo.engine))
        reasoner = trained_reasoner(cfg, paths, tokenizer, catalog, texts, _engine(engine, cfg.reasoner.grpo.engine),
                                    trained=is_trained)
        out["preds"][name] = reasoner.predict(examples).numpy()
        out["engines"][name] = engine_name(reasoner.engine)
        out["compression"][name] = _compression(tokenizer, [texts[e["example_id"]] for e in examples], templates)


def stage2_ordering(rows: dict[str, dict]) -> dict | None:
    """The paper's stage-2 ordering on discovery Recall@1 (its Table 2, "raw vs verbalized"): the reasoner
    trained on the verbalized text above, outside the intervals, both the same reasoner untrained on
    that text and a reasoner trained the same way on the raw template. None until all three rows are
    scored (Table 1's rows, as written by `score_rows`)."""
    trained = next((n for n in rows if n.endswith("+ trained reasoner")), None)
    if trained is None:
        return None
    kind = trained.split(" + ")[0]
    names = {"trained": trained, "untrained": f"untrained reasoner on {kind} text", "raw": "reasoner trained on raw"}
    if any(name not in rows or "unavailable" in rows[name] for name in names.values()):
        return None
    low = rows[trained]["discovery_low"]
    holds = low > rows[names["untrained"]]["discovery_high"] and low > rows[names["raw"]]["discovery_high"]
    return {"holds": bool(holds), "rows": names,
            "discovery": {key: [rows[name][k] for k in ("discovery_recall", "discovery_low", "discovery_high")]
                          for key, name in names.items()}}


def ordering_line(ordering: dict) -> str:
    """`Reasoner learned from the verbalized text (...intervals...): **yes**` (or **no**)."""
    d = {key: "{:.1f} [{:.1f}, {:.1f}]".format(*(100 * v for v in values)) for key, values in ordering["discovery"].items()}
    return (f"Reasoner learned from the verbalized text (discovery Recall@1 % trained {d['trained']}, above both the "
            f"untrained reasoner on that text {d['untrained']} and the reasoner trained on the raw template "
            f"{d['raw']}): " + ("**yes**" if ordering["holds"] else "**no**"))

