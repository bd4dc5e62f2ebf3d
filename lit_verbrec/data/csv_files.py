"""CSV files of a log: read whole, streamed through a row filter, or a head, with each record's line.

Cells are read as text (ids keep leading zeros, nothing becomes NaN) in the given encoding. The
line of a record is what an error quotes: record + 2 (the header is line 1) unless blank lines or
quoted multi-line cells shift it, which only a whole read can see. A filtered read streams the file
in blocks of bytes and keeps only the rows the filter keeps; where the records do not sit one per
line it hands over to the whole read, so the numbers are always exact.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from lit_verbrec.data.canonical import ROW
from lit_verbrec.data.schema import DataError

RowFilter = Callable[[pa.Table | pa.RecordBatch], np.ndarray]
"""Rows to keep of a batch of a table ([n] bool), applied while reading (data.sample_users)."""
CSV_BLOCK_BYTES = 1 << 24
"""Bytes of CSV text per batch of a streamed read (Arrow's block size)."""


class EmptyTable(DataError):
    """A table file with no rows: an error for a file, a skipped part in a folder."""


def kept_rows(table: pa.Table | pa.RecordBatch, rows: np.ndarray, keep: RowFilter | None):
    """(the rows `keep` keeps, their numbers); all of them without a filter."""
    if keep is None:
        return table, rows
    mask = keep(table)
    return table.filter(pa.array(mask)), rows[mask]


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


def read_csv(path: Path, name: str, encoding: str, keep: RowFilter | None = None) -> tuple[pd.DataFrame, str]:
    """The file as a frame with `_row` (its lines), and "line"; with `keep`, only the rows it keeps
    (streamed: one block of the file in memory at a time, where its records sit one per line)."""
    if keep is None:
        return parse_csv(path.read_bytes(), name, encoding)
    frames = [frame for frame, _ in csv_frames(path, name, encoding, keep)]
    return (pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]), "line"


def csv_frames(path: Path, name: str, encoding: str, keep: RowFilter | None = None) -> Iterator[tuple[pd.DataFrame, str]]:
    """The file's rows (those `keep` keeps), block by block (CSV_BLOCK_BYTES), as frames with `_row`.

    A block's records are numbered from the line of its first one, which is exact only when every
    record sits on one line; a file where that may not hold (a quoted cell across lines, a blank
    line), or that Arrow's streaming reader cannot read, is read whole instead: one frame, its lines
    numbered (or its problem named) exactly."""
    header = _header(path, encoding)
    if header is None or not one_record_per_line(path, encoding):
        yield parse_csv(path.read_bytes(), name, encoding, keep)
        return
    records = 0
    try:
        reader = _open_csv(path, encoding, pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string())))
        if reader.schema.names != header:            # e.g. repeated column names: the whole read names them
            yield parse_csv(path.read_bytes(), name, encoding, keep)
            return
        for batch in reader:
            kept, numbers = kept_rows(batch, np.arange(records + 2, records + 2 + batch.num_rows), keep)
            records += batch.num_rows
            yield pa.Table.from_batches([kept], schema=reader.schema).to_pandas().assign(**{ROW: numbers}), "line"
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        parse_csv(path.read_bytes(), name, encoding)   # names the line where it can
        raise DataError(f"{name}: not readable ({exc})") from None
    if records == 0:
        raise EmptyTable(f"{name}: no rows")


def _header(path: Path, encoding: str) -> list[str] | None:
    """The column names on the first line; None when it does not decode."""
    with path.open("rb") as file:
        first = file.readline()
    try:
        if first.startswith(codecs.BOM_UTF8) and codecs.lookup(encoding).name == "utf-8":
            first = first[len(codecs.BOM_UTF8):]   # Arrow skips it too
        return next(csv.reader([first.decode(encoding).rstrip("\r\n")]), None)
    except (UnicodeDecodeError, LookupError):
        return None


def one_record_per_line(path: Path, encoding: str) -> bool:
    """Every line of the file is one record: no blank line, and no line with an odd number of quote
    characters (RFC 4180 doubles a quote inside a cell, so an odd count means a cell that goes on
    past the line's end). One vectorised pass over the bytes, block by block."""
    if '\n"'.encode(encoding, errors="replace") != b'\n"':
        return False                                  # not an ASCII-compatible encoding: no byte scan
    odd, previous = 0, b"\n"                 # odd: quote parity of the line the last block ended in
    with path.open("rb") as file:
        while block := file.read(CSV_BLOCK_BYTES):
            data = np.frombuffer(block, dtype=np.uint8)
            quotes = np.cumsum(data == ord('"'))       # [len] quotes up to and including each byte
            at_newline = quotes[data == ord("\n")]
            per_line = np.diff(np.r_[0, at_newline])  # quotes on each line the block ends
            per_line[:1] += odd
            if (per_line % 2).any():
                return False
            odd = int(quotes[-1] - at_newline[-1]) % 2 if len(at_newline) else (odd + int(quotes[-1])) % 2
            edge = previous + block[:2]                   # a blank line across the blocks' boundary
            if any(blank in text for blank in (b"\n\n", b"\n\r\n") for text in (block, edge)):
                return False
            previous = block[-2:]
    return odd == 0


def parse_csv(data: bytes, name: str, encoding: str, keep: RowFilter | None = None,
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
    table, lines = kept_rows(table, lines, keep)
    return table.to_pandas().assign(**{ROW: lines}), "line"


def csv_column(path: Path, column: str, encoding: str) -> Iterator[pa.Array]:
    """One column of a CSV file as text, block by block (only that column is decoded)."""
    reader = _open_csv(path, encoding, pacsv.ConvertOptions(include_columns=[column], column_types={column: pa.string()}))
    for batch in reader:
        yield batch.column(0)


def _open_csv(path: Path, encoding: str, convert: pacsv.ConvertOptions) -> pacsv.CSVStreamingReader:
    """Arrow's streaming reader, CSV_BLOCK_BYTES of text per batch, quoted newlines allowed."""
    return pacsv.open_csv(path, read_options=pacsv.ReadOptions(encoding=encoding, block_size=CSV_BLOCK_BYTES),
                          parse_options=pacsv.ParseOptions(newlines_in_values=True), convert_options=convert)
