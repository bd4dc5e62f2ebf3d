"""One table of a log, read whole or only its head, with each row's place for messages.

A table is one .csv or .parquet file, or a folder of part files of one kind, as Spark, Hive or
DuckDB write them: every file below it (hidden files and `_SUCCESS`-style markers skipped), in
path order, and each `key=value` folder on the way (hive partitioning, e.g. `date=2025-06-01/`)
adds a text column `key`. CSV cells are read as text (ids keep leading zeros, nothing becomes
NaN) in the given encoding; Parquet columns keep their types. Every frame carries `_row`
(canonical.ROW): the CSV line (blank lines and multi-line cells counted) or the Parquet row, from
1, which errors quote; a folder's frame also `_part` (canonical.PART), the part file of each row.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lit_verbrec.data.canonical import PART, ROW
from lit_verbrec.data.schema import DataError

__all__ = ["HEAD_ROWS", "column_batches", "read_head", "read_table", "table_path"]

RowFilter = Callable[[pa.Table | pa.RecordBatch], np.ndarray]
"""Rows to keep of a batch of a table ([n] bool), applied while reading (data.sample_users)."""
BATCH_ROWS = 1 << 16
"""Parquet rows per batch when a filter streams a file: memory holds the kept rows and one batch."""
HEAD_ROWS = 10_000
"""Rows of the log checked before the full read (read_logs)."""
SUFFIXES = (".csv", ".parquet")
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
"""The folder value Hive and Spark write for a null partition key."""


class EmptyTable(DataError):
    """A table file with no rows: an error for a file, a skipped part in a folder."""


def _csv_lines(text: str, records: int, utf8: bytes) -> np.ndarray:
    """Line number of each data record: record + 2 unless blank lines or quoted newlines shift them."""
    lines = utf8.count(b"\n") + (0 if utf8.endswith(b"\n") else 1)
    if lines == records + 1:
        return np.arange(2, records + 2)
    reader, starts, previous = csv.reader(io.StringIO(text, newline="")), [], 0
    for record in reader:  # only for files with blank lines or multi-line cells
        if record:
            starts.append(previous + 1)
        previous = reader.line_num
    starts = starts[1:]
    # Should Python's csv and Arrow ever disagree on the records, approximate rather than fail.
    return np.array(starts) if len(starts) == records else np.arange(2, records + 2)


def _read_csv(path: Path, name: str, encoding: str, keep: RowFilter | None = None) -> tuple[pd.DataFrame, str]:
    return _parse_csv(path.read_bytes(), name, encoding, keep)


def _parse_csv(data: bytes, name: str, encoding: str, keep: RowFilter | None = None,
               drop_last: bool = False) -> tuple[pd.DataFrame, str]:
    """`drop_last`: leave out the last record (`data` is a head that may end inside it)."""
    if data.startswith(codecs.BOM_UTF8) and codecs.lookup(encoding).name == "utf-8":
        data = data[len(codecs.BOM_UTF8):]  # Excel's byte order mark would stick to the first column name
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{name} line {line}: bytes that are not valid {encoding} ({data[exc.start:exc.end]!r} at byte "
                        f"{exc.start}); set data.encoding=latin-1 if that is the file's encoding") from None
    except LookupError:
        raise DataError(f"data.encoding: unknown encoding '{encoding}'") from None
    header = next((record for record in csv.reader(io.StringIO(text, newline="")) if record), None)
    if header is None:
        raise EmptyTable(f"{name}: no rows")
    utf8 = data if codecs.lookup(encoding).name == "utf-8" else text.encode("utf-8")
    try:
        table = pacsv.read_csv(pa.BufferReader(utf8), parse_options=pacsv.ParseOptions(newlines_in_values=True),
                               convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string())))
    except pa.ArrowInvalid as exc:
        raise DataError(f"{name}: {exc}") from None
    if table.num_rows == 0:
        raise EmptyTable(f"{name}: no rows")
    lines = _csv_lines(text, table.num_rows, utf8)
    if drop_last:
        table, lines = table.slice(0, table.num_rows - 1), lines[:-1]
    table, lines = _kept(table, lines, keep)
    return table.to_pandas().assign(**{ROW: lines}), "line"


def _kept(table: pa.Table | pa.RecordBatch, rows: np.ndarray, keep: RowFilter | None):
    """(the rows `keep` keeps, their numbers); all of them without a filter."""
    if keep is None:
        return table, rows
    mask = keep(table)
    return table.filter(pa.array(mask)), rows[mask]


def _nullable_ints(dtype: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    # Integer ids with nulls would otherwise become floats and print as "42.0".
    return pd.Int64Dtype() if pa.types.is_signed_integer(dtype) else None


def table_path(folder: Path, name: str) -> Path:
    """`folder/name`: a .csv or .parquet file, or a folder holding part files of one of those
    kinds; a DataError naming the problem otherwise."""
    path = folder / name
    if path.is_dir():
        part_files(path, name)
        return path
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"{name}: unsupported file type '{path.suffix}' (expected .parquet or .csv, or a folder of them)")
    if not path.is_file():
        raise DataError(f"{name}: no such file in {folder}")
    return path


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


def _read_folder(path: Path, name: str, encoding: str, head_rows: int | None = None,
                 keep: RowFilter | None = None) -> tuple[pd.DataFrame, str] | None:
    """Every part file of the folder `path` (the first `head_rows` rows of the first one only, when
    given) as one frame with _row, _part and the partition columns."""
    frames, label = [], "row"
    for file in part_files(path, name):
        relative = file.relative_to(path)
        shown = f"{name.rstrip('/')}/{relative.as_posix()}"
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


def read_table(folder: Path, name: str, encoding: str, keep: RowFilter | None = None) -> tuple[pd.DataFrame, str]:
    """`folder/name` (a file, or a folder of part files) as a frame with `_row` (and `_part` for a
    folder), and the word for its rows ("line" or "row"); only the rows `keep` keeps, if given
    (row numbers stay those of the file)."""
    path = table_path(folder, name)
    return _read_folder(path, name, encoding, keep=keep) if path.is_dir() else _read_file(path, name, encoding, keep)


def read_head(folder: Path, name: str, encoding: str, rows: int | None = None,
              keep: RowFilter | None = None) -> tuple[pd.DataFrame, str] | None:
    """The first `rows` (default HEAD_ROWS) rows of `folder/name` (of its first part file, for a
    folder) as `read_table` numbers them, those `keep` keeps, without reading the rest; None where
    that cannot be done cheaply (a head cut inside a quoted multi-line CSV cell), and the full read
    then reports whatever is wrong."""
    path, rows = table_path(folder, name), rows or HEAD_ROWS
    return (_read_folder(path, name, encoding, rows, keep) if path.is_dir()
            else _head_file(path, name, encoding, rows, keep))


def column_batches(folder: Path, name: str, column: str, encoding: str) -> Iterator[pa.Array]:
    """One column of `folder/name`, batch by batch, every part file in order (a cheap pass: only
    that column is decoded)."""
    path = table_path(folder, name)
    for file in part_files(path, name) if path.is_dir() else [path]:
        if file.suffix.lower() == ".parquet":
            for batch in pq.ParquetFile(file).iter_batches(batch_size=BATCH_ROWS, columns=[column]):
                yield batch.column(0)
        else:
            reader = pacsv.open_csv(file, read_options=pacsv.ReadOptions(encoding=encoding),
                                    parse_options=pacsv.ParseOptions(newlines_in_values=True),
                                    convert_options=pacsv.ConvertOptions(include_columns=[column],
                                                                         column_types={column: pa.string()}))
            for batch in reader:
                yield batch.column(0)


def _read_file(path: Path, name: str, encoding: str, keep: RowFilter | None = None) -> tuple[pd.DataFrame, str]:
    if path.suffix.lower() == ".csv":
        return _read_csv(path, name, encoding, keep)
    try:
        file = pq.ParquetFile(path)
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
        batch_kept, numbers = _kept(batch, np.arange(start, start + batch.num_rows), keep)
        kept.append(batch_kept)
        rows.append(numbers)
        start += batch.num_rows
    table = pa.Table.from_batches(kept) if kept else file.schema_arrow.empty_table()
    return table, np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


def _head_file(path: Path, name: str, encoding: str, rows: int,
               keep: RowFilter | None = None) -> tuple[pd.DataFrame, str] | None:
    if path.suffix.lower() == ".parquet":
        try:
            batch = next(pq.ParquetFile(path).iter_batches(batch_size=rows), None)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{name}: not a readable Parquet file ({exc})") from None
        if batch is None or batch.num_rows == 0:
            raise EmptyTable(f"{name}: no rows")
        batch, numbers = _kept(batch, np.arange(1, batch.num_rows + 1), keep)
        return batch.to_pandas(types_mapper=_nullable_ints).assign(**{ROW: numbers}), "row"
    with path.open("rb") as file:
        head = b"".join(file.readline() for _ in range(rows + 1))   # the header and `rows` lines
        more = file.read(1) != b""
    try:
        # the last record may continue past the cut (a multi-line cell): it is left to the full read
        return _parse_csv(head, name, encoding, keep, drop_last=more)
    except DataError:
        return None
