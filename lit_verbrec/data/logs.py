"""Read generic interaction logs and an item catalog (`data.source=parquet`) from Parquet or CSV,
each one file or a folder of part files (hive partitions included; data/tables.py).

`data.columns` / `data.item_columns` say which source column is which canonical column; an
empty mapping means the source has none (no event column: every row is a play; no duration:
null; no year/genres/tags/kind/series_id/episode: null/[]/[]/movie/null/null). A mapped column
that the file lacks is an error even when optional, so a typo never turns into silent nulls.
Source columns not mapped are kept on interactions as extra columns and dropped from items.

CSV cells are read as text in `data.encoding`, Parquet columns keep their types (data/tables.py;
a timestamp column is taken as it is, list columns too).
Interaction rows that cannot be used - empty user or item id, unparsable timestamp, unknown
event, non-numeric or negative duration - raise a `DataError` naming file, line and column, or
with `data.on_bad_row=skip` are counted in the report. Catalog problems are always errors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lit_verbrec.config.schema import DataConfig
from lit_verbrec.data.canonical import PART, ROW, finalize, location, locations, split_list_cells
from lit_verbrec.data.csv_files import RowFilter
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import EVENT_TYPES, CanonicalData, DataError
from lit_verbrec.data.tables import Table, column_batches, locate, read_head, read_table
from lit_verbrec.data.user_sample import UserSample

__all__ = ["LogSource", "open_log", "parse_interactions", "parse_timestamps", "read_logs"]

_REQUIRED = {"interactions": ("user", "item", "timestamp"), "items": ("item", "title")}
_BLANK_DURATION = ("", "nan", "null", "none", "na")
_MINUTES_PER = {"min": 1.0, "s": 60.0, "ms": 60_000.0}
# Seconds of 0001-01-01 and 9999-12-31T23:59:59: beyond them no calendar date exists.
_MIN_S, _MAX_S = -62_135_596_800, 253_402_300_799
# An ISO time followed by an offset: the offset is dropped so the local clock reading stays.
_ISO_OFFSET = r"(\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


def _text(values: pd.Series) -> pd.Series:
    """Cells as strings, "" for missing ones (Parquet nulls, CSV empty cells alike)."""
    if values.dtype == "str" and not values.hasnans:
        return values  # CSV cells: already text, nothing to convert
    if values.dtype == object:
        return values.astype(str).where(values.notna(), "")
    # Arrow casts numbers to text without a Python object per cell.
    text = pa.array(values, from_pandas=True).cast(pa.string()).fill_null("")
    return pd.Series(text.to_pandas(), index=values.index)


def _numbers(values: pd.Series) -> pd.Series:
    """float64; text that is not a number becomes NaN."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    return pd.to_numeric(_text(values).str.strip(), errors="coerce").astype("float64")


def parse_timestamps(values: pd.Series, fmt: str) -> pd.Series:
    """datetime64[s] per data.timestamp_format (unix, unix_ms, iso, strptime pattern); NaT where unparsable.

    A time zone or ISO offset is dropped keeping the local clock reading: the template shows
    the hour the user saw. Parquet timestamp columns are taken as they are, whatever `fmt`.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    elif fmt in ("unix", "unix_ms"):
        seconds = _numbers(values).to_numpy() / (1000.0 if fmt == "unix_ms" else 1.0)
        ok = np.isfinite(seconds) & (seconds >= _MIN_S) & (seconds <= _MAX_S)
        whole = np.floor(np.where(ok, seconds, 0)).astype(np.int64).astype("datetime64[s]")
        return pd.Series(np.where(ok, whole, np.datetime64("NaT", "s")), index=values.index)
    else:
        text = _text(values).str.strip()
        if fmt == "iso":
            # RE2 through Arrow: pandas runs Python's re per cell when the replacement has a group.
            stripped = pc.replace_substring_regex(pa.array(text), pattern=_ISO_OFFSET, replacement=r"\1")
            text = pd.Series(stripped.to_pandas(), index=values.index)
        try:
            parsed = pd.to_datetime(text, format="ISO8601" if fmt == "iso" else fmt, errors="coerce")
        except (ValueError, TypeError) as exc:
            raise DataError(f"data.timestamp_format={fmt}: {exc}") from None
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_localize(None)
    return parsed.astype("datetime64[s]")


def _mapped(raw: pd.DataFrame, mapping: dict[str, str], section: str, name: str, table: str) -> dict[str, str]:
    """Canonical name -> source column for the columns the file has; errors for missing ones."""
    present = {}
    for key, column in mapping.items():
        required = key in _REQUIRED[table]
        if column == "" and required:
            raise DataError(f"data.{section}.{key}: must name a column ({key} is required)")
        if column == "":
            continue
        if column not in raw.columns:
            hint = "" if required else f"; set data.{section}.{key}='' if the file has none"
            listed = ", ".join(str(c) for c in raw.columns if c not in (ROW, PART))
            raise DataError(f"{name}: missing column '{column}' (mapped from data.{section}.{key}){hint}; columns present: {listed}")
        present[key] = column
    return present


def _interactions(raw: pd.DataFrame, cfg: DataConfig, report: DataReport, name: str, label: str) -> pd.DataFrame:
    source = _mapped(raw, asdict(cfg.columns), "columns", name, "interactions")
    extras = [c for c in raw.columns if c not in source.values() and c not in (ROW, PART)]
    clash = [c for c in extras if c in asdict(cfg.columns)]
    if clash:
        raise DataError(f"{name}: column '{clash[0]}' is not mapped to data.columns.{clash[0]} but has a canonical "
                        f"name; map it or rename it in the file")
    user, item = _text(raw[source["user"]]), _text(raw[source["item"]])
    timestamp = parse_timestamps(raw[source["timestamp"]], cfg.timestamp_format)
    if "event" in source:
        values = _text(raw[source["event"]])
        table = {**{e: e for e in EVENT_TYPES}, **cfg.event_map}
        codes, uniques = pd.factorize(values)
        # Look up each distinct value once, not each row; unmapped values become None (bad rows).
        mapped = np.array([table[u] if u in table else None for u in uniques], dtype=object)
        event = pd.Series(mapped[codes], index=raw.index)
    else:
        event = pd.Series("play", index=raw.index)
    if "duration" in source:
        number = _numbers(raw[source["duration"]])
        blank = _text(raw[source["duration"]]).str.strip().str.lower().isin(_BLANK_DURATION)
        unparsable = (number.isna() & ~blank) | np.isinf(number)
        negative = number < 0
        duration = (number / _MINUTES_PER[cfg.duration_unit]).where(~unparsable & ~negative)
    else:
        duration = pd.Series(np.nan, index=raw.index)
        unparsable = negative = pd.Series(False, index=raw.index)

    # (reason, mask, source column, problem); a row is counted under the first check it fails.
    checks = [
        ("rows with empty user or item ids", user == "", source["user"], lambda v: "empty user id"),
        ("rows with empty user or item ids", item == "", source["item"], lambda v: "empty item id"),
        ("rows with unparsable timestamps", timestamp.isna(), source["timestamp"],
         lambda v: f"cannot parse timestamp '{v}' (data.timestamp_format={cfg.timestamp_format})"),
    ]
    if "event" in source:
        checks.append(("rows with unknown events", event.isna(), source["event"],
                       lambda v: f"unknown event '{v}' (expected one of {', '.join(EVENT_TYPES)} or a key of data.event_map)"))
    if "duration" in source:
        checks += [("rows with unparsable durations", unparsable, source["duration"],
                    lambda v: f"cannot parse duration '{v}' (data.duration_unit={cfg.duration_unit})"),
                   ("rows with negative durations", negative, source["duration"], lambda v: f"negative duration '{v}'")]
    bad = _apply_checks(raw, checks, cfg.on_bad_row, report, name, label)
    frame = pd.DataFrame({"user": user, "item": item, "timestamp": timestamp, "event": event, "duration": duration})
    return pd.concat([frame, raw[[*extras, *locations(raw).columns]]], axis=1)[~bad]


def _apply_checks(raw: pd.DataFrame, checks: list, on_bad_row: str, report: DataReport, name: str, label: str) -> np.ndarray:
    """Mask of rows to drop; raises for the earliest bad row when on_bad_row is error."""
    rows = locations(raw)
    bad = np.zeros(len(raw), dtype=bool)
    firsts = []
    for reason, mask, column, problem in checks:
        new = mask.to_numpy(dtype=bool) & ~bad
        if not new.any():
            continue
        i = int(np.argmax(new))
        where, value = f"{location(name, rows, label, i)}, column '{column}'", _shown(raw[column].iloc[i])
        firsts.append((i, f"{where}: {problem(value)}"))
        if on_bad_row == "skip":
            report.skip(reason, int(new.sum()), f"{where}: '{value}'")
        bad |= new
    if firsts and on_bad_row == "error":
        raise DataError(min(firsts, key=lambda first: first[0])[1])
    return bad


def _shown(value: object) -> str:
    """A cell as quoted in messages: long values cut so one bad row cannot flood the log."""
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole_numbers(raw: pd.DataFrame, column: str, name: str, label: str) -> pd.Series:
    """Nullable Int32 (year, episode); blank cells are null, anything else not whole is an error."""
    number = _numbers(raw[column])
    blank = _text(raw[column]).str.strip() == ""
    bad = (number.isna() & ~blank) | (number.notna() & ((number % 1 != 0) | (number.abs() > 2**31 - 1)))
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise DataError(f"{location(name, locations(raw), label, i)}, column '{column}': cannot parse whole number "
                        f"'{_shown(raw[column].iloc[i])}'")
    return number.astype("Int32")


def _lists(values: pd.Series, separator: str) -> pd.Series:
    """Parquet list cells as they are; text cells split on data.list_separator."""
    present = values[values.notna()]
    if len(present) and isinstance(present.iloc[0], (list, tuple, np.ndarray)):
        return values
    return pd.Series(split_list_cells(pa.array(_text(values), pa.string()), separator).to_pandas(), index=values.index)


def _items(raw: pd.DataFrame, cfg: DataConfig, name: str, label: str) -> pd.DataFrame:
    source = _mapped(raw, asdict(cfg.item_columns), "item_columns", name, "items")
    frame = pd.DataFrame({"item": _text(raw[source["item"]]), "title": _text(raw[source["title"]])}, index=raw.index)
    for key in ("item", "title"):
        empty = (frame[key] == "").to_numpy()
        if empty.any():
            i = int(np.argmax(empty))
            raise DataError(f"{location(name, locations(raw), label, i)}, column '{source[key]}': empty {key}")
    none = pd.Series([None] * len(raw), index=raw.index, dtype=object)
    for key in ("year", "episode"):
        frame[key] = _whole_numbers(raw, source[key], name, label) if key in source else pd.Series(pd.NA, index=raw.index, dtype="Int32")
    for key in ("genres", "tags"):
        frame[key] = _lists(raw[source[key]], cfg.list_separator) if key in source else none
    # An empty kind cell is a movie, like an absent kind column; other values are checked by finalize.
    frame["kind"] = _text(raw[source["kind"]]).replace("", "movie") if "kind" in source else "movie"
    frame["series_id"] = _text(raw[source["series_id"]]).replace("", None) if "series_id" in source else none
    return frame.assign(**{c: raw[c] for c in locations(raw).columns})


@dataclass
class LogSource:
    """A log and its catalog, found and checked before the full read (`open_log`)."""
    log: Table
    items: pd.DataFrame         # the catalog, parsed and checked
    items_label: str            # "line" or "row", for the catalog's messages
    sample: UserSample | None   # data.sample_users' users; None: every user

    def keep(self, cfg: DataConfig) -> RowFilter | None:
        """The row filter of the sample, applied while the log is read."""
        sample, user = self.sample, cfg.columns.user
        return None if sample is None else (lambda batch: sample.mask(batch.column(user)))


def open_log(cfg: DataConfig) -> LogSource:
    """Fail fast: the catalog (small) is read and checked first, then the log's first rows (tables.HEAD_ROWS)
    (its mapped columns, and with on_bad_row=error its first bad row: the earliest in the file, so
    the same message the full read would give), and only then may the whole log be read."""
    folder = Path(cfg.path)
    log, catalog = locate(folder, cfg.interactions), locate(folder, cfg.items)   # both there, before reading either
    raw_items, items_label = read_table(catalog, cfg.encoding)
    items = _items(raw_items, cfg, cfg.items, items_label)
    head = read_head(log, cfg.encoding)
    if head is not None:
        _mapped(head[0], asdict(cfg.columns), "columns", cfg.interactions, "interactions")   # before any pass
    sample, user = _sample(cfg, log), cfg.columns.user
    if head is not None:
        rows = head[0] if sample is None else head[0][sample.mask(pa.array(_text(head[0][user])))]
        parse_interactions(rows, cfg, DataReport(), head[1])   # raises, or counts into a throwaway report
    return LogSource(log, items, items_label, sample)


def parse_interactions(raw: pd.DataFrame, cfg: DataConfig, report: DataReport, label: str) -> pd.DataFrame:
    """A frame of the log's rows (all of it, or a batch) as canonical columns, bad rows raised or counted."""
    return _interactions(raw, cfg, report, cfg.interactions, label)


def read_logs(cfg: DataConfig, report: DataReport) -> CanonicalData:
    """Canonical tables from `cfg.path / cfg.interactions` and `cfg.path / cfg.items`, the users of
    `cfg.sample_users` only (user_sample.py; filtered as the log is read), the whole log in memory
    (in shards of users: data/shards.py)."""
    source = open_log(cfg)
    raw, label = read_table(source.log, cfg.encoding, source.keep(cfg))
    if len(raw) == 0:
        raise DataError(f"{cfg.interactions}: no row is of a user in data.sample_users={cfg.sample_users:g}")
    interactions = parse_interactions(raw, cfg, report, label)
    return finalize(interactions, source.items, report, cfg.interactions, items_source=cfg.items,
                    row_label=label, items_row_label=source.items_label)


def _sample(cfg: DataConfig, log: Table) -> UserSample | None:
    """data.sample_users' users (None: all); a count reads the user column once to find them."""
    batches = (column_batches(log, cfg.columns.user, cfg.encoding)
               if cfg.sample_users >= 1 else None)
    return UserSample.of(cfg.sample_users, batches)
