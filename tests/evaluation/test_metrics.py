"""Recall@1, ValidRatio, bootstrap intervals and paired relative change, on hand-computed inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lit_verbrec.evaluation import metrics
from lit_verbrec.evaluation.metrics import bootstrap_ci, recall_at_1, relative_change, summarize


def test_recall_counts_invalid_as_wrong() -> None:
    pred = np.array([0, 1, -1, 2, 3])
    target = np.array([0, 2, 1, 2, 3])
    assert recall_at_1(pred, target) == pytest.approx(3 / 5)
    assert recall_at_1(np.array([-1, -1]), np.array([0, 1])) == 0.0
    assert math.isnan(recall_at_1(np.array([], int), np.array([], int)))
    with pytest.raises(ValueError, match="shape"):
        recall_at_1(np.array([0]), np.array([0, 1]))


def test_bootstrap_ci_values() -> None:
    constant = bootstrap_ci(np.ones(20), n_resamples=200, confidence=0.95, seed=0)
    assert constant == {"mean": 1.0, "low": 1.0, "high": 1.0}
    half = bootstrap_ci(np.tile([0.0, 1.0], 50), n_resamples=2000, confidence=0.95, seed=0)
    assert half["mean"] == 0.5
    # Normal approximation: 0.5 +- 1.96 * sqrt(0.25 / 100) = [0.402, 0.598].
    assert 0.37 < half["low"] < 0.43 and 0.57 < half["high"] < 0.63
    assert 0.0 <= half["low"] < half["mean"] < half["high"] <= 1.0
    narrow = bootstrap_ci(np.tile([0.0, 1.0], 50), n_resamples=2000, confidence=0.5, seed=0)
    assert half["low"] < narrow["low"] < narrow["high"] < half["high"]
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([]), 100, 0.95, 0).values())
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(np.ones(3), 100, 95, 0)


def test_bootstrap_same_seed_same_numbers_and_chunking_is_invisible(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(1).random(500)
    a = bootstrap_ci(values, 300, 0.9, seed=7)
    assert bootstrap_ci(values, 300, 0.9, seed=7) == a
    assert bootstrap_ci(values, 300, 0.9, seed=8) != a
    # Resamples are drawn in memory-bounded chunks; the chunk size must not change results.
    monkeypatch.setattr(metrics, "_MAX_INDICES_PER_CHUNK", 1_700)
    assert bootstrap_ci(values, 300, 0.9, seed=7) == a


def test_summarize_hand_example() -> None:
    pred = np.array([0, 1, -1, 2, -1, 5, 0, 0])
    target = np.array([0, 2, 1, 2, 3, 5, 1, 0])
    is_discovery = np.array([True, True, True, False, False, False, True, False])
    s = summarize(pred, target, is_discovery, n_resamples=500, seed=3)
    assert s["n"] == 8 and s["n_discovery"] == 4
    assert s["recall"] == pytest.approx(4 / 8)
    assert s["discovery_recall"] == pytest.approx(1 / 4)  # only example 0 of 0, 1, 2, 6
    assert s["valid_ratio"] == pytest.approx(6 / 8)
    assert 0.0 <= s["recall_low"] <= s["recall"] <= s["recall_high"] <= 1.0
    assert 0.0 <= s["discovery_low"] <= s["discovery_recall"] <= s["discovery_high"] <= 1.0
    assert summarize(pred, target, is_discovery, n_resamples=500, seed=3) == s
    assert set(s) == {"n", "n_discovery", "recall", "recall_low", "recall_high", "discovery_recall",
                      "discovery_low", "discovery_high", "valid_ratio"}


def test_summarize_without_discovery_examples_is_nan() -> None:
    s = summarize(np.array([0, 1]), np.array([0, 0]), np.array([False, False]), n_resamples=100)
    assert s["n_discovery"] == 0 and s["recall"] == 0.5 and s["valid_ratio"] == 1.0
    assert math.isnan(s["discovery_recall"]) and math.isnan(s["discovery_low"]) and math.isnan(s["discovery_high"])


def test_relative_change_hand_example() -> None:
    target = np.zeros(12, dtype=int)
    # On the 10 masked examples: pred right on 6, reference right on 4 -> +50%.
    pred = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 9, 9])
    ref_pred = np.array([0, 0, 0, 0, -1, -1, -1, -1, -1, -1, 0, 0])
    mask = np.array([True] * 10 + [False] * 2)
    r = relative_change(pred, ref_pred, target, mask, n_resamples=2000, confidence=0.95, seed=0)
    assert r["delta_pct"] == pytest.approx(50.0)
    assert r["low"] < 50.0 < r["high"]
    assert 0 < r["resamples_used"] <= 2000
    assert relative_change(pred, ref_pred, target, mask, 2000, 0.95, 0) == r
    # Without the mask the two unmasked examples favour the reference: 6/12 vs 6/12 -> 0%.
    assert relative_change(pred, ref_pred, target, np.ones(12, bool), 500, 0.95, 0)["delta_pct"] == pytest.approx(0.0)


def test_relative_change_is_paired() -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 10, 300)
    pred = np.where(rng.random(300) < 0.3, target, -1)
    # Identical systems: every paired resample has ratio exactly 1, so the interval is [0, 0];
    # independent resamples would give an interval tens of percent wide.
    r = relative_change(pred, pred.copy(), target, np.ones(300, bool), 500, 0.95, seed=1)
    assert r == {"delta_pct": 0.0, "low": 0.0, "high": 0.0, "resamples_used": 500}


def test_relative_change_zero_reference() -> None:
    target = np.zeros(4, dtype=int)
    r = relative_change(np.zeros(4, int), np.full(4, -1), target, np.ones(4, bool), 100, 0.95, 0)
    assert math.isnan(r["delta_pct"]) and math.isnan(r["low"]) and math.isnan(r["high"])
    assert r["resamples_used"] == 0
    empty = relative_change(np.zeros(4, int), np.zeros(4, int), target, np.zeros(4, bool), 100, 0.95, 0)
    assert math.isnan(empty["delta_pct"])
    # A reference with one hit in three: resamples that miss it are dropped, not counted as +inf.
    r = relative_change(np.array([0, 0, 0]), np.array([0, 1, 1]), np.zeros(3, int), np.ones(3, bool), 400, 0.95, 2)
    assert r["delta_pct"] == pytest.approx(200.0)
    assert 0 < r["resamples_used"] < 400
    assert np.isfinite(r["low"]) and np.isfinite(r["high"]) and r["low"] <= r["high"]
