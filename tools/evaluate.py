"""Score reasoners on prepared reranking examples: the paper's Recall@1 table.

    python tools/evaluate.py data.prepared=runs/default/data
    python tools/evaluate.py data.prepared=prep/ml-1m eval.rows=[random,popularity,lexical/template] eval.split=val

Rows (eval.rows): see lit_verbrec/evaluation/systems.py — random, popularity,
lexical/template, lexical/template+metadata, lexical/taste-lines+metadata. Reports
Recall@1 overall and on discovery targets with bootstrap intervals, ValidRatio, and the
relative change in discovery Recall@1 against eval.reference (paired bootstrap).
Prints a Markdown table; writes results.json and config.yaml into `out`
(default runs/<run.name>/eval).
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

from lit_verbrec.config.cli import parse_cli
from lit_verbrec.config.compose import save_config
from lit_verbrec.data.schema import DataError
from lit_verbrec.data.sources import read_prepared
from lit_verbrec.evaluation.systems import SYSTEMS
from lit_verbrec.evaluation.table import evaluate_rows, markdown_table


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
    results = evaluate_rows(examples, items, cfg.eval, cfg.run.seed)
    print(markdown_table(results, cfg.eval))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    save_config(cfg, out)
    print(f"\nwrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
