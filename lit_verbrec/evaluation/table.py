"""Score several systems on the same examples and lay the result out as the paper's table.

Every system sees the same examples and candidates; relative changes use a paired
bootstrap against `eval.reference` on discovery targets (the paper's headline metric).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lit_verbrec.config.schema import EvalConfig
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.evaluation.metrics import relative_change, summarize
from lit_verbrec.evaluation.systems import SYSTEMS


def evaluate_rows(examples: pa.Table, items: pa.Table, cfg: EvalConfig, seed: int) -> dict:
    """{split, n, n_discovery, reference, rows: {name: metrics | {"unavailable": why}}}."""
    catalog = Catalog.from_table(items)
    popularity = dict(zip(items["item"].to_pylist(), items["popularity"].to_pylist()))
    target = examples["target_index"].to_numpy().astype(np.int64)
    discovery = examples["is_discovery"].to_numpy(zero_copy_only=False)
    history_fields = {f.name for f in examples.schema.field("history").type.value_type}
    preds: dict[str, np.ndarray] = {}
    rows: dict[str, dict] = {}
    for name in cfg.rows:
        system = SYSTEMS[name]
        if system.needs_history_column and system.needs_history_column not in history_fields:
            rows[name] = {"unavailable": f"the examples' history has no '{system.needs_history_column}' column"}
            continue
        preds[name] = system.predict(examples, catalog, popularity, seed)
        rows[name] = summarize(preds[name], target, discovery, cfg.bootstrap, cfg.confidence, seed)
    for name, pred in preds.items():
        if cfg.reference in preds:
            rows[name]["vs_reference_discovery"] = relative_change(
                pred, preds[cfg.reference], target, discovery, cfg.bootstrap, cfg.confidence, seed)
    return _json_safe({
        "split": cfg.split if examples.num_rows == 0 else pc.unique(examples["split"]).to_pylist(),
        "n": examples.num_rows,
        "n_discovery": int(discovery.sum()),
        "reference": cfg.reference,
        "confidence": cfg.confidence,
        "rows": rows,
    })


def _json_safe(value):
    """NaN -> None, so results.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _pct(value, low, high) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def markdown_table(results: dict, cfg: EvalConfig) -> str:
    level = f"{cfg.confidence:.0%}"
    head = (f"| System | Recall@1 % ({level} CI) | Discovery Recall@1 % ({level} CI) "
            f"| Δ% discovery vs {results['reference']} ({level} CI) | ValidRatio |")
    lines = [f"Split {', '.join(results['split']) if isinstance(results['split'], list) else results['split']}: "
             f"{results['n']:,} examples, {results['n_discovery']:,} discovery targets", "", head,
             "|" + "---|" * 5]
    for name, r in results["rows"].items():
        if "unavailable" in r:
            lines.append(f"| {name} | unavailable: {r['unavailable']} | | | |")
            continue
        d = r["vs_reference_discovery"] if "vs_reference_discovery" in r else None
        delta = "n/a" if d is None or d["delta_pct"] is None else f"{d['delta_pct']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"
        lines.append(f"| {name} | {_pct(r['recall'], r['recall_low'], r['recall_high'])} "
                     f"| {_pct(r['discovery_recall'], r['discovery_low'], r['discovery_high'])} | {delta} "
                     f"| {r['valid_ratio']:.3f} |")
    return "\n".join(lines)
