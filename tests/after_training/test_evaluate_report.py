"""tools/evaluate.py fills the paper's nine rows from finished runs; tools/report.py renders a run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from finished_runs import run_tool  # noqa: E402

pytestmark = pytest.mark.xdist_group("after_training")   # the finished tiny runs (conftest.py) are built once, on one pytest-xdist worker


def test_paper_rows_from_two_runs_each_against_its_own_readers_template(qlora_run, rewrite_run, tmp_path):
    result = run_tool("evaluate.py", f"data.prepared={qlora_run / 'data'}", f"eval.runs=[{qlora_run},{rewrite_run}]",
                      "eval.max_examples=24", "eval.bootstrap=100", "eval.zero_shot_max_new_tokens=8", f"out={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    paper = json.loads((tmp_path / "results.json").read_text())["paper"]
    stage2 = ["untrained reasoner on template", "untrained reasoner on action text", "action + trained reasoner",
              "reasoner trained on raw"]
    assert list(paper["rows"]) == ["template", "zero-shot", "action", "rewrite", "ranking reward", *stage2]
    # neither run was trained with reward.kind=rank: the row says which run would fill it
    assert paper["rows"].pop("ranking reward") == {"unavailable": "needs a stage-1 run with reward.kind=rank in eval.runs"}
    # like for like: the oracle's rows against the oracle on the template, the stage-2 reasoner's
    # against the same model on the template before training
    assert paper["references"] == {**{n: "template" for n in ("template", "zero-shot", "action", "rewrite", "ranking reward")},
                                   **{n: "untrained reasoner on template" for n in stage2}}
    assert {paper["rows"][n]["vs_reference_discovery"]["against"] for n in stage2} == {"untrained reasoner on template"}
    own = paper["rows"]["untrained reasoner on template"]["vs_reference_discovery"]
    assert own["delta_pct"] in (0.0, None)                                   # itself (None: it found no discovery target)
    for name, row in paper["rows"].items():
        assert "unavailable" not in row, name
        assert row["recall_low"] <= row["recall"] <= row["recall_high"] and 0 <= row["valid_ratio"] <= 1
        assert row["compression"] >= 0 and "vs_reference_discovery" in row   # 0: a verbalizer that drops every line
    assert paper["rows"]["reasoner trained on raw"]["compression"] == 1.0     # it reads the template
    assert set(paper["examples"][0]) == {"template", "zero-shot", "action", "rewrite"}
    assert "## Table 1" in result.stdout and "| action + trained reasoner |" in result.stdout
    assert "vs the same reasoner on the template" in result.stdout


def test_report_renders_plots_and_tables(qlora_run, tmp_path):
    result = run_tool("report.py", f"run={qlora_run}", f"out={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    page = (tmp_path / "index.html").read_text()
    for name in ("verbalizer-reward_mean", "verbalizer-reward_accuracy", "verbalizer-reward_length",
                 "verbalizer-reward_compression", "verbalizer-train_kl", "verbalizer-train_clip_fraction",
                 "reasoner-reward_mean", "verbalizer-probe_enrich", "verbalizer-probe_keep"):
        image = tmp_path / f"{name}.png"
        assert f'src="{name}.png"' in page
        with Image.open(image) as img:
            assert img.size[0] > 100 and img.size[1] > 100
            assert len(set(img.convert("L").getdata())) > 2     # not a blank canvas
    assert "trained action verbalizer" in page and "Stage reasoner" in page


def test_predict_answers_with_the_trained_reasoner_or_the_oracle(qlora_run, tmp_path):
    """tools/predict.py on transformers: the action verbalizer's text and the choice reasoner's answer
    (the engine vLLM serves is tested in tests/training/test_vllm_stages.py)."""
    import pyarrow.parquet as pq

    result = run_tool("predict.py", f"run={qlora_run}", "predict.max_examples=5", "predict.chunk=3", f"out={tmp_path / 'a'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {tmp_path / 'a'}/part-*.parquet" in result.stdout
    table = pq.read_table(tmp_path / "a")
    assert table.num_rows == 5 and len(list((tmp_path / "a").glob("part-*.parquet"))) == 2
    assert set(table["verbalizer"].to_pylist()) == {"action"}
    assert set(table["reasoner"].to_pylist()) == {"trained reasoner (hf)"}
    assert all(0 <= i < 10 for i in table["answer_index"].to_pylist())   # choice answers are always valid
    oracle = run_tool("predict.py", f"run={qlora_run}", "predict.max_examples=5", "predict.reasoner=oracle",
                      f"out={tmp_path / 'b'}")
    assert oracle.returncode == 0, oracle.stderr[-3000:]
    by_oracle = pq.read_table(tmp_path / "b").sort_by("example_id")
    assert set(by_oracle["reasoner"].to_pylist()) == {"oracle (lexical)"}
    assert by_oracle["verbalization"].equals(table.sort_by("example_id")["verbalization"])  # same greedy verbalizer
    missing = run_tool("predict.py", f"run={qlora_run}", f"predict.input={tmp_path / 'nowhere'}", f"out={tmp_path / 'c'}")
    assert missing.returncode == 1 and "no examples.parquet" in missing.stderr and str(tmp_path / "nowhere") in missing.stderr
