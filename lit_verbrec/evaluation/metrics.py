"""Recall@1 (overall and on discovery targets), ValidRatio, bootstrap intervals, and the
relative change against a reference system (the paper's "Recall@1 Δ%" vs the template).

Inputs are arrays over examples: `pred` is the chosen candidate index with -1 for an invalid
reply, `target` the true index, `is_discovery` whether the target's title is new to the user
(section 5.1). An invalid reply counts as wrong, never as skipped: dropping it would reward
a model for refusing hard examples.

Bootstraps are percentile bootstraps over examples, vectorised: each resample is a row of
indices, drawn in chunks so that memory stays bounded (1,000 resamples of 50,000 examples
would be 400 MB of indices at once). Same seed, same inputs -> identical numbers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["recall_at_1", "bootstrap_ci", "summarize", "relative_change"]

_MAX_INDICES_PER_CHUNK = 1 << 22  # int64 indices per chunk: 32 MB


def _resampled_means(columns: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Means of each column over `n_resamples` resamples of the rows: shape [n_resamples, k].

    `columns` is [n, k]; all k columns are resampled with the SAME row indices, which is what
    makes a paired bootstrap paired.
    """
    n = columns.shape[0]
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _MAX_INDICES_PER_CHUNK // n)
    means = np.empty((n_resamples, columns.shape[1]), dtype=np.float64)
    for start in range(0, n_resamples, per_chunk):
        stop = min(n_resamples, start + per_chunk)
        idx = rng.integers(0, n, size=(stop - start, n))  # [chunk, n]
        means[start:stop] = columns[idx].mean(axis=1)       # [chunk, n, k] -> [chunk, k]
    return means


def _check_confidence(confidence: float, n_resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return float(low), float(high)


def recall_at_1(pred: np.ndarray, target: np.ndarray) -> float:
    """Share of examples whose chosen index is the target's; -1 (invalid) is wrong. NaN if empty."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {pred.shape}, target {target.shape}")
    if pred.size == 0:
        return float("nan")
    return float(np.mean(pred == target))


def bootstrap_ci(values: np.ndarray, n_resamples: int, confidence: float, seed: int) -> dict:
    """{mean, low, high}: the sample mean and its percentile-bootstrap interval (NaN if empty)."""
    _check_confidence(confidence, n_resamples)
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan")}
    means = _resampled_means(values.reshape(-1, 1), n_resamples, seed)[:, 0]
    low, high = _percentiles(means, confidence)
    return {"mean": float(values.mean()), "low": low, "high": high}


def summarize(
    pred: np.ndarray,
    target: np.ndarray,
    is_discovery: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Recall@1 overall and on discovery targets with bootstrap intervals, and ValidRatio.

    Keys: n, n_discovery, recall, recall_low, recall_high, discovery_recall, discovery_low,
    discovery_high (NaN when there are no discovery examples), valid_ratio (share of
    replies that named a candidate, LLaRA's ValidRatio).
    """
    pred, target = np.asarray(pred), np.asarray(target)
    is_discovery = np.asarray(is_discovery, dtype=bool)
    if not pred.shape == target.shape == is_discovery.shape:
        raise ValueError(f"shapes differ: pred {pred.shape}, target {target.shape}, is_discovery {is_discovery.shape}")
    correct = (pred == target).astype(np.float64)
    overall = bootstrap_ci(correct, n_resamples, confidence, seed)
    discovery = bootstrap_ci(correct[is_discovery], n_resamples, confidence, seed)
    return {
        "n": int(pred.size),
        "n_discovery": int(is_discovery.sum()),
        "recall": overall["mean"],
        "recall_low": overall["low"],
        "recall_high": overall["high"],
        "discovery_recall": discovery["mean"],
        "discovery_low": discovery["low"],
        "discovery_high": discovery["high"],
        "valid_ratio": float(np.mean(pred != -1)) if pred.size else float("nan"),
    }


def relative_change(
    pred: np.ndarray,
    ref_pred: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> dict:
    """Relative change in percent of Recall@1 on `mask`: 100 * (R(pred) / R(ref_pred) - 1).

    The interval is a PAIRED bootstrap: each resample draws one set of examples and scores
    both systems on it, so the example-to-example difficulty both share cancels and the
    interval is much narrower than one from independent resamples. Resamples in which the
    reference scores 0 have no ratio and are dropped (their number is returned as
    `resamples_used`); if the reference scores 0 on the whole sample, everything is NaN.
    Keys: delta_pct, low, high, resamples_used.
    """
    _check_confidence(confidence, n_resamples)
    pred, ref_pred, target = np.asarray(pred), np.asarray(ref_pred), np.asarray(target)
    mask = np.asarray(mask, dtype=bool)
    if not pred.shape == ref_pred.shape == target.shape == mask.shape:
        raise ValueError(f"shapes differ: pred {pred.shape}, ref_pred {ref_pred.shape}, "
                         f"target {target.shape}, mask {mask.shape}")
    nan = {"delta_pct": float("nan"), "low": float("nan"), "high": float("nan"), "resamples_used": 0}
    columns = np.stack([pred[mask] == target[mask], ref_pred[mask] == target[mask]], axis=1).astype(np.float64)
    if columns.shape[0] == 0:
        return nan
    recall, ref_recall = columns.mean(axis=0)
    if ref_recall == 0:
        return nan
    means = _resampled_means(columns, n_resamples, seed)  # [n_resamples, 2]
    usable = means[:, 1] > 0
    ratios = 100.0 * (means[usable, 0] / means[usable, 1] - 1.0)
    # Possible only for tiny samples (every resample missed the few reference hits).
    low, high = _percentiles(ratios, confidence) if ratios.size else (float("nan"), float("nan"))
    return {
        "delta_pct": float(100.0 * (recall / ref_recall - 1.0)),
        "low": low,
        "high": high,
        "resamples_used": int(usable.sum()),
    }
