"""data: the path from raw frames to an examples table (de-duplication, catalog check, sort,
targets, history records, negatives) on the synthetic log, timed against a straightforward
implementation of the same rules (lit_verbrec/data/reference.py: pandas groupby per user, Python
lists and sets, pa.Table.from_pylist) on the same interactions. Target: ours under 10 s on 2 cores.

    python tools/bench.py data [config overrides]
"""


from __future__ import annotations

import time

import pyarrow as pa

from lit_verbrec.config.compose import compose
from lit_verbrec.data.canonical import finalize
from lit_verbrec.data.examples import build_examples
from lit_verbrec.data.reference import naive_examples
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.synthetic import N_TARGETS, generate


def main(overrides: list[str]) -> int:
    cfg = compose(["data.synthetic.users=6000", f"data.synthetic.interactions_per_user={167 - N_TARGETS}", *overrides])
    t0 = time.perf_counter()
    interactions, items = generate(cfg.data.synthetic, cfg.data.seed)
    t_gen = time.perf_counter() - t0
    n = len(interactions)
    print(f"synthetic log: {n:,} interactions, {interactions['user'].nunique():,} users, {len(items):,} items "
          f"(generated in {t_gen:.1f} s, not part of the timing)")

    t0 = time.perf_counter()
    report = DataReport()
    data = finalize(interactions, items, report, "synthetic log")
    t_canonical = time.perf_counter() - t0
    prepared = build_examples(data, cfg.data.examples, cfg.data.seed, report)
    ours = time.perf_counter() - t0
    n_examples = prepared.examples.num_rows

    t0 = time.perf_counter()
    peer = naive_examples(interactions, items, cfg.data.examples, cfg.data.seed)
    pa.Table.from_pylist(list(peer.values()))  # the same output: one table with history records
    naive = time.perf_counter() - t0
    same = sorted(peer) == sorted(prepared.examples["example_id"].to_pylist())

    print(f"ours : {ours:6.2f} s ({t_canonical:.2f} s canonical tables + {ours - t_canonical:.2f} s examples) "
          f"-> {n_examples:,} examples, {n / ours:,.0f} interactions/s")
    print(f"naive: {naive:6.2f} s -> {len(peer):,} examples, {n / naive:,.0f} interactions/s "
          f"(same example ids: {same})")
    print(f"ratio: ours / naive time = {ours / naive:.3f} (target: ours < 10 s: {'met' if ours < 10 else 'MISSED'})")
    return 0
