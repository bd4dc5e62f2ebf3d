"""The tools as a user runs them: real subprocesses, small synthetic data."""

from __future__ import annotations

import json
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
    return out


def test_prepare_data_writes_the_prepared_folder(prepared: Path):
    assert {p.name for p in prepared.iterdir()} == {"examples.parquet", "items.parquet", "summary.json", "config.yaml"}
    summary = json.loads((prepared / "summary.json").read_text())
    assert summary["examples"] == {"train": 150, "val": 150, "test": 150}
    assert 0.6 < summary["discovery_share_all"] < 0.95
    examples = pq.read_table(prepared / "examples.parquet")
    assert {"user", "target", "candidates", "is_discovery"} <= set(examples.column_names)
    assert "users: 150" in (prepared / "config.yaml").read_text()


def test_evaluate_prints_the_table_and_writes_results(prepared: Path, tmp_path: Path):
    result = run_tool("evaluate.py", f"data.prepared={prepared}", f"out={tmp_path}", "eval.bootstrap=200")
    assert result.returncode == 0, result.stderr
    assert "| lexical/template+metadata |" in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
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


@pytest.mark.parametrize("tool", ["prepare_data.py", "evaluate.py"])
def test_unknown_key_exits_non_zero_with_a_suggestion(tool: str):
    result = run_tool(tool, "data.exmaples.history_len=5")
    assert result.returncode == 2
    assert "unknown key 'data.exmaples'" in result.stderr and "did you mean 'data.examples'" in result.stderr


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
