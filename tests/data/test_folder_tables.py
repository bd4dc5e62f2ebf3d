"""Logs as people keep them: a folder of part files, hive partitions included (data/tables.py)."""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lit_verbrec.config.schema import DataConfig
from lit_verbrec.data.logs import read_logs
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import DataError

ITEMS = "item,title,year,genres,tags,kind,series_id,episode\nm1,Heat,1995,Crime,,movie,,\nm2,Up,2009,,,movie,,\n"
DAYS = ("2025-06-01", "2025-06-02", "2025-06-03")


def day_rows(day: int, n: int = 8) -> list[dict]:
    return [{"user": f"u{i % 3}", "item": "m1" if i % 2 else "m2",
             "timestamp": str(1_748_736_000 + 86_400 * day + 60 * i), "event": "play", "duration": "30"}
            for i in range(n)]


def config(tmp_path, interactions: str) -> DataConfig:
    (tmp_path / "items.csv").write_text(ITEMS)
    return DataConfig(source="parquet", path=str(tmp_path), interactions=interactions, items="items.csv",
                      timestamp_format="unix")


def hive_parquet(root, parts: dict[str, list[dict]]) -> None:
    for day, rows in parts.items():
        (root / f"date={day}").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), root / f"date={day}" / "part-0000.parquet")


def test_a_hive_folder_reads_as_the_one_file_plus_its_partition_column(tmp_path):
    parts = {day: day_rows(d) for d, day in enumerate(DAYS)}
    hive_parquet(tmp_path / "events", parts)
    (tmp_path / "events" / "_SUCCESS").write_text("")                     # writers' markers are skipped
    pq.write_table(pa.Table.from_pylist([], schema=pa.Table.from_pylist(day_rows(0)).schema),
                   tmp_path / "events" / f"date={DAYS[0]}" / "part-0001.parquet")   # and empty parts
    one = [r | {"date": day} for day, rows in parts.items() for r in rows]
    pq.write_table(pa.Table.from_pylist(one), tmp_path / "one.parquet")

    folder = read_logs(config(tmp_path, "events"), DataReport())
    single = read_logs(config(tmp_path, "one.parquet"), DataReport())
    assert folder.interactions.equals(single.interactions)
    assert folder.interactions.num_rows == 24 and set(folder.interactions["date"].to_pylist()) == set(DAYS)
    assert "_part" not in folder.interactions.column_names


def test_a_bad_row_names_its_part_file_and_row(tmp_path):
    parts = {day: day_rows(d) for d, day in enumerate(DAYS)}
    parts[DAYS[1]][2]["event"] = "hover"
    hive_parquet(tmp_path / "events", parts)
    with pytest.raises(DataError, match=re.escape(f"events/date={DAYS[1]}/part-0000.parquet row 3, column 'event': "
                                                  "unknown event 'hover'")):
        read_logs(config(tmp_path, "events"), DataReport())


def test_skipped_rows_are_counted_with_their_part(tmp_path):
    parts = {day: day_rows(d) for d, day in enumerate(DAYS)}
    parts[DAYS[2]][5]["item"] = "m9"                                          # not in the catalog
    hive_parquet(tmp_path / "events", parts)
    report = DataReport()
    read_logs(config(tmp_path, "events"), report)
    skipped = report.as_dict()["interactions on items missing from the catalog"]
    assert skipped["count"] == 1 and f"events/date={DAYS[2]}/part-0000.parquet row 6" in skipped["first"]


def test_a_folder_of_csv_parts_counts_lines_per_file(tmp_path):
    (tmp_path / "logs").mkdir()
    for d in range(2):
        pd.DataFrame(day_rows(d, 4)).to_csv(tmp_path / "logs" / f"part-{d}.csv", index=False)
    bad = day_rows(2, 4)
    bad[1]["timestamp"] = "yesterday"
    pd.DataFrame(bad).to_csv(tmp_path / "logs" / "part-2.csv", index=False)
    with pytest.raises(DataError, match=re.escape("logs/part-2.csv line 3, column 'timestamp': cannot parse "
                                                  "timestamp 'yesterday'")):
        read_logs(config(tmp_path, "logs"), DataReport())


@pytest.mark.parametrize(("files", "message"), [
    ({}, "events: a folder table needs .parquet or .csv part files; it holds none"),
    ({"a.parquet": "p", "b.csv": "c"}, "events: part files of both kinds (.csv and .parquet)"),
    ({"a.json": "c"}, "events: a folder table needs .parquet or .csv part files; found a.json"),
])
def test_a_folder_that_is_not_a_table_says_why(tmp_path, files, message):
    (tmp_path / "events").mkdir()
    for name, kind in files.items():
        if kind == "p":
            pq.write_table(pa.Table.from_pylist(day_rows(0)), tmp_path / "events" / name)
        else:
            pd.DataFrame(day_rows(0)).to_csv(tmp_path / "events" / name, index=False)
    with pytest.raises(DataError, match=re.escape(message)):
        read_logs(config(tmp_path, "events"), DataReport())


def test_a_column_in_the_file_and_in_the_folder_name_is_an_error(tmp_path):
    hive_parquet(tmp_path / "events", {DAYS[0]: [r | {"date": "x"} for r in day_rows(0)]})
    with pytest.raises(DataError, match=re.escape("column 'date' is in the file and in its folder name")):
        read_logs(config(tmp_path, "events"), DataReport())
