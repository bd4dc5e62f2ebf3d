"""Keyed draws and negatives: an example's candidates depend on its own key, never on the other users."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lit_verbrec.config.schema import ExamplesConfig, SyntheticConfig
from lit_verbrec.data.canonical import finalize
from lit_verbrec.data.draws import example_keys, uniform
from lit_verbrec.data.examples import build_examples
from lit_verbrec.data.negatives import draw_negatives, touched_pairs
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import CanonicalData
from lit_verbrec.data.synthetic import generate


def test_uniform_is_keyed_spread_and_independent_of_its_neighbours():
    keys = example_keys(0, "negatives", np.arange(1000, dtype=np.uint64), np.zeros(1000))
    u = uniform(keys[:, None], np.arange(50, dtype=np.uint64)[None, :])          # [1000, 50]
    assert u.shape == (1000, 50) and (u >= 0).all() and (u < 1).all()
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 4500          # 50,000 draws, 5,000 per bin expected
    np.testing.assert_array_equal(uniform(keys[500:501, None], np.arange(50, dtype=np.uint64)[None, :]), u[500:501])
    other_seed = example_keys(1, "negatives", np.arange(1000, dtype=np.uint64), np.zeros(1000))
    other_stream = example_keys(0, "target_index", np.arange(1000, dtype=np.uint64), np.zeros(1000))
    assert len(np.unique(np.r_[keys, other_seed, other_stream])) == 3000


def test_negatives_are_untouched_distinct_and_fall_back_when_few_are_left():
    n_titles, k = 2000, 9
    # user 0 touched every title but 10 (uniform draws hit one in 200: the keyed last attempt is
    # needed), user 1 touched 5, user 2 every title but 8 (too few: a row of -1)
    touched_titles = {0: np.arange(10, n_titles), 1: np.arange(5), 2: np.arange(8, n_titles)}
    codes = np.concatenate([np.full(len(t), u) for u, t in touched_titles.items()])
    touched = touched_pairs(codes, np.concatenate(list(touched_titles.values())), n_titles)
    users = np.array([0, 0, 1, 2])
    keys = example_keys(3, "negatives", np.array([7, 7, 8, 9], dtype=np.uint64), np.array([0, 1, 0, 0]))
    out = draw_negatives(keys, users, touched, n_titles, k, popularity=None)
    assert out.shape == (4, k)
    for row, user in zip(out[:3], users[:3], strict=True):
        assert len(set(row)) == k and not set(row) & set(touched_titles[user])
    assert set(out[0]) <= set(range(10)) and (out[3] == -1).all()
    again = draw_negatives(keys[::-1], users[::-1], touched, n_titles, k, popularity=None)[::-1]
    np.testing.assert_array_equal(again, out)


def test_an_examples_candidates_do_not_depend_on_the_other_users():
    interactions, items = generate(SyntheticConfig(users=120, interactions_per_user=60, movies=200, series=20), 4)
    data = finalize(interactions, items, DataReport(), "synthetic log")
    half = sorted(set(interactions["user"]))[::2]
    some = CanonicalData(data.interactions.filter(pc.is_in(data.interactions["user"], value_set=pa.array(half))),
                         data.items)
    for negatives in ("uniform", "popularity"):
        cfg = ExamplesConfig(negatives=negatives, train_targets_per_user=2)
        whole = {r["example_id"]: r for r in build_examples(data, cfg, 5, DataReport()).examples.to_pylist()}
        part = build_examples(some, cfg, 5, DataReport()).examples.to_pylist()
        assert len(part) == 4 * len(half)
        for r in part:
            if negatives == "uniform":   # popularity counts the other users' plays too
                assert r["candidates"] == whole[r["example_id"]]["candidates"], r["example_id"]
            assert r["target_index"] == whole[r["example_id"]]["target_index"], r["example_id"]
        positions = np.bincount([r["target_index"] for r in whole.values()], minlength=cfg.num_candidates)
        assert positions.min() > 0.5 * len(whole) / cfg.num_candidates
