"""Bad input is reported before the full read of the log where it can be, and a prepared folder's
history window is checked against the run's (data/tables.py read_head, data/logs.py read_logs,
data/sources.py check_history_window)."""

from __future__ import annotations

import json
import re
import threading
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lit_verbrec.config.compose import compose
from lit_verbrec.config.schema import DataConfig, InteractionColumns
from lit_verbrec.data import logs, tables
from lit_verbrec.data.logs import read_logs
from lit_verbrec.data.prepared_folder import check_history_window
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import DataError
from lit_verbrec.data.sources import prepare
from lit_verbrec.training.run import RunPaths, prepared_folder

ITEMS = "item,title,year,genres,tags,kind,series_id,episode\nm1,Heat,1995,Crime,,movie,,\nm2,Up,2009,,,movie,,\n"
HEAD = 5   # rows checked before the full read in these tests


@pytest.fixture
def full_reads(monkeypatch) -> list[str]:
    """Names of the files read whole, with the head cut to HEAD rows."""
    names: list[str] = []
    whole = logs.read_table

    def spy(table, encoding, keep=None):
        names.append(table.name)
        return whole(table, encoding, keep)

    monkeypatch.setattr(logs, "read_table", spy)
    monkeypatch.setattr(tables, "HEAD_ROWS", HEAD)
    return names


def log_rows(n: int, bad_at: int | None = None) -> list[dict]:
    return [{"user": f"u{i % 7}", "item": "m1" if i % 2 else "m2", "timestamp": str(1_700_000_000 + 60 * i),
             "event": "hover" if i == bad_at else "play", "duration": "30"} for i in range(n)]


def write_csv(tmp_path, rows: list[dict], **kwargs) -> DataConfig:
    pd.DataFrame(rows).to_csv(tmp_path / "log.csv", index=False)
    (tmp_path / "items.csv").write_text(ITEMS)
    return DataConfig(source="parquet", path=str(tmp_path), interactions="log.csv", items="items.csv",
                      timestamp_format="unix", **kwargs)


def test_a_missing_log_column_is_reported_from_the_head(tmp_path, full_reads):
    cfg = write_csv(tmp_path, log_rows(50), columns=InteractionColumns(user="member"))
    with pytest.raises(DataError, match=re.escape("log.csv: missing column 'member' (mapped from data.columns.user)")):
        read_logs(cfg, DataReport())
    assert full_reads == ["items.csv"]           # the catalog, never the whole log


def test_a_bad_row_in_the_head_gives_the_full_reads_message_before_it(tmp_path, full_reads):
    cfg = write_csv(tmp_path, log_rows(50, bad_at=2))
    with pytest.raises(DataError, match=re.escape("log.csv line 4, column 'event': unknown event 'hover'")):
        read_logs(cfg, DataReport())
    assert full_reads == ["items.csv"]


def test_a_bad_row_past_the_head_is_found_by_the_full_read(tmp_path, full_reads):
    cfg = write_csv(tmp_path, log_rows(50, bad_at=40))
    with pytest.raises(DataError, match=re.escape("log.csv line 42, column 'event': unknown event 'hover'")):
        read_logs(cfg, DataReport())
    assert full_reads == ["items.csv", "log.csv"]


def test_with_skip_the_head_counts_nothing_and_the_full_read_counts_each_bad_row_once(tmp_path, full_reads):
    cfg = write_csv(tmp_path, log_rows(50, bad_at=2), on_bad_row="skip")
    report = DataReport()
    data = read_logs(cfg, report)
    assert report.as_dict()["rows with unknown events"]["count"] == 1
    assert data.interactions.num_rows < 50


def test_a_catalog_error_comes_before_any_read_of_the_log(tmp_path, full_reads, monkeypatch):
    cfg = write_csv(tmp_path, log_rows(50))
    (tmp_path / "items.csv").write_text("item,name\nm1,Heat\n")
    heads: list[str] = []
    monkeypatch.setattr(logs, "read_head", lambda table, encoding: heads.append(table.name))
    with pytest.raises(DataError, match=re.escape("items.csv: missing column 'title'")):
        read_logs(cfg, DataReport())
    assert full_reads == ["items.csv"] and heads == []


def test_a_parquet_head_is_its_first_rows(tmp_path, full_reads):
    rows = log_rows(50, bad_at=3)
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "log.parquet", row_group_size=10)
    (tmp_path / "items.csv").write_text(ITEMS)
    cfg = DataConfig(source="parquet", path=str(tmp_path), interactions="log.parquet", items="items.csv",
                     timestamp_format="unix")
    with pytest.raises(DataError, match=re.escape("log.parquet row 4, column 'event': unknown event 'hover'")):
        read_logs(cfg, DataReport())
    assert full_reads == ["items.csv"]
    head, label = tables.read_head(tables.locate(tmp_path, "log.parquet"), "utf-8")
    assert label == "row" and head["_row"].tolist() == [1, 2, 3, 4, 5] and head["event"].tolist()[3] == "hover"


def test_a_csv_head_cut_inside_a_multiline_cell_leaves_it_to_the_full_read(tmp_path, full_reads):
    rows = log_rows(12)
    rows[4]["note"] = "two\nlines"                # the cut after HEAD lines falls inside this cell
    cfg = write_csv(tmp_path, rows)
    head, _ = tables.read_head(tables.locate(tmp_path, "log.csv"), "utf-8")
    # header + HEAD lines end inside row 4's cell; that record is dropped: it may continue past the cut
    assert head["_row"].tolist() == [2, 3, 4, 5] and head["note"].fillna("").tolist() == [""] * 4
    data = read_logs(cfg, DataReport())
    assert data.interactions.num_rows == 12 and full_reads == ["items.csv", "log.csv"]


def test_a_run_refuses_a_folder_cut_to_another_window(tmp_path):
    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / "examples.parquet").write_bytes(b"")            # prepared_folder only checks it is there
    (folder / "summary.json").write_text(json.dumps({"history_len": 16}))
    cfg = compose(["size=8b", f"data.prepared={folder}", f"run.root={tmp_path}"])
    with pytest.raises(DataError) as err:
        prepared_folder(cfg, RunPaths.of(cfg))
    message = str(err.value)
    assert "prepared with a 16-line history window, but this run (size=8b) expects 100" in message
    assert "prepare it again with size=8b" in message and "data.examples.history_len=16" in message
    accepted = compose(["size=8b", f"data.prepared={folder}", f"run.root={tmp_path}", "data.examples.history_len=16"])
    assert prepared_folder(accepted, RunPaths.of(accepted)) == folder


def test_a_folder_without_a_recorded_window_is_taken_as_it_is(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"users": 3}))
    check_history_window(tmp_path, 100, "8b")                   # no error
    check_history_window(tmp_path / "nowhere", 100, "8b")       # no summary at all: no error


def test_a_rank_other_than_0_waits_for_rank_0s_preparation(tmp_path, monkeypatch):
    cfg = compose([f"run.root={tmp_path}", "data.synthetic.users=30", "data.synthetic.interactions_per_user=30"])
    for name, value in {"LOCAL_RANK": "1", "RANK": "1", "WORLD_SIZE": "2"}.items():   # rank 1 of a torchrun-style job
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    paths = RunPaths.of(cfg)
    got: dict = {}
    waiter = threading.Thread(target=lambda: got.setdefault("folder", prepared_folder(cfg, paths, poll_s=0.05)))
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive() and not (paths.run / "data").exists()      # waiting, not preparing
    prepare(cfg.data, paths.run / "data", DataReport())                 # what rank 0 does
    waiter.join(timeout=10)
    assert got["folder"] == paths.run / "data"
