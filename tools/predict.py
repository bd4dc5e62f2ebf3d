"""Batch answers for new users: a finished run's verbalizer and reasoner over a prepared examples file.

    python tools/predict.py run=runs/default predict.input=prep/new-users out=preds/new-users
    python tools/predict.py run=runs/default predict.split=all predict.engine=vllm
    python tools/predict.py run=runs/default predict.reasoner=oracle oracle=openai oracle.base_url=...

Reads the run's resolved config (<run>/config.yaml; later key=value arguments override it), its
stage-1 adapter (the verbalizer) and stage-2 adapter (the reasoner; predict.reasoner=oracle
answers with the oracle instead). `predict.input` is a folder written by tools/prepare_data.py
(raw logs go through it first: `python tools/prepare_data.py data=parquet data.path=... out=...`);
empty: the run's own prepared data. Writes a Parquet dataset into `out` (default
<run>/predict/): one part file per predict.chunk examples, columns in
lit_verbrec/evaluation/predict.py; a rerun with the same `out` resumes after the last complete part.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lit_verbrec.config.cli import run_folder
from lit_verbrec.config.compose import ConfigError, compose_run
from lit_verbrec.data.schema import DataError
from lit_verbrec.evaluation.predict import predict


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    folder, rest = run_folder(__doc__, argv)
    try:
        cfg = compose_run(folder, rest)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    out = Path(cfg.out) if cfg.out else folder / "predict"
    try:
        result = predict(cfg, out)
    except (DataError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{result['examples']:,} examples: {result['parts_written']} part files written, "
          f"{result['parts_reused']} already there")
    print(f"wrote {out}/part-*.parquet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
