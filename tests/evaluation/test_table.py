"""score_rows: each row's Delta is taken against its own reference row, and the table says so."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from lit_verbrec.config.schema import EvalConfig
from lit_verbrec.evaluation.paper import ordering_line, stage2_ordering
from lit_verbrec.evaluation.table import markdown_table, score_rows


def test_each_row_is_compared_with_the_template_of_its_own_reader():
    target = np.zeros(20, dtype=np.int64)
    examples = pa.table({"target_index": target, "is_discovery": [True] * 20, "split": ["test"] * 20})
    hits = lambda k: np.where(np.arange(20) < k, 0, 1)            # noqa: E731  right on the first k examples
    preds = {"oracle on template": hits(10), "oracle on text": hits(15),
             "reasoner on template": hits(4), "reasoner on text": hits(6)}
    cfg = EvalConfig(bootstrap=200, reference="random", rows=["random"])
    table = score_rows(examples, list(preds), preds, {}, cfg, 0, "oracle on template",
                       references={"reasoner on template": "reasoner on template", "reasoner on text": "reasoner on template"})
    rows = table["rows"]
    assert rows["oracle on text"]["vs_reference_discovery"]["delta_pct"] == pytest.approx(50.0)             # 15 / 10
    assert rows["reasoner on text"]["vs_reference_discovery"]["delta_pct"] == pytest.approx(50.0)           # 6 / 4, not 6 / 10
    assert rows["reasoner on text"]["vs_reference_discovery"]["against"] == "reasoner on template"
    assert table["references"]["oracle on text"] == "oracle on template"
    text = markdown_table(table, cfg)
    assert "vs the same reasoner on the template" in text and "+50.0" in text and "vs reasoner on template" in text


def test_one_reference_keeps_the_plain_header():
    examples = pa.table({"target_index": [0, 0], "is_discovery": [True, True], "split": ["test", "test"]})
    preds = {"a": np.array([0, 1]), "b": np.array([0, 0])}
    cfg = EvalConfig(bootstrap=100, reference="random", rows=["random"])
    text = markdown_table(score_rows(examples, ["a", "b"], preds, {}, cfg, 0, "a"), cfg)
    assert "Δ% discovery vs a (" in text and " vs a |" not in text


def test_the_stage2_ordering_holds_only_above_both_intervals():
    """Trained on the verbalized text vs untrained on it and vs trained on the raw template."""
    n = 400
    examples = pa.table({"target_index": np.zeros(n, dtype=np.int64), "is_discovery": [True] * n, "split": ["test"] * n})
    hits = lambda k: np.where(np.arange(n) < k, 0, 1)            # noqa: E731  right on the first k examples
    names = ["untrained reasoner on action text", "action + trained reasoner", "reasoner trained on raw"]
    cfg = EvalConfig(bootstrap=300, reference="random", rows=["random"])

    def ordering(untrained: int, trained: int, raw: int):
        preds = dict(zip(names, (hits(untrained), hits(trained), hits(raw))))
        return stage2_ordering(score_rows(examples, names, preds, {}, cfg, 0, names[0])["rows"])

    holds = ordering(40, 120, 50)
    assert holds["holds"] and holds["discovery"]["trained"][0] == pytest.approx(0.30)
    line = ordering_line(holds)
    assert line.startswith("Reasoner learned from the verbalized text (") and line.endswith("): **yes**")
    assert "trained 30.0 [" in line and "untrained reasoner on that text 10.0 [" in line
    assert not ordering(40, 120, 115)["holds"]                   # the raw-template reasoner is as good
    assert not ordering(115, 120, 40)["holds"]                   # training did not move it beyond its interval
    assert ordering_line(ordering(40, 120, 115)).endswith("**no**")
    unscored = score_rows(examples, names, {names[0]: hits(1), names[1]: hits(2)}, {names[2]: "no raw run"}, cfg, 0, names[0])
    assert stage2_ordering(unscored["rows"]) is None
