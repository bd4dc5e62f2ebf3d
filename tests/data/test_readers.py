"""Readers on well-formed input: MovieLens in its three layouts, generic CSV/Parquet logs, finalize."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lit_verbrec.config.schema import DataConfig, InteractionColumns, ItemColumns
from lit_verbrec.data.canonical import finalize
from lit_verbrec.data.logs import read_logs
from lit_verbrec.data.movielens import read_movielens
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import INTERACTIONS, ITEMS

T0 = 978300760  # 2000-12-31 22:12:40 UTC


def flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(19))


def write_100k(folder, genre_file: bool) -> None:
    (folder / "u.data").write_text(f"2\t10\t5\t{T0 + 5}\n1\t20\t3\t{T0 + 9}\n1\t10\t4\t{T0}\n")
    lines = [f"10|Toy Story (1995)|01-Jan-1995||http://x|{flags(3, 4, 5)}",
             f"20|Misérables, Les (1995)|01-Jan-1995||http://y|{flags(8, 12)}",
             f"30|unknown||||{flags(0)}"]
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    if genre_file:
        names = ["unknown", "Action", "Adventure", "Animation", "Kids", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
                 "Thriller", "War", "Western"]
        (folder / "u.genre").write_text("".join(f"{n}|{i}\n" for i, n in enumerate(names)) + "\n")


def test_movielens_100k(tmp_path):
    write_100k(tmp_path, genre_file=False)
    report = DataReport()
    data = read_movielens(tmp_path, report)
    assert data.interactions.schema == INTERACTIONS and data.items.schema == ITEMS
    rows = data.interactions.to_pylist()
    assert [(r["user"], r["item"], r["event"]) for r in rows] == [
        ("1", "10", "play"), ("1", "10", "thumb_up"), ("1", "20", "play"), ("2", "10", "play"), ("2", "10", "thumb_up")]
    assert rows[0]["timestamp"] == datetime(2000, 12, 31, 22, 12, 40)
    assert rows[1]["timestamp"] == rows[0]["timestamp"]
    assert all(r["duration"] is None for r in rows)
    items = data.items.to_pylist()
    assert [(i["item"], i["title"], i["year"]) for i in items] == [
        ("10", "Toy Story", 1995), ("20", "Misérables, Les", 1995), ("30", "unknown", None)]
    assert [i["genres"] for i in items] == [["Animation", "Children's", "Comedy"], ["Drama", "Musical"], []]
    assert {i["kind"] for i in items} == {"movie"} and report.skips == {}


def test_movielens_100k_genre_names_from_u_genre(tmp_path):
    write_100k(tmp_path, genre_file=True)
    assert read_movielens(tmp_path, DataReport()).items.column("genres").to_pylist()[0] == ["Animation", "Kids", "Comedy"]


def test_movielens_1m(tmp_path):
    (tmp_path / "ratings.dat").write_text(f"1::10::5::{T0}\n1::30::4::{T0 - 60}\n2::20::2::{T0}\n1::20::1::{T0}\n")
    (tmp_path / "movies.dat").write_bytes(
        "10::Toy Story (1995)::Animation|Children's|Comedy\n20::Misérables, Les (1995)::Drama|Musical\n"
        "30::Seven (Se7en) (1995)::Crime|Thriller\n".encode("latin-1"))
    data = read_movielens(tmp_path, DataReport())
    got = [(r["user"], r["item"], r["event"]) for r in data.interactions.to_pylist()]
    # user 1: the earlier 30 first; at T0 the source order 10 (play, thumb), 20 is kept.
    assert got == [("1", "30", "play"), ("1", "30", "thumb_up"), ("1", "10", "play"), ("1", "10", "thumb_up"),
                   ("1", "20", "play"), ("2", "20", "play")]
    events = data.interactions.column("event").to_pylist()
    assert events.count("play") == 4 and events.count("thumb_up") == 2
    items = {i["item"]: i for i in data.items.to_pylist()}
    assert items["20"]["title"] == "Misérables, Les" and items["30"]["title"] == "Seven (Se7en)"
    assert items["30"]["year"] == 1995 and items["30"]["genres"] == ["Crime", "Thriller"]


def test_movielens_25m_with_tags(tmp_path):
    (tmp_path / "ratings.csv").write_text(
        f"userId,movieId,rating,timestamp\n7,1,4.5,{T0}\n7,2,3.5,{T0 + 1}\n8,3,4.0,{T0}\n")
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,"American President, The (1995)",Comedy|Drama|Romance\n'
        "2,Untitled Project,(no genres listed)\n3,Big Bang Theory (2007-),Comedy\n", encoding="utf-8")
    tag_rows = ["1,1,Funny,1", "2,1,funny ,1", "3,1,witty,1", "1,1,Clever,1", "1,2,  ,1"]
    tag_rows += [f"{u},3,t{k:02d},1" for k in range(12) for u in range(1 if k % 2 else 2)]
    (tmp_path / "tags.csv").write_text("userId,movieId,tag,timestamp\n" + "\n".join(tag_rows) + "\n")
    data = read_movielens(tmp_path, DataReport())
    events = data.interactions.column("event").to_pylist()
    assert events == ["play", "thumb_up", "play", "play", "thumb_up"]
    assert data.interactions.column("user").to_pylist() == ["7", "7", "7", "8", "8"]
    items = {i["item"]: i for i in data.items.to_pylist()}
    assert (items["1"]["title"], items["1"]["year"]) == ("American President, The", 1995)
    assert items["1"]["genres"] == ["Comedy", "Drama", "Romance"] and items["2"]["genres"] == []
    assert (items["3"]["title"], items["3"]["year"]) == ("Big Bang Theory (2007-)", None)
    # funny x2 first, then the single ones alphabetically; empty tags dropped.
    assert items["1"]["tags"] == ["funny", "clever", "witty"] and items["2"]["tags"] == []
    assert items["3"]["tags"] == ["t00", "t02", "t04", "t06", "t08", "t10", "t01", "t03", "t05", "t07"]


def logs_config(tmp_path, **kwargs) -> DataConfig:
    return DataConfig(source="parquet", path=str(tmp_path), **kwargs)


def write_items_csv(tmp_path, name="items.csv") -> None:
    (tmp_path / name).write_text("item,title,year,genres,tags,kind,series_id,episode\n"
                                 "m1,Heat,1995,Crime | Drama,heist,movie,,\n"
                                 "e1,Pilot,,Drama,,series,s1,1\n")


def test_csv_logs_with_column_mapping_event_map_and_extras(tmp_path):
    (tmp_path / "log.csv").write_text("uid,vid,ts,action,secs,device\n"
                                      "007,m1,1700000100,watch,600,tv\n"
                                      "007,e1,1700000000,like,,phone\n"
                                      "2,m1,1700000000,thumb_up,,tv\n")
    write_items_csv(tmp_path)
    cfg = logs_config(tmp_path, interactions="log.csv", items="items.csv", duration_unit="s",
                      columns=InteractionColumns(user="uid", item="vid", timestamp="ts", event="action", duration="secs"),
                      event_map={"watch": "play", "like": "thumb_up"})
    data = read_logs(cfg, DataReport())
    assert data.interactions.schema.names == [*INTERACTIONS.names, "device"]
    rows = data.interactions.to_pylist()
    assert [(r["user"], r["item"], r["event"], r["duration"], r["device"]) for r in rows] == [
        ("007", "e1", "thumb_up", None, "phone"), ("007", "m1", "play", 10.0, "tv"), ("2", "m1", "thumb_up", None, "tv")]
    assert rows[0]["timestamp"] == datetime(2023, 11, 14, 22, 13, 20)
    items = data.items.to_pylist()
    assert items[0] == {"item": "m1", "title": "Heat", "year": 1995, "genres": ["Crime", "Drama"], "tags": ["heist"],
                        "kind": "movie", "series_id": None, "episode": None}
    assert items[1] == {"item": "e1", "title": "Pilot", "year": None, "genres": ["Drama"], "tags": [],
                        "kind": "series", "series_id": "s1", "episode": 1}


def test_absent_optional_columns(tmp_path):
    (tmp_path / "log.csv").write_text("user,item,timestamp\nu,a,1700000000\n")
    (tmp_path / "items.csv").write_text("id,name\na,Alpha\n")
    cfg = logs_config(tmp_path, interactions="log.csv", items="items.csv",
                      columns=InteractionColumns(event="", duration=""),
                      item_columns=ItemColumns(item="id", title="name", year="", genres="", tags="", kind="",
                                               series_id="", episode=""))
    data = read_logs(cfg, DataReport())
    assert data.interactions.to_pylist()[0]["event"] == "play" and data.interactions.to_pylist()[0]["duration"] is None
    assert data.items.to_pylist() == [{"item": "a", "title": "Alpha", "year": None, "genres": [], "tags": [],
                                       "kind": "movie", "series_id": None, "episode": None}]


def test_parquet_logs_keep_types_and_lists(tmp_path):
    pq.write_table(pa.table({"user": [1, 2], "item": [10, 10], "timestamp": [1_700_000_000_500, 1_700_000_001_999],
                             "event": ["play", "trailer"], "duration": [90_000.0, None]}), tmp_path / "log.parquet")
    pq.write_table(pa.table({"item": ["10"], "title": ["Ten"], "year": pa.array([None], pa.int64()),
                             "genres": [["Drama", "War"]], "tags": [None], "kind": ["movie"],
                             "series_id": pa.array([None], pa.string()), "episode": pa.array([None], pa.int64())}),
                   tmp_path / "items.parquet")
    cfg = logs_config(tmp_path, interactions="log.parquet", timestamp_format="unix_ms", duration_unit="ms")
    data = read_logs(cfg, DataReport())
    rows = data.interactions.to_pylist()
    assert [(r["user"], r["event"], r["duration"]) for r in rows] == [("1", "play", 1.5), ("2", "trailer", None)]
    assert [r["timestamp"] for r in rows] == [datetime(2023, 11, 14, 22, 13, 20), datetime(2023, 11, 14, 22, 13, 21)]
    assert data.items.to_pylist()[0]["genres"] == ["Drama", "War"] and data.items.to_pylist()[0]["tags"] == []


@pytest.mark.parametrize(("fmt", "cell"), [
    ("unix", "1700000000"), ("unix", "1700000000.9"), ("unix_ms", "1700000000123"),
    ("iso", "2023-11-14T22:13:20"), ("iso", "2023-11-14 22:13:20+02:00"), ("iso", "2023-11-14T22:13:20Z"),
    ("%d/%m/%Y %H:%M:%S", "14/11/2023 22:13:20"),
])
def test_timestamp_formats(tmp_path, fmt, cell):
    (tmp_path / "log.csv").write_text(f"user,item,timestamp,event,duration\nu,m1,{cell},play,\n")
    write_items_csv(tmp_path)
    data = read_logs(logs_config(tmp_path, interactions="log.csv", items="items.csv", timestamp_format=fmt), DataReport())
    # Offsets are dropped keeping the local clock reading; fractions of a second are cut.
    assert data.interactions.column("timestamp").to_pylist() == [datetime(2023, 11, 14, 22, 13, 20)]


@pytest.mark.parametrize(("unit", "cell", "minutes"), [("min", "42.5", 42.5), ("s", "90", 1.5), ("ms", "30000", 0.5),
                                                       ("min", "NaN", None), ("min", "0", 0.0)])
def test_duration_units(tmp_path, unit, cell, minutes):
    (tmp_path / "log.csv").write_text(f"user,item,timestamp,event,duration\nu,m1,1700000000,play,{cell}\n")
    write_items_csv(tmp_path)
    data = read_logs(logs_config(tmp_path, interactions="log.csv", items="items.csv", duration_unit=unit), DataReport())
    assert data.interactions.column("duration").to_pylist() == [minutes]


def test_csv_latin1_encoding(tmp_path):
    (tmp_path / "log.csv").write_text("user,item,timestamp\nu,m1,1700000000\n")
    cfg = logs_config(tmp_path, interactions="log.csv", items="items.csv", encoding="latin-1",
                      columns=InteractionColumns(event="", duration=""),
                      item_columns=ItemColumns(year="", genres="", tags="", kind="", series_id="", episode=""))
    (tmp_path / "items.csv").write_bytes('item,title\nm1,"Misérables, Les"\n'.encode("latin-1"))
    assert read_logs(cfg, DataReport()).items.column("title").to_pylist() == ["Misérables, Les"]


def test_finalize_sorts_stably_and_drops_row_column():
    interactions = pd.DataFrame({
        "user": ["b", "a", "a", "a"], "item": ["x", "y", "x", "y"],
        "timestamp": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 00:00", "2024-01-01 00:00", "2024-01-01 00:00"]),
        "event": ["play", "play", "play", "thumb_up"], "duration": [1.0, np.nan, 2.0, np.nan],
        "origin": ["o1", "o2", "o3", "o4"], "_row": [2, 3, 4, 5]})
    items = pd.DataFrame({"item": ["x", "y"], "title": ["X", "Y"], "year": [2000, None], "genres": [["g"], None],
                          "tags": [[], []], "kind": ["movie", "series"], "series_id": [None, "s"], "episode": [None, 3]})
    data = finalize(interactions, items, DataReport(), "log.csv")
    assert data.interactions.schema.names == [*INTERACTIONS.names, "origin"]
    assert data.interactions.column("origin").to_pylist() == ["o3", "o4", "o2", "o1"]
    assert data.items.column("genres").to_pylist() == [["g"], []] and data.items.column("episode").to_pylist() == [None, 3]
