"""logs: tools/prepare_data.py on own logs (Parquet or CSV): in shards of users, and a user sample, against the whole log in memory.

The log has the shape teams keep: 5 columns (member id, item id, ISO-free unix seconds, one of three
event kinds, seconds watched), about 100 interactions per user, Zipf-popular items over a catalog
of 50,000 titles with year, genres and tags. Each measurement is one `prepare_data.py` process with
the paper's 100-line window (size=8b's); time is its wall clock, memory the peak of its RSS and its
shard workers' together. The peer, in the same run and on the same file, is the in-memory path
(data.shard_rows=0); the ratios are against it, and the last line is how the sharded run's peak grows
with the log.

    python tools/bench.py logs [--rows 1000000,5000000] [--sample 0.1] [--format parquet|csv]
                               [--runs memory,shards,sample] [--settings "data.workers=2 ..."]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lit_verbrec.config.paths import REPO

TITLES = 50_000
PER_USER = 100
GENRES = ["Drama", "Comedy", "Action", "Thriller", "Documentary", "Romance", "Horror", "Animation", "Crime", "Sci-Fi"]


def write_logs(folder: Path, rows: int, seed: int = 0, fmt: str = "parquet", order: str = "user") -> str:
    """events.<fmt> (`rows` rows) and items.parquet in `folder`; returns the log's file name. `order`:
    "user" (each user's rows together, in time order) or "time" (the whole log in time order, as an
    event stream is written: consecutive rows are of different users)."""
    rng = np.random.default_rng(seed)
    items = pa.table({
        "item_id": pa.array([f"t{i}" for i in range(TITLES)]),
        "name": pa.array([f"Title {i}" for i in range(TITLES)]),
        "year": pa.array(rng.integers(1950, 2026, TITLES).astype(np.int32)),
        "genres": pa.array(["|".join(rng.choice(GENRES, 2, replace=False)) for _ in range(TITLES)]),
        "tags": pa.array([f"tag{i % 97}|tag{i % 89}" for i in range(TITLES)]),
    })
    pq.write_table(items, folder / "items.parquet")
    users = rows // PER_USER
    writer = None
    for start in range(0, rows, 1_000_000):        # chunks: the generator itself stays small
        n = min(1_000_000, rows - start)
        index = np.arange(start, start + n)
        popular = (rng.zipf(1.3, n) - 1) % TITLES
        member, step = (index // PER_USER % users, index % PER_USER) if order == "user" else (index % users, index // users)
        chunk = pa.table({
            "member": pa.array(np.char.add("m", member.astype(str))),
            "item": pa.array(np.char.add("t", popular.astype(str))),
            "ts": pa.array(1_735_689_600 + step * 3_600 + member),
            "kind": pa.array(np.array(["play", "trailer", "thumb_up"])[rng.choice(3, n, p=[0.8, 0.15, 0.05])]),
            "seconds": pa.array(rng.integers(60, 7_200, n).astype(np.float64)),
        })
        if writer is None:
            writer = (pq.ParquetWriter(folder / "events.parquet", chunk.schema) if fmt == "parquet"
                      else pacsv.CSVWriter(folder / "events.csv", chunk.schema))
        writer.write_table(chunk)
    writer.close()
    return f"events.{fmt}"


def _tree_rss(process: psutil.Process) -> int:
    """Resident memory of a process and all its children, 0 for any that has ended."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def prepare(folder: Path, log: str, out: Path, sample: float, settings: tuple[str, ...] = ()) -> dict:
    """One prepare_data.py process: wall seconds and peak RSS (GB), polled every 50 ms."""
    command = [sys.executable, str(REPO / "tools" / "prepare_data.py"), "data=parquet", "size=8b",
               f"data.path={folder}", f"data.interactions={log}", "data.items=items.parquet",
               "data.columns.user=member", "data.columns.timestamp=ts", "data.columns.event=kind",
               "data.columns.duration=seconds", "data.duration_unit=s", "data.item_columns.title=name",
               "data.item_columns.item=item_id", "data.item_columns.kind=", "data.item_columns.series_id=",
               "data.item_columns.episode=", f"data.sample_users={sample}", *settings, f"out={out}"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        peak = max(peak, _tree_rss(watched))      # the shard workers' memory counts too
        time.sleep(0.05)
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"prepare_data.py failed:\n{stderr[-2000:]}")
    users = next((line for line in stdout.splitlines() if line.startswith("users ")), "")
    return {"seconds": time.perf_counter() - started, "peak_gb": peak / 1e9, "users": users.split("|")[0].strip()}


RUNS = {
    "memory": ("whole log in memory (peer)", 0, ("data.shard_rows=0",)),
    "shards": ("whole log in shards (default)", 0, ()),
    "sample": ("sample, in shards", None, ()),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py logs", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,5000000", help="log sizes, comma-separated")
    parser.add_argument("--sample", type=float, default=0.1, help="data.sample_users of the sampled run")
    parser.add_argument("--format", default="parquet", choices=("parquet", "csv"), help="the log file's format")
    parser.add_argument("--order", default="user", choices=("user", "time"),
                        help="the log's row order: each user's rows together, or the whole log in time order")
    parser.add_argument("--runs", default="memory,shards,sample", help=f"which of {', '.join(RUNS)}, comma-separated")
    parser.add_argument("--settings", default="", help="more overrides for every run, space-separated")
    args = parser.parse_args(argv)
    runs = args.runs.split(",")
    print(f"log: {args.format}, rows in {args.order} order")
    print("| rows | log | run | time s | peak RSS GB | users |")
    print("|---|---|---|---|---|---|")
    shard_peaks = {}
    for rows in (int(r) for r in args.rows.split(",")):
        measured = {}
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            log = write_logs(folder, rows, fmt=args.format, order=args.order)
            for run in runs:
                name, sample, settings = RUNS[run]
                sample = args.sample if sample is None else sample
                m = prepare(folder, log, folder / run, sample, (*settings, *args.settings.split()))
                measured[run] = m
                shown = name.replace("sample", f"data.sample_users={args.sample:g}")
                print(f"| {rows:,} | {args.format} | {shown} | {m['seconds']:.1f} | {m['peak_gb']:.2f} | {m['users']} |",
                      flush=True)
        if "memory" in measured:
            for run in (r for r in runs if r != "memory"):
                print(f"ratio {run} / memory at {rows:,} rows: time {measured[run]['seconds'] / measured['memory']['seconds']:.2f}, "
                      f"peak RSS {measured[run]['peak_gb'] / measured['memory']['peak_gb']:.2f}", flush=True)
        if "shards" in measured:
            shard_peaks[rows] = measured["shards"]["peak_gb"]
    if len(shard_peaks) > 1:
        small, large = min(shard_peaks), max(shard_peaks)
        print(f"shards: peak RSS at {large:,} rows / at {small:,} rows = {shard_peaks[large] / shard_peaks[small]:.2f} "
              f"(rows x{large / small:g})")
    return 0
