"""A run's report: one HTML page with training curves, the results tables and example texts.

    <run>/report/index.html             open it in a browser; no server needed
    <run>/report/<stage>-<metric>.png   one plot per logged metric and stage, and the action
                                        verbalizer's P(keep) / P(enrich) by line class (training/probes.py)

Curves come from every attempt's CSV log (`<stage>/logs/csv/version_*/metrics.csv`: a resumed
run adds a version), in step order; the tables from `<run>/results.json` (written at the end of
each stage) and, if present, `<run>/eval/results.json` (tools/evaluate.py).
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # files only: no display on a cluster node
import matplotlib.pyplot as plt  # noqa: E402

# metric column -> plot title. The paper's reward parts, then the GRPO health signals.
CURVES = {
    "reward/mean": "reward", "reward/accuracy": "accuracy part (oracle correct)", "reward/length": "length part",
    "reward/compression": "compression ratio", "train/kl": "KL to the reference", "train/approx_kl": "approx KL (old -> new)",
    "train/clip_fraction": "clip fraction", "reward/zero_spread_groups": "share of groups with zero reward spread",
    "val/accuracy": "validation accuracy", "val/reward": "validation reward",
}


def read_curves(stage_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """metric -> [(step, value)] over all attempts, sorted by step (a later attempt wins a step)."""
    points: dict[str, dict[int, float]] = {}
    versions = sorted((stage_dir / "logs" / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    for version in versions:
        with open(version / "metrics.csv", newline="") as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if (key in CURVES or key.startswith("probe/")) and value not in ("", None) and row.get("step"):
                        points.setdefault(key, {})[int(row["step"])] = float(value)
    return {k: sorted(v.items()) for k, v in points.items()}


def plot(series: dict[str, list[tuple[int, float]]], title: str, path: Path) -> Path:
    """One line per series (a legend when there are several) against the step."""
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    for label, points in series.items():
        steps, values = zip(*points)
        ax.plot(steps, values, marker="." if len(points) < 50 else None, label=label)
    if len(series) > 1:
        ax.legend(fontsize=7)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _table(rows: dict[str, dict]) -> str:
    def pct(r, key, low, high):
        return "n/a" if r.get(key) is None else f"{100 * r[key]:.1f} [{100 * r[low]:.1f}, {100 * r[high]:.1f}]"

    head = "<tr><th>system</th><th>Recall@1 %</th><th>discovery Recall@1 %</th><th>ValidRatio</th></tr>"
    body = []
    for name, r in rows.items():
        if "unavailable" in r:
            body.append(f"<tr><td>{html.escape(name)}</td><td colspan=3>unavailable: {html.escape(r['unavailable'])}</td></tr>")
            continue
        body.append(f"<tr><td>{html.escape(name)}</td><td>{pct(r, 'recall', 'recall_low', 'recall_high')}</td>"
                    f"<td>{pct(r, 'discovery_recall', 'discovery_low', 'discovery_high')}</td>"
                    f"<td>{r['valid_ratio']:.3f}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _examples(examples: list[dict]) -> str:
    cells = []
    for e in examples:
        cols = "".join(f"<td><b>{html.escape(k)}</b><pre>{html.escape(str(v))}</pre></td>" for k, v in e.items())
        cells.append(f"<tr>{cols}</tr>")
    return f"<table class=ex>{''.join(cells)}</table>" if cells else ""


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:auto}img{margin:4px;border:1px solid #ddd}"
         "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
         "pre{white-space:pre-wrap;max-width:500px;font-size:12px}")


def write_report(run: Path, out: Path | None = None) -> Path:
    """Render the report of `run` into `out` (default <run>/report); returns index.html."""
    out = out or run / "report"
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>lit_verbrec run <code>{html.escape(str(run))}</code></h1>"]
    results = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else []
    for stage in ("verbalizer", "reasoner"):
        curves = read_curves(run / stage) if (run / stage / "logs").is_dir() else {}
        if not curves and not any(r["stage"] == stage for r in results):
            continue
        parts.append(f"<h2>Stage {stage}</h2>")
        images = [plot({key: points}, f"{stage}: {CURVES[key]}", out / f"{stage}-{key.replace('/', '_')}.png")
                  for key, points in curves.items() if key in CURVES]
        for decision in ("keep", "enrich"):   # the action verbalizer's decision probe, by line class
            probe = {k.rsplit("/", 1)[1]: v for k, v in curves.items() if k.startswith(f"probe/p_{decision}/")}
            if probe:
                images.append(plot(probe, f"{stage}: P({decision}) by line class", out / f"{stage}-probe_{decision}.png"))
        parts += [f'<img src="{p.name}" alt="{html.escape(p.stem)}">' for p in images]
        for entry in (r for r in results if r["stage"] == stage):
            parts.append(f"<h3>Test results: {html.escape(entry['reasoner'])}, {entry['n']} examples</h3>")
            parts.append(_table(entry["rows"]))
            parts.append(_examples(entry.get("examples", [])))
    evaluation = run / "eval" / "results.json"
    if evaluation.is_file():
        tables = json.loads(evaluation.read_text())
        parts += ["<h2>The paper's configurations (tools/evaluate.py)</h2>", _table(tables["paper"]["rows"]),
                  _examples(tables["paper"].get("examples", [])),
                  "<h2>Baselines</h2>", _table(tables["baselines"]["rows"])]
    index = out / "index.html"
    index.write_text(f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(run.name)}</title>"
                     f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
    return index
