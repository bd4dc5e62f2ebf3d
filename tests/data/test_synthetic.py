"""The synthetic streaming log: deterministic, shaped as documented, and verbalization matters."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow.compute as pc
import pytest

from lit_verbrec.config.schema import EvalConfig, ExamplesConfig, SyntheticConfig
from lit_verbrec.data.canonical import finalize
from lit_verbrec.data.examples import build_examples
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.synthetic import N_TARGETS, generate
from lit_verbrec.evaluation.table import evaluate_rows

SMALL = SyntheticConfig(users=300, interactions_per_user=60, movies=400, series=40)


def _parquet_digest(cfg: SyntheticConfig, seed: int, tmp_path) -> str:
    interactions, items = generate(cfg, seed)
    folder = tmp_path / f"seed{seed}-{len(list(tmp_path.iterdir()))}"
    finalize(interactions, items, DataReport(), "synthetic log").write(folder)
    return "".join(hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in ("interactions.parquet", "items.parquet"))


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    assert _parquet_digest(SMALL, 3, tmp_path) == _parquet_digest(SMALL, 3, tmp_path)
    assert _parquet_digest(SMALL, 3, tmp_path) != _parquet_digest(SMALL, 4, tmp_path)


def test_log_shape_matches_the_config():
    interactions, items = generate(SMALL, 0)
    per_user = interactions.groupby("user").size()
    assert len(per_user) == SMALL.users
    assert (per_user == SMALL.interactions_per_user + N_TARGETS).all()
    assert set(interactions["event"]) == {"play", "thumb_up", "thumb_down", "add_to_list", "trailer", "autoplay_preview"}
    assert set(interactions["origin"]) == {"taste", "dislike", "household", "noise"}
    noise = (interactions["origin"] == "noise").mean()
    assert abs(noise - SMALL.noise_share) < 0.05
    # Noise is short: previews, trailers and accidental plays never last 3 minutes.
    assert interactions.loc[interactions["origin"] == "noise", "duration"].max() < 3.0
    assert (items["kind"] == "movie").sum() == SMALL.movies
    assert items.loc[items["kind"] == "series", "series_id"].nunique() == SMALL.series
    assert items["item"].is_unique
    # Binges: some user watches consecutive episodes of one series in a row.
    episodes = interactions.merge(items[["item", "series_id", "episode"]], on="item")
    episodes = episodes[episodes["series_id"].notna() & (episodes["event"] == "play")]
    consecutive = (episodes["series_id"].eq(episodes["series_id"].shift()) & episodes["episode"].eq(episodes["episode"].shift() + 1))
    assert consecutive.sum() > SMALL.users
    households = interactions.loc[interactions["origin"] == "household", "user"].nunique()
    assert 0.15 * SMALL.users < households < 0.45 * SMALL.users


def test_timestamps_increase_within_each_user():
    interactions, _ = generate(SMALL, 1)
    assert interactions.groupby("user")["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()


def test_noise_filtering_and_metadata_help_a_reasoner():
    """The generator must make verbalization matter (issue: "measurably help a reasoner")."""
    interactions, items = generate(SyntheticConfig(users=800, interactions_per_user=60, movies=600, series=60), 0)
    report = DataReport()
    prepared = build_examples(finalize(interactions, items, report, "synthetic log"), ExamplesConfig(), 0, report)
    test = prepared.examples.filter(pc.equal(prepared.examples["split"], "test"))
    rows = ["lexical/template", "lexical/template+metadata", "lexical/taste-lines+metadata"]
    result = evaluate_rows(test, prepared.items, EvalConfig(rows=rows, reference=rows[0], bootstrap=200), 0)["rows"]
    template, enriched, filtered = (result[r] for r in rows)
    # Titles carry no content: the template alone is at chance on discovery targets.
    assert template["discovery_high"] > 0.1 > template["discovery_low"] - 0.02
    # Metadata helps, filtering the noise helps much more; both beyond their intervals.
    assert enriched["discovery_low"] > template["discovery_high"]
    assert filtered["discovery_low"] > enriched["discovery_high"]
    assert result["lexical/taste-lines+metadata"]["vs_reference_discovery"]["low"] > 100.0


@pytest.mark.parametrize("field, value", [("users", 0), ("noise_share", 1.0), ("household_share", -0.1)])
def test_bad_synthetic_settings_are_rejected(field, value):
    with pytest.raises(ValueError, match=f"data.synthetic.{field}"):
        SyntheticConfig(**{field: value})


def test_popularity_is_long_tailed():
    interactions, _ = generate(SMALL, 0)
    plays = interactions.loc[interactions["event"] == "play", "item"].value_counts().to_numpy()
    top = np.sort(plays)[::-1]
    assert top[: len(top) // 10].sum() > 0.3 * top.sum()


def test_prepared_examples_are_byte_identical_for_the_same_seed(tmp_path):
    import pyarrow.parquet as pq

    def digest(seed: int) -> str:
        interactions, items = generate(SMALL, seed)
        report = DataReport()
        prepared = build_examples(finalize(interactions, items, report, "synthetic log"), ExamplesConfig(), seed, report)
        path = tmp_path / f"examples-{seed}-{len(list(tmp_path.iterdir()))}.parquet"
        pq.write_table(prepared.examples, path)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert digest(1) == digest(1) != digest(2)
