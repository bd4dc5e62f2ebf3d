"""One table file of a log, read whole or only its head, with each row's number for messages.

CSV cells are read as text (ids keep leading zeros, nothing becomes NaN) in the given encoding;
Parquet columns keep their types. Every frame carries `_row` (canonical.ROW): the CSV line (blank
lines and multi-line cells counted) or the Parquet row, from 1, which errors quote.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lit_verbrec.data.canonical import ROW
from lit_verbrec.data.schema import DataError

__all__ = ["HEAD_ROWS", "read_head", "read_table", "table_path"]

HEAD_ROWS = 10_000
"""Rows of the log checked before the full read (read_logs)."""


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


def _read_csv(path: Path, name: str, encoding: str) -> tuple[pd.DataFrame, str]:
    return _parse_csv(path.read_bytes(), name, encoding)


def _parse_csv(data: bytes, name: str, encoding: str) -> tuple[pd.DataFrame, str]:
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
        raise DataError(f"{name}: no rows")
    utf8 = data if codecs.lookup(encoding).name == "utf-8" else text.encode("utf-8")
    try:
        table = pacsv.read_csv(pa.BufferReader(utf8), parse_options=pacsv.ParseOptions(newlines_in_values=True),
                               convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string())))
    except pa.ArrowInvalid as exc:
        raise DataError(f"{name}: {exc}") from None
    if table.num_rows == 0:
        raise DataError(f"{name}: no rows")
    return table.to_pandas().assign(**{ROW: _csv_lines(text, table.num_rows, utf8)}), "line"


def _nullable_ints(dtype: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    # Integer ids with nulls would otherwise become floats and print as "42.0".
    return pd.Int64Dtype() if pa.types.is_signed_integer(dtype) else None


def table_path(folder: Path, name: str) -> Path:
    """`folder/name`, a .csv or .parquet file that exists; a DataError naming the problem otherwise."""
    path = folder / name
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise DataError(f"{name}: unsupported file type '{path.suffix}' (expected .parquet or .csv)")
    if not path.is_file():
        raise DataError(f"{name}: no such file in {folder}")
    return path


def read_table(folder: Path, name: str, encoding: str) -> tuple[pd.DataFrame, str]:
    """`folder/name` as a frame with `_row`, and the word for its rows ("line" or "row")."""
    path = table_path(folder, name)
    if path.suffix.lower() == ".csv":
        return _read_csv(path, name, encoding)
    try:
        frame = pq.read_table(path).to_pandas(types_mapper=_nullable_ints)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{name}: not a readable Parquet file ({exc})") from None
    if len(frame) == 0:
        raise DataError(f"{name}: no rows")
    return frame.assign(**{ROW: np.arange(1, len(frame) + 1)}), "row"


def read_head(folder: Path, name: str, encoding: str, rows: int | None = None) -> tuple[pd.DataFrame, str] | None:
    """The first `rows` (default HEAD_ROWS) rows of `folder/name` as `read_table` numbers them, without reading the rest;
    None where that cannot be done cheaply (a head cut inside a quoted multi-line CSV cell), and
    the full read then reports whatever is wrong."""
    path, rows = table_path(folder, name), rows or HEAD_ROWS
    if path.suffix.lower() == ".parquet":
        try:
            batch = next(pq.ParquetFile(path).iter_batches(batch_size=rows), None)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{name}: not a readable Parquet file ({exc})") from None
        if batch is None or batch.num_rows == 0:
            raise DataError(f"{name}: no rows")
        frame = batch.to_pandas(types_mapper=_nullable_ints)
        return frame.assign(**{ROW: np.arange(1, len(frame) + 1)}), "row"
    with path.open("rb") as file:
        head = b"".join(file.readline() for _ in range(rows + 1))   # the header and `rows` lines
        more = file.read(1) != b""
    try:
        frame, label = _parse_csv(head, name, encoding)
    except DataError:
        return None
    # the last record may continue past the cut (a multi-line cell): it is left to the full read
    return (frame.iloc[:-1] if more else frame), label
