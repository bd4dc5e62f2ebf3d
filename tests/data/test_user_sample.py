"""data.sample_users: the same users by a stable hash of the id, whatever the layout, filtered while reading."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lit_verbrec.config.schema import DataConfig
from lit_verbrec.data import csv_files, tables
from lit_verbrec.data.logs import read_logs
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import DataError
from lit_verbrec.data.sources import load_source
from lit_verbrec.data.user_sample import UserSample, user_hashes

ITEMS = "item,title,year,genres,tags,kind,series_id,episode\nm1,Heat,1995,Crime,,movie,,\nm2,Up,2009,,,movie,,\n"
USERS = 400


def log(bad_user: str | None = None) -> pd.DataFrame:
    rows = [{"user": f"user-{u}", "item": "m1" if (u + i) % 2 else "m2", "timestamp": str(1_700_000_000 + 3600 * i + u),
             "event": "hover" if f"user-{u}" == bad_user and i == 2 else "play", "duration": "30"}
            for u in range(USERS) for i in range(5)]
    return pd.DataFrame(rows)


def config(tmp_path, interactions: str, **kwargs) -> DataConfig:
    (tmp_path / "items.csv").write_text(ITEMS)
    return DataConfig(source="parquet", path=str(tmp_path), interactions=interactions, items="items.csv",
                      timestamp_format="unix", **kwargs)


def expected(share: float) -> set[str]:
    """Written out from the rule, not through the code under test."""
    limit = int(share * 2**64)
    return {f"user-{u}" for u in range(USERS)
            if int.from_bytes(hashlib.blake2b(f"user-{u}".encode(), digest_size=8).digest(), "little") < limit}


def users_of(data) -> set[str]:
    return set(data.interactions["user"].to_pylist())


def test_hashes_are_per_id_and_text(tmp_path):
    hashes = user_hashes(pa.array(["a", "b", "a", None]))
    assert hashes[0] == hashes[2] != hashes[1] and hashes.dtype == np.uint64
    assert user_hashes(pa.array([42]))[0] == user_hashes(pa.array(["42"]))[0]       # an integer id hashes as its text


def test_a_share_keeps_the_same_users_from_csv_parquet_and_a_folder_of_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "BATCH_ROWS", 64)         # many batches: the filter streams the file
    frame = log()
    frame.to_csv(tmp_path / "log.csv", index=False)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "log.parquet")
    (tmp_path / "parts").mkdir()
    for k in range(3):
        pq.write_table(pa.Table.from_pandas(frame.iloc[k::3], preserve_index=False), tmp_path / "parts" / f"p{k}.parquet")
    want = expected(0.1)
    assert 20 < len(want) < 60
    for name in ("log.csv", "log.parquet", "parts"):
        data = read_logs(config(tmp_path, name, sample_users=0.1), DataReport())
        assert users_of(data) == want, name
        assert data.interactions.num_rows == 5 * len(want)


def test_a_count_keeps_exactly_that_many_users_the_smallest_hashes(tmp_path):
    log().to_csv(tmp_path / "log.csv", index=False)
    data = read_logs(config(tmp_path, "log.csv", sample_users=25), DataReport())
    hashes = {f"user-{u}": int.from_bytes(hashlib.blake2b(f"user-{u}".encode(), digest_size=8).digest(), "little")
              for u in range(USERS)}
    assert users_of(data) == set(sorted(hashes, key=hashes.get)[:25])
    assert users_of(read_logs(config(tmp_path, "log.csv", sample_users=10_000), DataReport())) == set(hashes)


def test_bad_rows_count_only_for_sampled_users_and_keep_their_file_row(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "BATCH_ROWS", 64)
    inside, outside = sorted(expected(0.1))[0], next(f"user-{u}" for u in range(USERS) if f"user-{u}" not in expected(0.1))
    frame = log(bad_user=outside)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "out.parquet")
    assert users_of(read_logs(config(tmp_path, "out.parquet", sample_users=0.1), DataReport())) == expected(0.1)

    frame = log(bad_user=inside)
    row = int(np.flatnonzero(frame["event"] == "hover")[0]) + 1
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "in.parquet")
    with pytest.raises(DataError, match=re.escape(f"in.parquet row {row}, column 'event': unknown event 'hover'")):
        read_logs(config(tmp_path, "in.parquet", sample_users=0.1), DataReport())


def test_the_synthetic_log_is_sampled_by_the_same_rule():
    full = load_source(DataConfig(), DataReport())
    sample = load_source(DataConfig(sample_users=0.25), DataReport())
    chosen = UserSample.of(0.25)
    assert users_of(sample) == {u for u in users_of(full) if chosen.mask(pa.array([u]))[0]}
    assert 0.15 < len(users_of(sample)) / len(users_of(full)) < 0.35


def test_no_sampled_user_is_a_clear_error(tmp_path):
    pd.DataFrame([{"user": "u", "item": "m1", "timestamp": "1", "event": "play", "duration": "1"}]).to_csv(
        tmp_path / "log.csv", index=False)
    share = 1e-9
    with pytest.raises(DataError, match=re.escape("log.csv: no row is of a user in data.sample_users=1e-09")):
        read_logs(config(tmp_path, "log.csv", sample_users=share), DataReport())


@pytest.mark.parametrize("value", [-0.5, 1.5, 2.25])
def test_a_setting_that_is_neither_a_share_nor_a_count_is_refused(value):
    with pytest.raises(ValueError, match=re.escape("data.sample_users")):
        DataConfig(sample_users=value)


def sampled(share: float):
    """The row filter read_logs gives a table for data.sample_users=share."""
    sample = UserSample.of(share)
    return lambda batch: sample.mask(batch.column("user"))


@pytest.fixture
def whole_csv_reads(monkeypatch) -> list[str]:
    """Names of the CSV files decoded whole; CSV blocks cut to 1 kB so a streamed read takes many."""
    monkeypatch.setattr(csv_files, "CSV_BLOCK_BYTES", 1024)
    names: list[str] = []
    whole = csv_files.parse_csv

    def spy(data, name, *args, **kwargs):
        if "drop_last" not in kwargs:                # a head is parsed with drop_last
            names.append(name)
        return whole(data, name, *args, **kwargs)

    monkeypatch.setattr(csv_files, "parse_csv", spy)
    return names


def test_a_sampled_csv_is_streamed_and_keeps_its_line_numbers(tmp_path, whole_csv_reads):
    frame = log()
    frame.to_csv(tmp_path / "log.csv", index=False)
    assert (tmp_path / "log.csv").stat().st_size > 20 * 1024        # many blocks
    data = read_logs(config(tmp_path, "log.csv", sample_users=0.1), DataReport())
    assert users_of(data) == expected(0.1) and whole_csv_reads == ["items.csv"]
    got, label = tables.read_table(tables.locate(tmp_path, "log.csv"), "utf-8", sampled(0.1))
    kept = frame["user"].isin(expected(0.1)).to_numpy()
    assert label == "line" and got["_row"].tolist() == (np.flatnonzero(kept) + 2).tolist()    # header on line 1
    assert got.drop(columns="_row").equals(frame[kept].reset_index(drop=True))
    inside = sorted(expected(0.1))[0]

    frame = log(bad_user=inside)
    frame.to_csv(tmp_path / "bad.csv", index=False)
    line = int(np.flatnonzero(frame["event"] == "hover")[0]) + 2
    with pytest.raises(DataError, match=re.escape(f"bad.csv line {line}, column 'event': unknown event 'hover'")):
        read_logs(config(tmp_path, "bad.csv", sample_users=0.1), DataReport())


def test_a_sampled_csv_in_latin_1_is_streamed(tmp_path, whole_csv_reads):
    frame = log().assign(note="café")
    (tmp_path / "log.csv").write_bytes(frame.to_csv(index=False).encode("latin-1"))
    data = read_logs(config(tmp_path, "log.csv", sample_users=0.1, encoding="latin-1"), DataReport())
    assert users_of(data) == expected(0.1) and whole_csv_reads == ["items.csv"]


def test_a_sampled_csv_whose_records_span_lines_is_numbered_by_the_whole_read(tmp_path, whole_csv_reads):
    frame = log()
    frame["note"] = ""
    inside = sorted(expected(0.1))[0]
    first = int(np.flatnonzero(frame["user"] == inside)[0])
    frame.loc[first - 1, "note"] = "two\nlines"            # a record before the sampled user's takes two lines
    frame.to_csv(tmp_path / "log.csv", index=False)
    got, _ = tables.read_table(tables.locate(tmp_path, "log.csv"), "utf-8", sampled(0.1))
    assert set(got["user"]) == expected(0.1) and whole_csv_reads == ["log.csv"]
    assert got.loc[got["user"] == inside, "_row"].min() == first + 3     # shifted by the extra line


def test_invalid_bytes_in_a_sampled_csv_are_reported_as_without_a_sample(tmp_path, whole_csv_reads):
    text = log().to_csv(index=False).encode()
    at = text.index(b"\n", len(text) // 2) + 1                  # the start of a line in the middle
    (tmp_path / "log.csv").write_bytes(text[:at] + b"\xff" + text[at:])
    line = text[:at].count(b"\n") + 1
    for sample in (0, 0.1, 25):             # every user, a share (streamed), a count (its user column read first)
        with pytest.raises(DataError, match=re.escape(f"log.csv line {line}: bytes that are not valid utf-8")):
            read_logs(config(tmp_path, "log.csv", sample_users=sample), DataReport())
