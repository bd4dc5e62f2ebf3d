"""Own logs prepared in shards of users: the same examples, candidates, splits and popularity as the
in-memory path, whatever the number of shards; bad input named as before; nothing left behind."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lit_verbrec.config.schema import DataConfig, ExamplesConfig, SyntheticConfig
from lit_verbrec.data import csv_files, partition, shard_passes, tables
from lit_verbrec.data.draws import mix
from lit_verbrec.data.partition import id_hashes
from lit_verbrec.data.prepared_folder import read_prepared
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import DataError
from lit_verbrec.data.shard_passes import canonical_pass, partition_pass, work_folder
from lit_verbrec.data.sources import prepare
from lit_verbrec.data.synthetic import generate

EXAMPLES = ExamplesConfig(split="time", negatives="popularity", train_targets_per_user=2, history_len=12)


@pytest.fixture(scope="module")
def own_log(tmp_path_factory):
    """A synthetic log as teams keep one: a folder of monthly hive partitions with an extra column,
    two duplicate rows and a row on an item the catalog lacks."""
    folder = tmp_path_factory.mktemp("log")
    interactions, items = generate(SyntheticConfig(users=60, interactions_per_user=50, movies=150, series=15), 3)
    log = interactions.assign(device=np.where(np.arange(len(interactions)) % 3, "tv", "phone"))
    log = pd.concat([log, log.iloc[[5, 77]], log.iloc[[9]].assign(item="no-such-item")], ignore_index=True)
    for month, part in log.groupby(log["timestamp"].dt.strftime("%Y-%m")):
        (folder / "events" / f"month={month}").mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), folder / "events" / f"month={month}" / "part-0.parquet")
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), folder / "items.parquet")
    return folder, len(log)


def config(folder, **settings) -> DataConfig:
    return DataConfig(source="parquet", path=str(folder), interactions=settings.pop("interactions", "events"),
                      items="items.parquet", examples=EXAMPLES, workers=2, **settings)


def prepared(folder, out, **settings) -> dict:
    cfg = config(folder, **settings)
    summary = prepare(cfg, out, DataReport(), progress=False)
    assert json.loads((out / "summary.json").read_text()) == summary
    return {"summary": summary, "examples": pq.read_table(out / "examples.parquet").sort_by("example_id"),
            "items": pq.read_table(out / "items.parquet")}


def same_preparation(a: dict, b: dict) -> None:
    assert a["examples"].num_rows > 0 and a["examples"].equals(b["examples"])
    assert a["items"].equals(b["items"])
    drop = ("shards", "skipped")
    assert {k: v for k, v in a["summary"].items() if k not in drop} == {k: v for k, v in b["summary"].items() if k not in drop}
    # skip counts add up over shards; the first place named is the first within its shard
    assert ({k: v["count"] for k, v in a["summary"]["skipped"].items()}
            == {k: v["count"] for k, v in b["summary"]["skipped"].items()})


def test_one_shard_many_shards_and_the_in_memory_path_prepare_the_same(own_log, tmp_path, monkeypatch):
    folder, rows = own_log
    monkeypatch.setattr(tables, "BATCH_ROWS", 128)               # the log streamed in many batches,
    monkeypatch.setattr(partition, "PARTITION_CHUNK_ROWS", 700)  # partitioned in several chunks
    whole = prepared(folder, tmp_path / "memory", shard_rows=0)
    assert whole["summary"]["skipped"]["duplicate interactions"]["count"] == 2
    assert whole["summary"]["skipped"]["interactions on items missing from the catalog"]["count"] == 1
    assert "month" in whole["examples"].schema.field("history").type.value_type.names   # the extra columns ride along
    for shard_rows, shards in ((10 * rows, 1), (rows // 7, 8), (20, rows // 20 + 1)):    # the last: most shards empty
        sharded = prepared(folder, tmp_path / f"rows-{shard_rows}", shard_rows=shard_rows)
        assert sharded["summary"]["shards"] == shards
        same_preparation(sharded, whole)
        parts = sorted(p.name for p in (tmp_path / f"rows-{shard_rows}" / "examples.parquet").iterdir())
        assert 1 <= len(parts) <= min(shards, 60) and not list((tmp_path / f"rows-{shard_rows}").glob(".shards-*"))


def test_a_sampled_csv_log_is_the_same_sample_in_shards(tmp_path, own_log):
    folder, _ = own_log
    frame = pq.read_table(folder / "events").to_pandas().drop(columns="month")
    frame["timestamp"] = frame["timestamp"].astype("int64") // 10**9      # unix seconds, data.timestamp_format's default
    frame.to_csv(folder / "events.csv", index=False)
    whole = prepared(folder, tmp_path / "memory", interactions="events.csv", shard_rows=0, sample_users=0.5)
    sharded = prepared(folder, tmp_path / "shards", interactions="events.csv", shard_rows=300, sample_users=0.5)
    same_preparation(sharded, whole)
    users = set(whole["examples"]["user"].to_pylist())
    assert 15 < len(users) < 45 and sharded["summary"]["shards"] > 1


def test_a_bad_row_past_the_head_is_named_and_nothing_is_written(tmp_path, own_log, monkeypatch):
    folder, _ = own_log
    monkeypatch.setattr(tables, "HEAD_ROWS", 50)              # the bad row is found by the full pass
    monkeypatch.setattr(csv_files, "CSV_BLOCK_BYTES", 4096)   # in a later block of the stream
    frame = pq.read_table(folder / "events").to_pandas().drop(columns="month")
    frame["timestamp"] = frame["timestamp"].astype("int64") // 10**9
    frame["event"] = frame["event"].astype(object)
    frame.loc[2000, "event"] = "hover"
    frame.to_csv(folder / "bad.csv", index=False)
    with pytest.raises(DataError, match=re.escape("bad.csv line 2002, column 'event': unknown event 'hover'")):
        prepared(folder, tmp_path / "out", interactions="bad.csv", shard_rows=300)
    assert list((tmp_path / "out").iterdir()) == []


def test_own_logs_are_sharded_by_default_and_a_negative_shard_size_is_refused():
    assert DataConfig().shard_rows > 0
    with pytest.raises(ValueError, match="data.shard_rows"):
        DataConfig(shard_rows=-1)


def test_a_stopped_preparation_resumes_and_redoes_no_finished_shard(own_log, tmp_path):
    folder, rows = own_log
    out, settings = tmp_path / "out", {"shard_rows": rows // 7}
    work = work_folder(out)
    partition_pass(config(folder, **settings), work)
    for k in (0, 3):                       # two shards through pass 2, then the run stopped
        canonical_pass(config(folder, **settings), work, k)
    # mark shard 0's record: a redone shard 0 would lose the mark
    marker = json.loads((work / "canonical" / "0.json").read_text())
    marker["report"]["a mark left by this test"] = {"count": 1, "first": "shard 0"}
    (work / "canonical" / "0.json").write_text(json.dumps(marker))
    resumed = prepared(folder, out, **settings)
    assert resumed["summary"]["skipped"].pop("a mark left by this test")["count"] == 1
    same_preparation(resumed, prepared(folder, tmp_path / "memory", shard_rows=0))
    assert not work.exists()


def test_a_work_folder_of_other_settings_is_started_over(own_log, tmp_path):
    folder, rows = own_log
    out = tmp_path / "out"
    work = work_folder(out)
    partition_pass(config(folder, shard_rows=rows // 7, seed=1), work)
    canonical_pass(config(folder, shard_rows=rows // 7, seed=1), work, 0)
    marker = json.loads((work / "canonical" / "0.json").read_text())
    marker["report"]["a mark left by this test"] = {"count": 1, "first": "shard 0"}
    (work / "canonical" / "0.json").write_text(json.dumps(marker))
    again = prepared(folder, out, shard_rows=rows // 7)                       # seed 0: another preparation
    assert "a mark left by this test" not in again["summary"]["skipped"]
    same_preparation(again, prepared(folder, tmp_path / "memory", shard_rows=0))


def test_a_log_rewritten_in_place_is_not_resumed_from_the_old_shards(own_log, tmp_path):
    folder, rows = own_log
    log = tmp_path / "log"
    log.mkdir()
    (log / "items.parquet").write_bytes((folder / "items.parquet").read_bytes())
    whole = pq.read_table(folder / "events")
    pq.write_table(whole.slice(0, rows // 2), log / "events.parquet")
    cfg = DataConfig(source="parquet", path=str(log), interactions="events.parquet", items="items.parquet",
                     examples=EXAMPLES, shard_rows=rows // 7)
    first = partition_pass(cfg, work_folder(tmp_path / "out"))
    pq.write_table(whole, log / "events.parquet")           # the same name, the whole log now
    assert partition_pass(cfg, work_folder(tmp_path / "out")).rows > first.rows


def test_a_users_shard_hash_is_fnv1a_of_its_text_whatever_the_batch():
    def reference(text: str) -> int:                 # FNV-1a 64, written out from its definition
        h = 0xCBF29CE484222325
        for byte in text.encode():
            h = ((h ^ byte) * 0x100000001B3) % 2**64
        return h
    ids = ["u1", "member-000042", "", "héllo", "u1"]
    got = id_hashes(pa.array(ids + [None]))
    assert list(got[:5]) == list(mix(np.array([reference(t) for t in ids], dtype=np.uint64)))
    assert got[5] == got[2] and got[0] == got[4]                   # a missing id hashes as the empty one
    sliced = pa.chunked_array([pa.array(["x", "héllo", "u1"]).slice(1), pa.array(["member-000042"])])
    assert list(id_hashes(sliced)) == [got[3], got[0], got[1]]      # offsets of slices and chunks respected


def test_a_split_is_read_from_its_own_row_groups(own_log, tmp_path):
    folder, rows = own_log
    sharded = prepared(folder, tmp_path / "shards", shard_rows=rows // 3)
    whole = prepared(folder, tmp_path / "memory", shard_rows=0)
    for part in sorted((tmp_path / "shards" / "examples.parquet").iterdir()):
        meta = pq.ParquetFile(part).metadata
        column = meta.schema.to_arrow_schema().get_field_index("split")
        splits = [(meta.row_group(g).column(column).statistics.min, meta.row_group(g).column(column).statistics.max)
                  for g in range(meta.num_row_groups)]
        assert all(low == high for low, high in splits) and len(splits) >= 3      # one split per row group
        order = [low for low, _ in splits]
        assert order == sorted(order, key=["train", "val", "test"].index)
    for split in ("train", "val", "test"):
        got, _ = read_prepared(tmp_path / "shards", split)
        expected = whole["examples"].filter(pc.equal(whole["examples"]["split"], split))
        assert got.sort_by("example_id").equals(expected) and got.num_rows > 0
    assert sharded["examples"].equals(whole["examples"])


def test_a_part_file_holds_its_splits_in_order_in_row_groups_of_one_split(tmp_path, monkeypatch):
    monkeypatch.setattr(shard_passes, "EXAMPLE_ROW_GROUP", 8)
    split = ["train"] * 30 + ["val"] * 10 + ["test"] * 10
    table = pa.table({"example_id": [f"e{i}" for i in range(50)], "split": split})
    shard_passes._write_by_split(table, tmp_path / "part.parquet")
    meta = pq.ParquetFile(tmp_path / "part.parquet").metadata
    groups = [meta.row_group(g).column(1).statistics for g in range(meta.num_row_groups)]
    assert [(s.min, s.max, meta.row_group(g).num_rows) for g, s in enumerate(groups)] == [
        ("train", "train", 8), ("train", "train", 8), ("train", "train", 8), ("train", "train", 6),
        ("val", "val", 8), ("val", "val", 2), ("test", "test", 8), ("test", "test", 2)]
    assert pq.read_table(tmp_path / "part.parquet").equals(table)
    with pytest.raises(AssertionError, match="not grouped by split"):
        shard_passes._write_by_split(table.take(pa.array([0, 45, 1])), tmp_path / "mixed.parquet")
