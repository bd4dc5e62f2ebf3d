"""Reranking examples: the paper's task, checked row by row and against a naive reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest

from lit_verbrec.config.schema import ExamplesConfig, SyntheticConfig
from lit_verbrec.data.canonical import finalize
from lit_verbrec.data.examples import build_examples
from lit_verbrec.data.reference import naive_examples
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import DataError
from lit_verbrec.data.synthetic import generate


@pytest.fixture(scope="module")
def synthetic():
    interactions, items = generate(SyntheticConfig(users=200, interactions_per_user=120, movies=300, series=30), 5)
    report = DataReport()
    data = finalize(interactions, items, report, "synthetic log")
    cfg = ExamplesConfig(train_targets_per_user=3)
    return interactions, items, data, cfg, build_examples(data, cfg, 11, report)


def test_every_row_is_a_valid_reranking_example(synthetic):
    interactions, items, data, cfg, prepared = synthetic
    title = {r.item: r.series_id if isinstance(r.series_id, str) else r.item for r in items.itertuples()}
    touched = interactions.assign(title=interactions["item"].map(title)).groupby("user")["title"].agg(set)
    for row in prepared.examples.to_pylist():
        cands = row["candidates"]
        assert len(cands) == cfg.num_candidates == len({title[c] for c in cands})
        assert cands[row["target_index"]] == row["target"]
        negatives = [c for i, c in enumerate(cands) if i != row["target_index"]]
        assert not {title[c] for c in negatives} & touched[row["user"]], row["example_id"]
        assert 0 < len(row["history"]) <= cfg.history_len
        assert all(h["timestamp"] <= row["timestamp"] for h in row["history"])


def test_matches_the_naive_reference(synthetic):
    interactions, items, data, cfg, prepared = synthetic
    reference = naive_examples(interactions, items, cfg, 0)
    ours = {r["example_id"]: r for r in prepared.examples.to_pylist()}
    assert sorted(ours) == sorted(reference)
    for key, ref in reference.items():
        row = ours[key]
        assert row["target"] == ref["target"], key
        assert [h["item"] for h in row["history"]] == [h["item"] for h in ref["history"]], key
        assert [h["event"] for h in row["history"]] == [h["event"] for h in ref["history"]], key
        assert row["is_discovery"] == ref["is_discovery"], key
    split = prepared.examples["split"].to_pylist()
    assert split.count("test") == split.count("val") == 200 and split.count("train") == 600


def test_same_seed_same_examples_other_seed_other_candidates(synthetic):
    interactions, items, data, cfg, prepared = synthetic
    again = build_examples(data, cfg, 11, DataReport()).examples
    other = build_examples(data, cfg, 12, DataReport()).examples
    assert again.equals(prepared.examples)
    assert other["target"].equals(prepared.examples["target"])
    assert not other["candidates"].equals(prepared.examples["candidates"])


def _log(rows, items):
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp", "event", "duration"])
    inter["timestamp"] = pd.to_datetime(inter["timestamp"], unit="s")
    cat = pd.DataFrame(items, columns=["item", "title", "year", "genres", "tags", "kind", "series_id", "episode"])
    return finalize(inter, cat, DataReport(), "test log")


def _catalog(n_movies=20):
    movies = [(f"m{i}", f"Movie {i}", 2000, ["Drama"], [], "movie", None, None) for i in range(n_movies)]
    episodes = [(f"e{i}", "Show", 2010, ["Comedy"], [], "series", "S1", i) for i in (1, 2, 3)]
    return movies + episodes


def test_series_discovery_and_title_level_negatives():
    # u1 watches episode 1 and 2, then the target episode 3: same title, so not a discovery.
    rows = [("u1", f"m{i}", 10 * i, "play", 90.0) for i in range(6)]
    rows += [("u1", "e1", 100, "play", 30.0), ("u1", "e2", 110, "play", 30.0), ("u1", "e3", 120, "play", 30.0)]
    # u2 discovers the show at episode 2 (their first contact with it).
    rows += [("u2", f"m{i}", 10 * i, "play", 90.0) for i in range(6)] + [("u2", "e2", 200, "play", 30.0)]
    prepared = build_examples(_log(rows, _catalog()), ExamplesConfig(min_history=5), 0, DataReport())
    test = {r["user"]: r for r in prepared.examples.to_pylist() if r["split"] == "test"}
    assert test["u1"]["target"] == "e3" and test["u1"]["is_discovery"] is False
    assert test["u2"]["target"] == "e2" and test["u2"]["is_discovery"] is True
    # The show is never a negative for u2 (title touched), and a negative series is shown as episode 1.
    assert not {"e1", "e3"} & set(test["u2"]["candidates"])
    val = {r["user"]: r for r in prepared.examples.to_pylist() if r["split"] == "val"}
    assert val["u1"]["target"] == "e2" and val["u1"]["is_discovery"] is False


def test_short_histories_and_short_plays_are_not_targets_and_are_counted():
    rows = [("u1", f"m{i}", 10 * i, "play", 90.0) for i in range(8)]
    rows += [("u2", "m0", 0, "play", 90.0), ("u2", "m1", 10, "play", 90.0)]            # too little history
    rows += [("u3", f"m{i}", 10 * i, "play", 1.0) for i in range(8)]                  # only accidental plays
    report = DataReport()
    prepared = build_examples(_log(rows, _catalog()), ExamplesConfig(min_history=3), 0, report)
    assert set(prepared.examples["user"].to_pylist()) == {"u1"}
    assert report.count("users with too little history") == 2
    # u1: targets are rows 3..7 -> test row 7, val row 6, train row 5.
    by_split = {r["split"]: r for r in prepared.examples.to_pylist()}
    assert (by_split["test"]["target"], by_split["val"]["target"], by_split["train"]["target"]) == ("m7", "m6", "m5")
    assert [h["item"] for h in by_split["train"]["history"]] == ["m0", "m1", "m2", "m3", "m4"]


def test_history_window_keeps_the_most_recent():
    rows = [("u1", f"m{i}", 10 * i, "play", 90.0) for i in range(12)]
    prepared = build_examples(_log(rows, _catalog()), ExamplesConfig(history_len=4, min_history=2), 0, DataReport())
    test = next(r for r in prepared.examples.to_pylist() if r["split"] == "test")
    assert test["target"] == "m11"
    assert [h["item"] for h in test["history"]] == ["m7", "m8", "m9", "m10"]


def test_too_small_a_catalog_is_a_counted_skip_and_no_examples_an_error():
    rows = [("u1", f"m{i}", 10 * i, "play", 90.0) for i in range(8)]
    report = DataReport()
    with pytest.raises(DataError, match="no examples could be built"):
        build_examples(_log(rows, _catalog(n_movies=8)), ExamplesConfig(min_history=3), 0, report)
    assert report.count("examples whose user touched too much of the catalog to draw negatives") == 3


def test_time_split_uses_global_cut_offs():
    # Log spans t=0..100; test window [90, 100], val [80, 90).
    rows = [("u1", f"m{i}", t, "play", 90.0) for i, t in enumerate([0, 10, 20, 30, 40, 50, 60, 82, 85, 91, 95, 100])]
    cfg = ExamplesConfig(split="time", min_history=2, train_targets_per_user=2)
    prepared = build_examples(_log(rows, _catalog()), cfg, 0, DataReport())
    got = {r["example_id"]: r["target"] for r in prepared.examples.to_pylist()}
    assert got == {"u1/train/0": "m5", "u1/train/1": "m6", "u1/val/0": "m7", "u1/test/0": "m9"}


def test_popularity_negatives_favour_popular_titles():
    interactions, items = generate(SyntheticConfig(users=300, interactions_per_user=60, movies=400, series=40), 2)
    data = finalize(interactions, items, DataReport(), "synthetic log")
    counts = {}
    for negatives in ("uniform", "popularity"):
        prepared = build_examples(data, ExamplesConfig(negatives=negatives), 0, DataReport())
        pop = dict(zip(prepared.items["item"].to_pylist(), prepared.items["popularity"].to_pylist()))
        ex = prepared.examples
        flat = pc.list_flatten(ex["candidates"]).to_pylist()
        counts[negatives] = np.mean([pop[c] for c in flat])
    assert counts["popularity"] > 2 * counts["uniform"]


def test_a_huge_history_is_cut_to_the_most_recent_lines(synthetic):
    interactions, items, _, cfg, _ = synthetic
    one = interactions[interactions["user"] == interactions["user"].iloc[0]]
    # 20,000 plays by one user (repeats of its own rows, one second apart), appended to the log
    huge = pd.concat([one] * (20_000 // len(one) + 1)).head(20_000).copy()
    huge["user"] = "binger"
    huge["timestamp"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(huge)), unit="s")
    report = DataReport()
    data = finalize(pd.concat([interactions, huge], ignore_index=True), items, report, "synthetic log")
    rows = [r for r in build_examples(data, cfg, 11, report).examples.to_pylist() if r["user"] == "binger"]
    assert rows and all(len(r["history"]) == cfg.history_len for r in rows)
    for r in rows:   # the most recent lines before the target, oldest first
        stamps = [h["timestamp"] for h in r["history"]]
        assert stamps == sorted(stamps) and stamps[-1] <= r["timestamp"]
