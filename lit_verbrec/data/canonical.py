"""The last step of every reader: validate, de-duplicate, drop orphans, sort, convert to Arrow.

Readers (MovieLens, generic logs, ...) only rename and parse; they hand two pandas frames with
canonical column names to `finalize`, so the rules that do not depend on the source live in
one place and every source is cleaned the same way:

* empty tables and duplicate item ids are errors (nothing sensible can be built from them);
* exact duplicate interactions (same user, item, timestamp, event) and interactions on items
  missing from the catalog are skipped and counted in the `DataReport`, first one named;
* interactions are sorted by (user, timestamp) with a stable sort, so events at the same second
  keep the order the reader gave them (a MovieLens thumb stays after its play).

A reader may add a `_row` column (source line number, or 1-based row for Parquet) to either
frame: messages then say "<file> line N" and the column is dropped from the output; a folder
source adds `_part` too (the part file of each row): "<folder>/<part> row N".
Everything is vectorised: a million interactions take a fraction of a second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import EVENT_TYPES, INTERACTIONS, ITEMS, CanonicalData, DataError

__all__ = ["PART", "ROW", "catalog_table", "finalize", "locations", "location", "split_list_cells"]

ROW = "_row"
"""Optional column with each row's source line (or Parquet row) number, used in messages only."""
PART = "_part"
"""Optional column (categorical) with each row's part file, relative to a folder source; messages only."""

_KEY = ["user", "item", "timestamp", "event"]
_LIST = pa.list_(pa.string())


def split_list_cells(cells: pa.Array, separator: str, drop: tuple[str, ...] = ()) -> pa.ListArray:
    """Split text cells such as "Action|Comedy" into lists: parts stripped, empty parts and
    the values in `drop` (e.g. MovieLens' "(no genres listed)") removed, null cells -> []."""
    if not separator:
        raise DataError("data.list_separator: must not be empty")
    cells = pc.fill_null(cells.cast(pa.string()), "")
    lists = pc.split_pattern(cells, pattern=separator)
    parts = pc.utf8_trim_whitespace(lists.flatten())
    parents = pc.list_parent_indices(lists)
    keep = pc.and_(pc.not_equal(pc.utf8_length(parts), 0), pc.invert(pc.is_in(parts, pa.array(drop, pa.string()))))
    parts, parents = parts.filter(keep), parents.filter(keep).to_numpy()
    # Parents are ascending, so each cell's surviving parts are one contiguous run.
    offsets = np.searchsorted(parents, np.arange(len(cells) + 1)).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), parts)


def location(source: str, rows: pd.DataFrame | None, label: str, i: int) -> str:
    """The most specific place we know for row i: "<source> line N", "<source>/<part> row N" for a
    folder source, else the source alone. `rows`: `locations(frame)`."""
    if rows is None:
        return source
    part = f"/{rows[PART].iat[i]}" if PART in rows.columns else ""
    return f"{source}{part} {label} {int(rows[ROW].iat[i])}"


def locations(frame: pd.DataFrame) -> pd.DataFrame | None:
    """The frame's location columns (_row, and _part where there is one), None without _row."""
    return frame[[c for c in (ROW, PART) if c in frame.columns]] if ROW in frame.columns else None


def _require_columns(frame: pd.DataFrame, names: list[str], source: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing canonical column(s) {', '.join(missing)}; columns present: {', '.join(map(str, frame.columns))}")


def _first_bad(mask: np.ndarray, source: str, rows: pd.DataFrame | None, label: str, problem: str) -> None:
    """Raise for the first True in `mask`: a reader should have caught these, so it is a bug or bad data."""
    if mask.any():
        raise DataError(f"{location(source, rows, label, int(np.argmax(mask)))}: {problem}")


def _timestamps(values: pd.Series, source: str) -> pd.Series:
    """datetime64[s] wall-clock time; a time zone is dropped keeping the local clock reading."""
    if not pd.api.types.is_datetime64_any_dtype(values):
        try:
            values = pd.to_datetime(values, unit="s") if pd.api.types.is_numeric_dtype(values) else pd.to_datetime(values)
        except (ValueError, TypeError, OverflowError) as exc:
            raise DataError(f"{source}: timestamps cannot be converted ({exc})") from None
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_localize(None)
    return values.astype("datetime64[s]")


def _items_table(items: pd.DataFrame, source: str, label: str) -> pa.Table:
    _require_columns(items, ITEMS.names, source)
    rows = locations(items)
    ids = items["item"]
    _first_bad((ids.isna() | (ids.astype(str) == "")).to_numpy(), source, rows, label, "empty item id")
    ids = ids.astype(str)
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        first = int(np.argmax((ids == ids.iloc[i]).to_numpy()))
        earlier = f" (first at {location(source, rows, label, first)})" if rows is not None else ""
        raise DataError(f"{location(source, rows, label, i)}: duplicate item id '{ids.iloc[i]}' in the catalog{earlier}")
    _first_bad(items["title"].isna().to_numpy(), source, rows, label, "item has no title")
    kind = items["kind"]
    _first_bad((~kind.isin(["movie", "series"])).to_numpy(), source, rows, label,
               "kind must be movie or series")
    arrays = [
        pa.array(ids, pa.string()),
        pa.array(items["title"].astype(str), pa.string()),
        pa.array(items["year"], pa.int32(), from_pandas=True),
        *(_lists(items[name]) for name in ("genres", "tags")),
        pa.array(kind.astype(str), pa.string()),
        pa.array(items["series_id"], pa.string(), from_pandas=True),
        pa.array(items["episode"], pa.int32(), from_pandas=True),
    ]
    return pa.Table.from_arrays(arrays, schema=ITEMS)


def _lists(values: pd.Series) -> pa.Array:
    """Lists (or numpy arrays, as Parquet gives them) of strings; a missing list becomes []."""
    array = pa.array(values, _LIST, from_pandas=True)
    return pc.if_else(array.is_null(), pa.scalar([], _LIST), array)


def _interactions_table(frame: pd.DataFrame) -> pa.Table:
    extras = [c for c in frame.columns if c not in INTERACTIONS.names and c not in (ROW, PART)]
    arrays = [
        pa.array(frame["user"], pa.string()),
        pa.array(frame["item"], pa.string()),
        pa.array(frame["timestamp"], pa.timestamp("s")),
        pa.array(frame["event"], pa.string()),
        pa.array(frame["duration"], pa.float64(), from_pandas=True),
    ]
    extra_arrays = [pa.Array.from_pandas(frame[c]) for c in extras]
    schema = pa.schema([*INTERACTIONS, *(pa.field(str(c), a.type) for c, a in zip(extras, extra_arrays, strict=True))])
    return pa.Table.from_arrays([*arrays, *extra_arrays], schema=schema)


def catalog_table(items: pd.DataFrame, source: str, row_label: str = "line") -> pa.Table:
    """The validated catalog (ITEMS schema) from a reader's items frame."""
    if len(items) == 0:
        raise DataError(f"{source}: no items")
    return _items_table(items, source, row_label)


def finalize(interactions: pd.DataFrame, items: pd.DataFrame | pa.Table, report: DataReport, source: str, *,
             items_source: str | None = None, row_label: str = "line",
             items_row_label: str | None = None, shard: bool = False) -> CanonicalData:
    """Validated, de-duplicated, sorted canonical tables from a reader's two frames.

    `source` names the interactions file in messages, `items_source` the catalog (default:
    `source`); `row_label` is the word before a `_row` number ("line" for text, "row" for
    Parquet), `items_row_label` the same for the catalog (default: `row_label`). `items` may be
    a `catalog_table` already. `shard`: the interactions are one shard of users of a log
    (data/shards.py), where no row left is no error (the whole log's count is checked).
    """
    items_source = source if items_source is None else items_source
    items_label = row_label if items_row_label is None else items_row_label
    catalog = items if isinstance(items, pa.Table) else catalog_table(items, items_source, items_label)
    if len(interactions) == 0 and shard:
        return CanonicalData(pa.Table.from_pylist([], schema=INTERACTIONS), catalog)
    if len(interactions) == 0:
        raise DataError(f"{source}: no interactions")
    _require_columns(interactions, INTERACTIONS.names, source)

    frame = interactions.reset_index(drop=True)
    rows = locations(frame)
    for name in ("user", "item", "event"):
        # Readers turn bad ids into counted skips; here a null would silently become "nan".
        missing = frame[name].isna() | (frame[name].astype(str) == "")
        _first_bad(missing.to_numpy(), source, rows, row_label, f"empty {name}")
    try:
        duration = pd.to_numeric(frame["duration"], errors="raise").astype("float64")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{source}: durations must be numbers of minutes ({exc})") from None
    frame = frame.assign(user=frame["user"].astype(str), item=frame["item"].astype(str),
                         event=frame["event"].astype(str), timestamp=_timestamps(frame["timestamp"], source),
                         duration=duration)
    _first_bad(frame["timestamp"].isna().to_numpy(), source, rows, row_label, "timestamp is missing")
    bad_event = ~frame["event"].isin(EVENT_TYPES).to_numpy()
    if bad_event.any():
        _first_bad(bad_event, source, rows, row_label,
                   f"event '{frame['event'].iloc[int(np.argmax(bad_event))]}' is not one of {', '.join(EVENT_TYPES)}")
    _first_bad((frame["duration"] < 0).to_numpy(), source, rows, row_label, "negative duration")

    dup = frame.duplicated(_KEY, keep="first").to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        first = f"{location(source, rows, row_label, i)} (user '{frame['user'].iat[i]}', item '{frame['item'].iat[i]}')"
        report.skip("duplicate interactions", int(dup.sum()), first)
    orphan = ~frame["item"].isin(catalog.column("item").to_pandas()).to_numpy() & ~dup
    if orphan.any():
        i = int(np.argmax(orphan))
        report.skip("interactions on items missing from the catalog", int(orphan.sum()),
                    f"{location(source, rows, row_label, i)} (item '{frame['item'].iat[i]}')")
    keep = np.flatnonzero(~dup & ~orphan)
    if len(keep) == 0 and not shard:
        raise DataError(f"{source}: no interactions left: none is on an item of the catalog {items_source}")
    # Filter and sort in one Arrow take: pandas' take on string columns is several times slower.
    return CanonicalData(_interactions_table(frame).take(keep[_order(frame, keep)]), catalog)


def _order(frame: pd.DataFrame, keep: np.ndarray) -> np.ndarray:
    """Stable order of the rows `keep` by (user, timestamp): ties keep the reader's order."""
    if len(keep) == 0:
        return keep
    users = pd.factorize(frame["user"], sort=True)[0][keep]
    seconds = frame["timestamp"].to_numpy().view("int64")[keep]
    span = int(seconds.max()) - int(seconds.min()) + 1
    if (int(users.max()) + 1) * span < 2**62:
        # One int64 key sorts about twice as fast as np.lexsort on two keys.
        return np.argsort(users.astype(np.int64) * span + (seconds - seconds.min()), kind="stable")
    return np.lexsort((seconds, users))
