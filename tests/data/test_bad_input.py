"""Bad input: every case either raises a DataError naming file, line and column, or is counted."""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lit_verbrec.config.schema import DataConfig, InteractionColumns
from lit_verbrec.data.canonical import finalize
from lit_verbrec.data.logs import read_logs
from lit_verbrec.data.movielens import read_movielens
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import DataError

HEADER = "user,item,timestamp,event,duration\n"
ITEMS = "item,title,year,genres,tags,kind,series_id,episode\nm1,Heat,1995,Crime,,movie,,\nm2,Up,2009,,,movie,,\n"


def setup(tmp_path, log: str | bytes, items: str = ITEMS, **kwargs) -> DataConfig:
    path = tmp_path / "log.csv"
    path.write_bytes(log) if isinstance(log, bytes) else path.write_text(log)
    (tmp_path / "items.csv").write_text(items)
    return DataConfig(source="parquet", path=str(tmp_path), interactions="log.csv", items="items.csv", **kwargs)


def raises(fragment: str):
    return pytest.raises(DataError, match=re.escape(fragment))


def test_missing_required_column(tmp_path):
    cfg = setup(tmp_path, "user,item,event,duration\nu,m1,play,\n")
    with raises("log.csv: missing column 'timestamp' (mapped from data.columns.timestamp); "
                "columns present: user, item, event, duration"):
        read_logs(cfg, DataReport())


def test_missing_optional_column_is_an_error_with_a_hint(tmp_path):
    cfg = setup(tmp_path, "user,item,timestamp,event\nu,m1,1700000000,play\n")
    with raises("log.csv: missing column 'duration' (mapped from data.columns.duration); "
                "set data.columns.duration='' if the file has none; columns present: user, item, timestamp, event"):
        read_logs(cfg, DataReport())


def test_missing_item_column(tmp_path):
    cfg = setup(tmp_path, HEADER + "u,m1,1700000000,play,\n", items="id,title\nm1,Heat\n")
    with raises("items.csv: missing column 'item' (mapped from data.item_columns.item)"):
        read_logs(cfg, DataReport())


def test_unparsable_timestamp_error(tmp_path):
    cfg = setup(tmp_path, HEADER + "u,m1,1700000000,play,\nu,m2,yesterday,play,\n")
    with raises("log.csv line 3, column 'timestamp': cannot parse timestamp 'yesterday' (data.timestamp_format=unix)"):
        read_logs(cfg, DataReport())


def test_unparsable_timestamp_skip(tmp_path):
    cfg = setup(tmp_path, HEADER + "u,m1,1700000000,play,\nu,m2,yesterday,play,\nv,m2,,play,\n", on_bad_row="skip")
    report = DataReport()
    data = read_logs(cfg, report)
    assert report.count("rows with unparsable timestamps") == 2
    assert report.skips["rows with unparsable timestamps"].first == "log.csv line 3, column 'timestamp': 'yesterday'"
    assert data.interactions.column("item").to_pylist() == ["m1"]


def test_unparsable_iso_timestamp_in_parquet_names_the_row(tmp_path):
    pq.write_table(pa.table({"user": ["u", "u"], "item": ["m1", "m1"], "ts": ["2024-01-01T10:00", "2024-13-01T10:00"]}),
                   tmp_path / "log.parquet")
    (tmp_path / "items.csv").write_text(ITEMS)
    cfg = DataConfig(source="parquet", path=str(tmp_path), interactions="log.parquet", items="items.csv",
                     timestamp_format="iso", columns=InteractionColumns(timestamp="ts", event="", duration=""))
    with raises("log.parquet row 2, column 'ts': cannot parse timestamp '2024-13-01T10:00' (data.timestamp_format=iso)"):
        read_logs(cfg, DataReport())


def test_line_numbers_count_blank_lines_and_multiline_cells(tmp_path):
    cfg = setup(tmp_path, HEADER + "u,m1,1700000000,play,\n\n\"u\nv\",m1,1700000000,play,\nw,m1,bad,play,\n")
    with raises("log.csv line 6, column 'timestamp': cannot parse timestamp 'bad'"):
        read_logs(cfg, DataReport())


def test_interactions_on_unknown_items_are_counted(tmp_path):
    cfg = setup(tmp_path, HEADER + "u,m1,1700000000,play,\nu,zz,1700000001,play,\nv,zz,1700000002,play,\n"
                          "v,yy,1700000003,play,\n")
    report = DataReport()
    data = read_logs(cfg, report)
    assert report.count("interactions on items missing from the catalog") == 3
    assert report.skips["interactions on items missing from the catalog"].first == "log.csv line 3 (item 'zz')"
    assert data.interactions.num_rows == 1


def test_duplicate_rows_are_counted(tmp_path):
    row = "u,m1,1700000000,play,5\n"
    cfg = setup(tmp_path, HEADER + row + "u,m1,1700000000,thumb_up,\n" + row + "u,m1,1700000000,play,7\n")
    report = DataReport()
    data = read_logs(cfg, report)
    assert report.count("duplicate interactions") == 2
    assert report.skips["duplicate interactions"].first == "log.csv line 4 (user 'u', item 'm1')"
    # the first copy is kept, with its duration
    assert data.interactions.column("duration").to_pylist() == [5.0, None]


def test_empty_file(tmp_path):
    with raises("log.csv: no rows"):
        read_logs(setup(tmp_path, b""), DataReport())


def test_header_only_file(tmp_path):
    with raises("log.csv: no rows"):
        read_logs(setup(tmp_path, HEADER), DataReport())


def test_header_only_items_file(tmp_path):
    with raises("items.csv: no rows"):
        read_logs(setup(tmp_path, HEADER + "u,m1,1700000000,play,\n", items="item,title\n"), DataReport())


def test_non_utf8_bytes_name_the_line(tmp_path):
    log = (HEADER + "u,m1,1700000000,play,\nu,m\xe92,1700000000,play,\n").encode("latin-1")
    with raises("log.csv line 3: bytes that are not valid utf-8 (b'\\xe9' at byte 60); "
                "set data.encoding=latin-1 if that is the file's encoding"):
        read_logs(setup(tmp_path, log), DataReport())


def test_negative_duration_error_and_skip(tmp_path):
    log = HEADER + "u,m1,1700000000,play,-5\nu,m2,1700000000,play,3\n"
    with raises("log.csv line 2, column 'duration': negative duration '-5'"):
        read_logs(setup(tmp_path, log), DataReport())
    report = DataReport()
    data = read_logs(setup(tmp_path, log, on_bad_row="skip"), report)
    assert report.count("rows with negative durations") == 1 and data.interactions.column("item").to_pylist() == ["m2"]


def test_non_numeric_duration(tmp_path):
    with raises("log.csv line 2, column 'duration': cannot parse duration '5 min' (data.duration_unit=min)"):
        read_logs(setup(tmp_path, HEADER + "u,m1,1700000000,play,5 min\n"), DataReport())


def test_unknown_event(tmp_path):
    with raises("log.csv line 3, column 'event': unknown event 'binge' (expected one of play, thumb_up"):
        read_logs(setup(tmp_path, HEADER + "u,m1,1700000000,play,\nu,m2,1700000000,binge,\n"), DataReport())


def test_earliest_bad_row_is_reported_and_skips_count_each_row_once(tmp_path):
    log = HEADER + "u,m1,1700000000,binge,\n,m1,x,play,\nu,m2,x,play,-1\nu,m2,1700000001,play,\n"
    with raises("log.csv line 2, column 'event': unknown event 'binge'"):
        read_logs(setup(tmp_path, log), DataReport())
    report = DataReport()
    data = read_logs(setup(tmp_path, log, on_bad_row="skip"), report)
    assert report.as_dict() == {
        "rows with empty user or item ids": {"count": 1, "first": "log.csv line 3, column 'user': ''"},
        "rows with unparsable timestamps": {"count": 1, "first": "log.csv line 4, column 'timestamp': 'x'"},
        "rows with unknown events": {"count": 1, "first": "log.csv line 2, column 'event': 'binge'"},
    }
    assert data.interactions.num_rows == 1


def test_duplicate_item_id_in_catalog(tmp_path):
    cfg = setup(tmp_path, HEADER + "u,m1,1700000000,play,\n", items=ITEMS + "m1,Heat again,1995,,,movie,,\n")
    with raises("items.csv line 4: duplicate item id 'm1' in the catalog (first at items.csv line 2)"):
        read_logs(cfg, DataReport())


def test_bad_year_in_catalog(tmp_path):
    cfg = setup(tmp_path, HEADER + "u,m1,1700000000,play,\n", items=ITEMS + "m3,Old,c. 1920,,,movie,,\n")
    with raises("items.csv line 4, column 'year': cannot parse whole number 'c. 1920'"):
        read_logs(cfg, DataReport())


def test_unsupported_suffix(tmp_path):
    cfg = DataConfig(source="parquet", path=str(tmp_path), interactions="log.json")
    with raises("log.json: unsupported file type '.json' (expected .parquet or .csv, or a folder of them)"):
        read_logs(cfg, DataReport())


def test_all_rows_on_unknown_items(tmp_path):
    with raises("log.csv: no interactions left: none is on an item of the catalog items.csv"):
        read_logs(setup(tmp_path, HEADER + "u,zz,1700000000,play,\n"), DataReport())


def test_finalize_rejects_empty_tables():
    items = pd.DataFrame({"item": ["a"], "title": ["A"], "year": [None], "genres": [[]], "tags": [[]],
                          "kind": ["movie"], "series_id": [None], "episode": [None]})
    interactions = pd.DataFrame(columns=["user", "item", "timestamp", "event", "duration"])
    with raises("synthetic log: no interactions"):
        finalize(interactions, items, DataReport(), "synthetic log")
    one = pd.DataFrame({"user": ["u"], "item": ["a"], "timestamp": [pd.Timestamp("2024-01-01")],
                        "event": ["play"], "duration": [None]})
    with raises("synthetic log: no items"):
        finalize(one, items.iloc[:0], DataReport(), "synthetic log")


def test_unrecognised_movielens_folder(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    (tmp_path / "notes.txt").write_text("hi")
    with raises(f"{tmp_path}: not a MovieLens folder: looked for u.data + u.item (ML-100K); "
                "ratings.dat + movies.dat (ML-1M); ratings.csv + movies.csv (ML-25M / latest); "
                "found: notes.txt, ratings.csv"):
        read_movielens(tmp_path, DataReport())


def test_movielens_ratings_on_missing_movies_are_counted(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n1::99::3::978300761\n2::99::4::978300762\n")
    (tmp_path / "movies.dat").write_bytes("10::Misérables, Les (1995)::Drama\n".encode("latin-1"))
    report = DataReport()
    data = read_movielens(tmp_path, report)
    # the rating of 4 on movie 99 is a play and a thumb: both are skipped
    assert report.count("interactions on items missing from the catalog") == 3
    assert report.skips["interactions on items missing from the catalog"].first == "ratings.dat line 2 (item '99')"
    assert data.interactions.num_rows == 2


def test_malformed_movielens_line(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t5\t978300760\n1\t10\tfive\t978300760\n")
    (tmp_path / "u.item").write_text("10|Heat (1995)|||" + "|0" * 19 + "\n")
    with pytest.raises(DataError, match=r"^u\.data: .*'five'"):
        read_movielens(tmp_path, DataReport())
