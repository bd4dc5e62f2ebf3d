"""Score the paper's configurations and baselines on prepared examples: the Recall@1 tables.

    python tools/evaluate.py data.prepared=runs/default/data eval.runs=[runs/default]
    python tools/evaluate.py data.prepared=runs/d/data eval.runs=[runs/action,runs/rewrite,runs/raw-reasoner]
    python tools/evaluate.py data.prepared=prep/ml-1m eval.rows=[random,popularity,lexical/template] eval.split=val

Table 1 (the paper's rows, lit_verbrec/evaluation/paper.py): template, zero-shot, action,
rewrite (the oracle reasoner on each text); then the stage-2 reasoner untrained on the template
and on the verbalized text, <kind> + trained reasoner and reasoner trained on raw (stage-2
runs). The runs in eval.runs fill the rows their configs match; a row no run can fill says
which run it needs. Table 2 (eval.rows, lit_verbrec/evaluation/systems.py): random, popularity
and the lexical baselines. Both report Recall@1 overall and on discovery targets with bootstrap
intervals, ValidRatio, the relative change in discovery Recall@1 against the template read by
the same reasoner (paired bootstrap: the oracle's rows against the oracle on the template, the
stage-2 rows against the untrained stage-2 reasoner on the template), and the compression
ratio; then example texts side by side (Table 3). Prints Markdown; writes results.json and config.yaml into `out` (default
runs/<run.name>/eval).
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

from lit_verbrec.config.cli import parse_cli
from lit_verbrec.config.compose import save_config
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.data.prepared_folder import read_prepared
from lit_verbrec.data.schema import DataError
from lit_verbrec.evaluation.paper import ordering_line, paper_rows, stage2_ordering
from lit_verbrec.evaluation.systems import SYSTEMS
from lit_verbrec.evaluation.table import evaluate_rows, markdown_table, score_rows
from lit_verbrec.oracle.factory import make_oracle

N_EXAMPLE_TEXTS = 2


def paper_table(cfg, examples, items, out: Path) -> dict:
    """Table 1: the paper's rows on `examples`, with example texts side by side (Table 3)."""
    catalog = Catalog.from_table(items)
    oracle = make_oracle(cfg.oracle, catalog, out / "oracle_cache")
    found = paper_rows(examples.to_pylist(), catalog, oracle, cfg.eval.runs, cfg.eval.zero_shot_max_new_tokens,
                       cfg.eval.engine, cfg.text)
    extra = {n: {"compression": c} for n, c in found["compression"].items()}
    table = score_rows(examples, found["order"], found["preds"], found["unavailable"], cfg.eval, cfg.run.seed, "template",
                       extra, found["references"])
    table["reasoner"] = {"rows 1-5": f"oracle ({cfg.oracle.kind})", "rows 6-9": "the stage-2 reasoner, untrained or trained"}
    table["engines"] = found["engines"]
    table["examples"] = [{name: texts[i] for name, texts in found["texts"].items()}
                         for i in range(min(N_EXAMPLE_TEXTS, examples.num_rows))]
    table["stage2_ordering"] = stage2_ordering(table["rows"])
    return table


def example_texts(examples: list[dict]) -> str:
    parts = []
    for i, example in enumerate(examples):
        parts.append(f"### Example {i + 1}\n")
        parts += [f"**{name}**\n\n```\n{text}\n```\n" for name, text in example.items()]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    cfg, _ = parse_cli(__doc__, argv)
    unknown = [r for r in cfg.eval.rows if r not in SYSTEMS]
    if unknown:
        hint = difflib.get_close_matches(unknown[0], list(SYSTEMS), n=1)
        print(f"config error: eval.rows: unknown system {unknown[0]!r} (known: {', '.join(SYSTEMS)})"
              + (f"; did you mean '{hint[0]}'?" if hint else ""), file=sys.stderr)
        return 2
    if not cfg.data.prepared:
        print("config error: data.prepared: set it to a folder written by tools/prepare_data.py", file=sys.stderr)
        return 2
    out = Path(cfg.out or Path(cfg.run.root) / cfg.run.name / "eval")
    try:
        examples, items = read_prepared(cfg.data.prepared, cfg.eval.split)
    except DataError as err:
        print(f"data error: {err}", file=sys.stderr)
        return 1
    if cfg.eval.max_examples:
        examples = examples.slice(0, cfg.eval.max_examples)
    out.mkdir(parents=True, exist_ok=True)
    paper = paper_table(cfg, examples, items, out)
    baselines = evaluate_rows(examples, items, cfg.eval, cfg.run.seed)
    ordering = "" if paper["stage2_ordering"] is None else "\n\n" + ordering_line(paper["stage2_ordering"])
    print("## Table 1: the paper's configurations\n\n" + markdown_table(paper, cfg.eval) + ordering
          + "\n\n## Table 2: baselines\n\n" + markdown_table(baselines, cfg.eval)
          + "\n\n## Table 3: example texts\n\n" + example_texts(paper["examples"]))
    results = {"paper": paper, "baselines": baselines}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    save_config(cfg, out)
    print(f"\nwrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
