"""The tools as a user runs them: real subprocesses, small synthetic data."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["data.synthetic.users=150", "data.synthetic.interactions_per_user=40",
         "data.synthetic.movies=300", "data.synthetic.series=30"]


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / name), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    result = run_tool("prepare_data.py", *SMALL, f"out={out}")
    assert result.returncode == 0, result.stderr
    assert "users 150 (150 with examples) | examples train 150 val 150 test 150 | discovery share" in result.stdout
    assert "history window: 16 lines (data.examples.history_len, size=tiny;" in result.stdout
    return out


def test_prepare_data_writes_the_prepared_folder(prepared: Path):
    assert {p.name for p in prepared.iterdir()} == {"examples.parquet", "items.parquet", "summary.json", "config.yaml"}
    summary = json.loads((prepared / "summary.json").read_text())
    assert summary["examples"] == {"train": 150, "val": 150, "test": 150} and summary["history_len"] == 16
    assert 0.6 < summary["discovery_share_all"] < 0.95
    examples = pq.read_table(prepared / "examples.parquet")
    assert {"user", "target", "candidates", "is_discovery"} <= set(examples.column_names)
    assert "users: 150" in (prepared / "config.yaml").read_text()


def test_evaluate_prints_the_table_and_writes_results(prepared: Path, tmp_path: Path):
    result = run_tool("evaluate.py", f"data.prepared={prepared}", f"out={tmp_path}", "eval.bootstrap=200")
    assert result.returncode == 0, result.stderr
    assert "| lexical/template+metadata |" in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    paper = results["paper"]["rows"]                  # no eval.runs: only the template row can be scored
    assert list(paper) == ["template", "zero-shot", "action", "rewrite", "ranking reward", "untrained reasoner on template",
                           "untrained reasoner on rewrite text", "rewrite + trained reasoner", "reasoner trained on raw"]
    assert paper["untrained reasoner on template"] == {"unavailable": "needs a stage-2 run in eval.runs (its model, before training)"}
    assert paper["template"]["valid_ratio"] == 1.0 and paper["template"]["compression"] == 1.0
    assert paper["action"] == {"unavailable": "needs a stage-1 run with verbalizer.kind=action in eval.runs"}
    assert paper["ranking reward"] == {"unavailable": "needs a stage-1 run with reward.kind=rank in eval.runs"}
    assert all("unavailable" in r for name, r in paper.items() if name != "template")
    assert "| rewrite | unavailable: needs a stage-1 run with verbalizer.kind=rewrite in eval.runs |" in result.stdout
    results = results["baselines"]
    rows = results["rows"]
    assert set(rows) == {"random", "popularity", "lexical/template", "lexical/template+metadata", "lexical/taste-lines+metadata"}
    assert results["n"] == 150
    for r in rows.values():
        assert r["recall_low"] <= r["recall"] <= r["recall_high"]
        assert r["valid_ratio"] == 1.0
    assert rows["lexical/template"]["vs_reference_discovery"]["delta_pct"] == 0.0


def test_evaluate_rejects_an_unknown_system(prepared: Path):
    result = run_tool("evaluate.py", f"data.prepared={prepared}", "eval.rows=[random,lexical/templat]", "eval.reference=random")
    assert result.returncode == 2
    assert "unknown system 'lexical/templat'" in result.stderr and "did you mean 'lexical/template'" in result.stderr


def test_evaluate_names_a_missing_prepared_folder(tmp_path: Path):
    result = run_tool("evaluate.py", f"data.prepared={tmp_path}/nothing")
    assert result.returncode == 1
    assert "no examples.parquet" in result.stderr and "prepare_data.py" in result.stderr


CONFIG_TOOLS = ["prepare_data.py", "evaluate.py", "train.py", "submit.py", "plan.py", "export.py"]


@pytest.mark.parametrize("tool", CONFIG_TOOLS)
def test_unknown_key_exits_non_zero_with_a_suggestion(tool: str):
    result = run_tool(tool, "data.exmaples.history_len=5")
    assert result.returncode == 2, result.stderr
    assert "unknown key 'data.exmaples'" in result.stderr and "did you mean 'data.examples'" in result.stderr


@pytest.mark.parametrize("tool", ["train.py", "submit.py", "export.py"])   # the tools that load models
def test_wrong_type_exits_before_any_work(tool: str, tmp_path: Path):
    result = run_tool(tool, "verbalizer.grpo.group_size=many", f"run.root={tmp_path}")
    assert result.returncode == 2, result.stderr
    assert "verbalizer.grpo.group_size" in result.stderr
    assert not any(tmp_path.iterdir())          # nothing was prepared, loaded or written


def test_report_rejects_unknown_arguments(tmp_path: Path):
    result = run_tool("report.py", f"run={tmp_path}", "colour=blue")
    assert result.returncode == 2 and "unknown: colour" in result.stderr


@pytest.mark.parametrize("tool", ["prepare_data.py", "evaluate.py"])
def test_help_lists_groups_and_options(tool: str):
    result = run_tool(tool, "--help")
    assert result.returncode == 0
    assert "size={32b,8b,tiny}" in result.stdout and "data.examples.negatives" in result.stdout


def test_bench_data_prints_the_ratio():
    result = run_tool("bench.py", "data", "data.synthetic.users=100")
    assert result.returncode == 0, result.stderr
    assert "interactions/s" in result.stdout and "ratio: ours / naive time" in result.stdout
    assert "same example ids: True" in result.stdout


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_bench_logs_measures_memory_shards_and_sample_and_prints_their_ratios(fmt):
    sizes = "20000,40000" if fmt == "parquet" else "20000"          # the growth line once, from Parquet
    result = run_tool("bench.py", "logs", "--rows", sizes, "--sample", "0.25", "--format", fmt,
                      "--runs", "memory,shards,sample", "--settings", "data.shard_rows=5000 data.workers=2")
    assert result.returncode == 0, result.stderr
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| 20,000 |")]
    assert [r[1:3] for r in rows] == [[fmt, "whole log in memory (peer)"], [fmt, "whole log in shards (default)"],
                                      [fmt, "data.sample_users=0.25, in shards"]]
    memory, shards, sampled = (int(r[5].split()[1].replace(",", "")) for r in rows)       # "users N (...)"
    assert memory == shards == 200 and 25 < sampled < 75
    assert all(float(r[4]) > 0.05 for r in rows)                                # a real peak RSS, in GB
    for run in ("shards", "sample"):
        assert f"ratio {run} / memory at 20,000 rows: time " in result.stdout
    growth = re.search(r"shards: peak RSS at 40,000 rows / at 20,000 rows = \d\.\d\d \(rows x2\)", result.stdout)
    assert (growth is not None) == (fmt == "parquet")


def test_the_logs_benchmark_counts_the_memory_of_child_processes():
    import psutil

    from benchmarks.logs import _tree_rss

    child = subprocess.Popen([sys.executable, "-c", "import sys, time; block = bytearray(300 << 20); "
                              "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        me = psutil.Process()
        assert _tree_rss(me) - me.memory_info().rss > 300 << 20
    finally:
        child.kill()
        child.wait()


def test_bench_micro_batches_prints_both_and_the_ratios():
    result = run_tool("bench.py", "micro_batches", "--prompts", "3", "--group", "2", "--micro", "2", "--hidden", "32",
                      "--reps", "1")
    assert result.returncode == 0, result.stderr
    assert "ours: median" in result.stdout and "peer: median" in result.stdout
    ratio = float(re.search(r"positions (\d\.\d+)", result.stdout).group(1))
    assert 0 < ratio < 1   # fewer padded positions than padding every micro-batch to the step


def _write_movielens_100k(folder: Path, users: int = 30, movies: int = 200, per_user: int = 25) -> None:
    """A MovieLens-100K-format folder: tab-separated u.data, pipe-separated latin-1 u.item."""
    import random

    rng = random.Random(0)
    folder.mkdir()
    flags = lambda: "|".join(rng.choice("01") for _ in range(19))  # noqa: E731
    (folder / "u.item").write_bytes("\n".join(
        f"{m}|Film {m} (19{m % 90 + 10:02d})|01-Jan-1995||http://x|{flags()}" for m in range(1, movies + 1)
    ).encode("latin-1") + b"\n")
    lines = []
    for u in range(1, users + 1):
        for k, m in enumerate(rng.sample(range(1, movies + 1), per_user)):
            lines.append(f"{u}\t{m}\t{rng.randint(1, 5)}\t{880000000 + 1000 * k + u}")
    (folder / "u.data").write_text("\n".join(lines) + "\n")


def test_prepare_data_samples_users_and_says_so(tmp_path: Path, prepared: Path):
    out = tmp_path / "half"
    result = run_tool("prepare_data.py", *SMALL, "data.sample_users=0.5", f"out={out}")
    assert result.returncode == 0, result.stderr
    assert "users sampled: data.sample_users=0.5 (by a stable hash of the user id)" in result.stdout
    summary, full = (json.loads((folder / "summary.json").read_text()) for folder in (out, prepared))
    assert summary["sample_users"] == 0.5 and 0.3 * full["users"] < summary["users"] < 0.7 * full["users"]
    users = set(pq.read_table(out / "examples.parquet", columns=["user"])["user"].to_pylist())
    assert users < set(pq.read_table(prepared / "examples.parquet", columns=["user"])["user"].to_pylist())


def test_prepare_data_on_a_movielens_folder(tmp_path: Path):
    ml = tmp_path / "ml-100k"
    _write_movielens_100k(ml)
    out = tmp_path / "prepared"
    result = run_tool("prepare_data.py", "data=movielens", f"data.path={ml}", f"out={out}")
    assert result.returncode == 0, result.stderr
    assert "| discovery share 100.0% |" in result.stdout  # every MovieLens rating is a new movie
    examples = pq.read_table(out / "examples.parquet").to_pylist()
    assert len(examples) == 90  # 30 users x (train, val, test)
    ratings = {}
    for line in (ml / "u.data").read_text().splitlines():
        user, movie, *_ = line.split("\t")
        ratings.setdefault(user, set()).add(movie)
    for row in examples:
        assert len(set(row["candidates"])) == 10 and row["target"] in row["candidates"]
        negatives = set(row["candidates"]) - {row["target"]}
        assert not negatives & ratings[row["user"]]


def test_prepare_data_reports_bad_input_with_file_and_line(tmp_path: Path):
    ml = tmp_path / "ml-100k"
    _write_movielens_100k(ml)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "events.csv").write_text("user,item,timestamp\nu1,1,1000\nu1,2,yesterday\n")
    # a whole catalog: it is read and checked before the log (a catalog error would come first)
    (logs / "items.csv").write_text("item,title,year,genres,tags,kind,series_id,episode\n1,A,,,,,,\n2,B,,,,,,\n")
    result = run_tool("prepare_data.py", "data=parquet", f"data.path={logs}", "data.interactions=events.csv",
                      "data.items=items.csv", "data.columns.event=", "data.columns.duration=")
    assert result.returncode == 1
    assert "events.csv line 3, column 'timestamp'" in result.stderr and "yesterday" in result.stderr
