"""Benchmarks. Each prints absolute figures and a ratio against a peer measured in the same run;
the implementations are in benchmarks/, one file each.

    python tools/bench.py data           # 1,000,000 interactions (6,000 users) -> reranking examples, vs pandas per user
    python tools/bench.py logs           # prepare_data.py on own logs, Parquet or CSV (1M, 5M rows), a user sample vs the whole log
    python tools/bench.py logprobs       # peak memory of per-token log-probs, vocab 151,936
    python tools/bench.py grpo           # GRPO step time and peak memory vs trl's GRPOTrainer
    python tools/bench.py oracle         # oracle client requests/s at concurrency 1, 8, 32
    python tools/bench.py micro_batches  # padding-aware micro-batches vs padded to the step
    python tools/bench.py engines        # rollout tokens/s, vLLM vs transformers, same model and prompts

Arguments after the name go to the benchmark (`python tools/bench.py grpo --help`).
"""

from __future__ import annotations

import importlib
import sys

from lit_verbrec.config.paths import REPO

BENCHES = ("data", "logs", "logprobs", "grpo", "oracle", "micro_batches", "engines")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHES:
        print(__doc__)
        return 0 if argv[:1] in (["--help"], ["-h"]) else 2
    sys.path.insert(0, str(REPO))             # benchmarks/ is a folder of the checkout, not of the package
    return importlib.import_module(f"benchmarks.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
