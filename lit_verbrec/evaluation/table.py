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
    """{split, n, n_discovery, reference, rows: {name: metrics | {"unavailable": why}}} for eval.rows."""
    catalog = Catalog.from_table(items)
    popularity = dict(zip(items["item"].to_pylist(), items["popularity"].to_pylist()))
    history_fields = {f.name for f in examples.schema.field("history").type.value_type}
    preds: dict[str, np.ndarray] = {}
    unavailable: dict[str, str] = {}
    for name in cfg.rows:
        system = SYSTEMS[name]
        if system.needs_history_column and system.needs_history_column not in history_fields:
            unavailable[name] = f"the examples' history has no '{system.needs_history_column}' column"
            continue
        preds[name] = system.predict(examples, catalog, popularity, seed)
    return score_rows(examples, cfg.rows, preds, unavailable, cfg, seed, cfg.reference)


def score_rows(examples: pa.Table, names, preds: dict[str, np.ndarray], unavailable: dict[str, str], cfg: EvalConfig,
               seed: int, reference: str, extra: dict[str, dict] | None = None,
               references: dict[str, str] | None = None) -> dict:
    """Metrics of each row's predictions on `examples`, in `names` order, with the relative change in
    discovery Recall@1 against `reference` (paired bootstrap); `extra`: more fields per row;
    `references`: a row's own reference where it is not `reference` (rows read by another reasoner
    are compared with the template read by theirs)."""
    references = references or {}
    target = examples["target_index"].to_numpy().astype(np.int64)
    discovery = examples["is_discovery"].to_numpy(zero_copy_only=False)
    rows: dict[str, dict] = {}
    for name in names:
        if name in unavailable:
            rows[name] = {"unavailable": unavailable[name]}
            continue
        rows[name] = summarize(preds[name], target, discovery, cfg.bootstrap, cfg.confidence, seed)
        against = references.get(name, reference)
        if against in preds:
            rows[name]["vs_reference_discovery"] = relative_change(
                preds[name], preds[against], target, discovery, cfg.bootstrap, cfg.confidence, seed) | {"against": against}
        rows[name].update((extra or {}).get(name, {}))
    return _json_safe({
        "split": cfg.split if examples.num_rows == 0 else pc.unique(examples["split"]).to_pylist(),
        "n": examples.num_rows,
        "n_discovery": int(discovery.sum()),
        "reference": reference,
        "references": {name: references.get(name, reference) for name in names},
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
    per_row = len(set(results.get("references", {}).values())) > 1     # rows read by different reasoners
    against = "the same reasoner on the template" if per_row else results["reference"]
    head = (f"| System | Recall@1 % ({level} CI) | Discovery Recall@1 % ({level} CI) "
            f"| Δ% discovery vs {against} ({level} CI) | ValidRatio | Compression |")
    lines = [f"Split {', '.join(results['split']) if isinstance(results['split'], list) else results['split']}: "
             f"{results['n']:,} examples, {results['n_discovery']:,} discovery targets", "", head,
             "|" + "---|" * 6]
    for name, r in results["rows"].items():
        if "unavailable" in r:
            lines.append(f"| {name} | unavailable: {r['unavailable']} | | | | |")
            continue
        d = r["vs_reference_discovery"] if "vs_reference_discovery" in r else None
        delta = "n/a" if d is None or d["delta_pct"] is None else f"{d['delta_pct']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"
        if d is not None and per_row:
            delta += f" vs {d['against']}"
        compression = f"{r['compression']:.2f}" if r.get("compression") is not None else "n/a"
        lines.append(f"| {name} | {_pct(r['recall'], r['recall_low'], r['recall_high'])} "
                     f"| {_pct(r['discovery_recall'], r['discovery_low'], r['discovery_high'])} | {delta} "
                     f"| {r['valid_ratio']:.3f} | {compression} |")
    return "\n".join(lines)
