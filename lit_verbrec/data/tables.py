"""One table of a log, read whole or only its head, with each row's place for messages.

A table is one .csv or .parquet file, or a folder of part files of one kind, as Spark, Hive or
DuckDB write them: every file below it (hidden files and `_SUCCESS`-style markers skipped), in
path order, and each `key=value` folder on the way (hive partitioning, e.g. `date=2025-06-01/`)
adds a text column `key`. CSV cells are read as text (data/csv_files.py); Parquet columns keep
their types. With a row filter (data.sample_users) a file is streamed, Parquet in batches of rows
and CSV in blocks of bytes, and only the kept rows are held. Every frame carries `_row`
(canonical.ROW): the CSV line (blank lines and multi-line cells counted) or the Parquet row, from
1, which errors quote; a folder's frame also `_part` (canonical.PART), the part file of each row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lit_verbrec.data.canonical import PART, ROW
from lit_verbrec.data.csv_files import (
    EmptyTable,
    RowFilter,
    csv_column,
    csv_frames,
    kept_rows,
    parse_csv,
    read_csv,
)
from lit_verbrec.data.schema import DataError

__all__ = ["HEAD_ROWS", "Table", "column_batches", "locate", "read_head", "read_table", "table_frames"]

BATCH_ROWS = 1 << 16
"""Rows per batch when a filter streams a file: memory holds the kept rows and one batch."""
HEAD_ROWS = 10_000
"""Rows of the log checked before the full read (read_logs)."""
SUFFIXES = (".csv", ".parquet")
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
"""The folder value Hive and Spark write for a null partition key."""


def streamed_parquet(path: Path) -> pq.ParquetFile:
    """A Parquet file to read batch by batch. Without pre-buffering: Arrow's pre-buffer cache keeps
    every column chunk it read until the reader ends, so a streamed read held the whole file's
    compressed bytes (775 MB after 100M rows)."""
    return pq.ParquetFile(path, pre_buffer=False)


def _nullable_ints(dtype: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    # Integer ids with nulls would otherwise become floats and print as "42.0".
    return pd.Int64Dtype() if pa.types.is_signed_integer(dtype) else None


@dataclass(frozen=True)
class Table:
    """A table found once: the name the config gives it (for messages), its path, and the files to
    read in order (the file itself, or a folder's part files). Every read takes one, so a folder of
    thousands of partitions is listed once per preparation, not once per pass."""
    name: str
    path: Path
    files: tuple[Path, ...]

    @property
    def is_folder(self) -> bool:
        return self.files != (self.path,)

    def shown(self, file: Path) -> str:
        """How messages name `file`: the table's name, followed by the part's path in a folder."""
        return f"{self.name.rstrip('/')}/{file.relative_to(self.path).as_posix()}" if self.is_folder else self.name


def locate(folder: Path, name: str) -> Table:
    """`folder/name`: a .csv or .parquet file, or a folder holding part files of one of those
    kinds; a DataError naming the problem otherwise."""
    path = folder / name
    if path.is_dir():
        return Table(name, path, tuple(part_files(path, name)))
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"{name}: unsupported file type '{path.suffix}' (expected .parquet or .csv, or a folder of them)")
    if not path.is_file():
        raise DataError(f"{name}: no such file in {folder}")
    return Table(name, path, (path,))


def part_files(folder: Path, name: str) -> list[Path]:
    """The part files below `folder`, in path order; all .csv or all .parquet."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts))
    kinds = {p.suffix.lower() for p in files}
    if not files or not kinds <= set(SUFFIXES):
        odd = next((p for p in files if p.suffix.lower() not in SUFFIXES), None)
        raise DataError(f"{name}: a folder table needs .parquet or .csv part files"
                        + (f"; found {odd.relative_to(folder)}" if odd else "; it holds none"))
    if len(kinds) > 1:
        raise DataError(f"{name}: part files of both kinds (.csv and .parquet); keep one kind per table")
    return files


def _partition_columns(relative: Path) -> dict[str, str | None]:
    """{key: value} of the `key=value` folders of a part file's relative path."""
    values = {}
    for folder in relative.parts[:-1]:
        key, sep, value = folder.partition("=")
        if sep and key:
            value = unquote(value)
            values[unquote(key)] = None if value == HIVE_NULL else value
    return values


def _read_folder(table: Table, encoding: str, head_rows: int | None = None,
                 keep: RowFilter | None = None) -> tuple[pd.DataFrame, str] | None:
    """Every part file of the folder `table` (the first `head_rows` rows of the first one only, when
    given) as one frame with _row, _part and the partition columns."""
    frames, label, path, name = [], "row", table.path, table.name
    for file in table.files:
        relative, shown = file.relative_to(path), table.shown(file)
        try:
            read = (_read_file(file, shown, encoding, keep) if head_rows is None
                    else _head_file(file, shown, encoding, head_rows, keep))
        except EmptyTable:
            continue                     # writers leave empty parts (a partition with no rows)
        if read is None:
            return None
        frame, label = read
        partitions = _partition_columns(relative)
        clash = next((key for key in partitions if key in frame.columns), None)
        if clash is not None:
            raise DataError(f"{shown}: column '{clash}' is in the file and in its folder name ({clash}=...); "
                            f"rename one of them")
        frames.append(frame.assign(**partitions, **{PART: relative.as_posix()}))
        if head_rows is not None:
            break
    if not frames:
        raise DataError(f"{name}: no rows (every part file is empty)")
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    out[PART] = out[PART].astype("category")      # a few part names, not one string per row
    return out, label


def read_table(table: Table, encoding: str, keep: RowFilter | None = None) -> tuple[pd.DataFrame, str]:
    """`table` as a frame with `_row` (and `_part` for a folder), and the word for its rows ("line"
    or "row"); only the rows `keep` keeps, if given (row numbers stay those of the file)."""
    return (_read_folder(table, encoding, keep=keep) if table.is_folder
            else _read_file(table.path, table.name, encoding, keep))


def table_frames(table: Table, encoding: str, keep: RowFilter | None = None) -> Iterator[tuple[pd.DataFrame, str]]:
    """`table` as `read_table` reads it (the same columns and `_row`/`_part`), in frames of at most a
    batch of rows (a CSV file that cannot be streamed exactly: the file), so a pass over a log of any
    size holds one batch; only the rows `keep` keeps, if given."""
    for file in table.files:
        shown, relative = table.shown(file), file.relative_to(table.path) if table.is_folder else None
        partitions = _partition_columns(relative) if relative is not None else {}
        try:
            for frame, label in _file_frames(file, shown, encoding, keep):
                clash = next((key for key in partitions if key in frame.columns), None)
                if clash is not None:
                    raise DataError(f"{shown}: column '{clash}' is in the file and in its folder name ({clash}=...); "
                                    f"rename one of them")
                if relative is not None:
                    frame = frame.assign(**partitions, **{PART: pd.Categorical([relative.as_posix()] * len(frame))})
                yield frame, label
        except EmptyTable:
            if not table.is_folder:
                raise                        # writers leave empty parts (a partition with no rows)


def _file_frames(file: Path, shown: str, encoding: str, keep: RowFilter | None) -> Iterator[tuple[pd.DataFrame, str]]:
    if file.suffix.lower() == ".csv":
        yield from csv_frames(file, shown, encoding, keep)
        return
    try:
        parquet, start = streamed_parquet(file), 1
        if parquet.metadata.num_rows == 0:
            raise EmptyTable(f"{shown}: no rows")
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            kept, numbers = kept_rows(batch, np.arange(start, start + batch.num_rows), keep)
            start += batch.num_rows
            yield kept.to_pandas(types_mapper=_nullable_ints).assign(**{ROW: numbers}), "row"
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{shown}: not a readable Parquet file ({exc})") from None


def read_head(table: Table, encoding: str, rows: int | None = None,
              keep: RowFilter | None = None) -> tuple[pd.DataFrame, str] | None:
    """The first `rows` (default HEAD_ROWS) rows of `table` (of its first part file, for a folder)
    as `read_table` numbers them, those `keep` keeps, without reading the rest; None where that
    cannot be done cheaply (a head cut inside a quoted multi-line CSV cell), and the full read then
    reports whatever is wrong."""
    rows = rows or HEAD_ROWS
    return (_read_folder(table, encoding, rows, keep) if table.is_folder
            else _head_file(table.path, table.name, encoding, rows, keep))


def column_batches(table: Table, column: str, encoding: str) -> Iterator[pa.Array]:
    """One column of `table`, batch by batch, every part file in order (a cheap pass: only that
    column is decoded). A file that cannot be read is reported as the full read reports it."""
    for file in table.files:
        shown = table.shown(file)
        try:
            yield from _file_column(file, column, encoding)
        except (pa.ArrowInvalid, OSError) as exc:
            if file.suffix.lower() == ".csv":
                parse_csv(file.read_bytes(), shown, encoding)   # names the line where it can
            raise DataError(f"{shown}: not readable ({exc})") from None


def _file_column(file: Path, column: str, encoding: str) -> Iterator[pa.Array]:
    if file.suffix.lower() == ".parquet":
        for batch in streamed_parquet(file).iter_batches(batch_size=BATCH_ROWS, columns=[column]):
            yield batch.column(0)
        return
    yield from csv_column(file, column, encoding)


def _read_file(path: Path, name: str, encoding: str, keep: RowFilter | None = None) -> tuple[pd.DataFrame, str]:
    if path.suffix.lower() == ".csv":
        return read_csv(path, name, encoding, keep)
    try:
        file = pq.ParquetFile(path) if keep is None else streamed_parquet(path)
        if file.metadata.num_rows == 0:
            raise EmptyTable(f"{name}: no rows")
        if keep is None:
            table, rows = file.read(), np.arange(1, file.metadata.num_rows + 1)
        else:
            table, rows = _filtered_parquet(file, keep)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{name}: not a readable Parquet file ({exc})") from None
    return table.to_pandas(types_mapper=_nullable_ints).assign(**{ROW: rows}), "row"


def _filtered_parquet(file: pq.ParquetFile, keep: RowFilter) -> tuple[pa.Table, np.ndarray]:
    """The rows `keep` keeps and their 1-based row numbers, one batch in memory at a time."""
    kept, rows, start = [], [], 1
    for batch in file.iter_batches(batch_size=BATCH_ROWS):
        batch_kept, numbers = kept_rows(batch, np.arange(start, start + batch.num_rows), keep)
        kept.append(batch_kept)
        rows.append(numbers)
        start += batch.num_rows
    table = pa.Table.from_batches(kept) if kept else file.schema_arrow.empty_table()
    return table, np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


def _head_file(path: Path, name: str, encoding: str, rows: int,
               keep: RowFilter | None = None) -> tuple[pd.DataFrame, str] | None:
    if path.suffix.lower() == ".parquet":
        try:
            batch = next(streamed_parquet(path).iter_batches(batch_size=rows), None)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{name}: not a readable Parquet file ({exc})") from None
        if batch is None or batch.num_rows == 0:
            raise EmptyTable(f"{name}: no rows")
        batch, numbers = kept_rows(batch, np.arange(1, batch.num_rows + 1), keep)
        return batch.to_pandas(types_mapper=_nullable_ints).assign(**{ROW: numbers}), "row"
    with path.open("rb") as file:
        head = b"".join(file.readline() for _ in range(rows + 1))   # the header and `rows` lines
        more = file.read(1) != b""
    try:
        # the last record may continue past the cut (a multi-line cell): it is left to the full read
        return parse_csv(head, name, encoding, keep, drop_last=more)
    except DataError:
        return None
