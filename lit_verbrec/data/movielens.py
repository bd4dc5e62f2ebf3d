"""Read an unpacked MovieLens folder (100K, 1M, 25M or latest) into the canonical tables.

The layout is detected by the files present:

    ML-100K   u.data (user<TAB>item<TAB>rating<TAB>timestamp), u.item (latin-1, `|`-separated,
              19 genre flags; genre names from u.genre when present)
    ML-1M     ratings.dat (UserID::MovieID::Rating::Timestamp), movies.dat (latin-1,
              MovieID::Title::Genres with `|` between genres)
    ML-25M    ratings.csv, movies.csv (UTF-8, header, quoted titles), optional tags.csv

Mapping onto streaming events (MovieLens has ratings only):

* every rating is a `play` with unknown duration (null);
* a rating >= 4 is also a `thumb_up` at the same timestamp, placed right after its play (the
  stable sort in `finalize` keeps it there);
* the year is the trailing "(1995)" of the title and is removed from it ("Seven (Se7en)
  (1995)" -> "Seven (Se7en)", 1995); a title without one keeps its text and has no year;
* genres "(no genres listed)" (25M) and "unknown" (100K) become an empty list;
* tags (25M/latest, tags.csv): a movie's 10 most frequent tags, lower-cased, ties
  alphabetical; every item is a `movie`;
* timestamps are the files' Unix seconds (UTC: MovieLens does not know users' time zones).

Files are parsed with pyarrow.csv (multi-threaded); the 1M `::` separator is replaced by a tab
in the raw bytes first, because pandas' regex separator runs a Python loop per line.
Interactions carry `_row`, the 1-based line number in the ratings file, so skips name lines
(MovieLens files have no blank lines, so record i is line i, or i + 1 below a header).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lit_verbrec.data.canonical import ROW, finalize, split_list_cells
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import CanonicalData, DataError

__all__ = ["GENRES_100K", "read_movielens", "split_title_year"]

GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
               "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
               "Romance", "Sci-Fi", "Thriller", "War", "Western")
"""Genre flag order of u.item, used when u.genre is absent."""

_NO_GENRE = ("(no genres listed)", "unknown")
_MAX_TAGS = 10
_THUMB_RATING = 4.0
# Greedy title group: only the last "(dddd)" is the year, inner parentheses stay in the title.
_TITLE_YEAR = r"^(?P<title>.*\S)\s*\((?P<year>\d{4})\)\s*$"
_RATINGS = {"user": pa.string(), "item": pa.string(), "rating": pa.float64(), "timestamp": pa.int64()}


def split_title_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """("Toy Story (1995)", ...) -> titles without the trailing year, years (Int32, null if none)."""
    titles = titles.astype(str).str.strip()
    parts = titles.str.extract(_TITLE_YEAR)
    has_year = parts["year"].notna()
    return titles.where(~has_year, parts["title"]), pd.to_numeric(parts["year"]).astype("Int32")


def _read(path: Path, columns: dict[str, pa.DataType], *, delimiter: str, header: bool,
          encoding: str = "utf-8", double_colon: bool = False) -> pa.Table:
    """One delimited file as an Arrow table with the given column names and types."""
    data = path.read_bytes()
    if double_colon:
        # ':' is one byte in latin-1 and UTF-8 alike, so this is safe before decoding.
        data = data.replace(b"::", delimiter.encode())
    if encoding != "utf-8":
        data = data.decode(encoding).encode("utf-8")
    names = list(columns)
    read = pacsv.ReadOptions(column_names=None if header else names)
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if header else False)
    convert = pacsv.ConvertOptions(column_types=columns, include_columns=names)
    try:
        return pacsv.read_csv(pa.BufferReader(data), read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise DataError(f"{path.name}: {exc}") from None


def _ratings(path: Path, *, delimiter: str, header: bool, double_colon: bool = False,
             names: tuple[str, ...] = ("user", "item", "rating", "timestamp")) -> pa.Table:
    table = _read(path, dict(zip(names, _RATINGS.values(), strict=True)), delimiter=delimiter, header=header,
                  double_colon=double_colon).rename_columns(list(_RATINGS))
    return table.append_column(ROW, pa.array(np.arange(1, table.num_rows + 1) + int(header)))


def _events(ratings: pa.Table) -> pd.DataFrame:
    """One play per rating, plus a thumb_up right after it when the rating is >= 4."""
    thumb = pc.greater_equal(ratings.column("rating"), _THUMB_RATING).to_numpy(zero_copy_only=False)
    source_row = np.repeat(np.arange(ratings.num_rows), 1 + thumb.astype(np.int64))
    second = np.zeros(len(source_row), dtype=bool)
    second[1:] = source_row[1:] == source_row[:-1]
    frame = ratings.select(["user", "item", ROW]).take(pa.array(source_row)).to_pandas()
    seconds = ratings.column("timestamp").to_numpy()[source_row]
    return frame.assign(timestamp=seconds.astype("datetime64[s]"), event=np.where(second, "thumb_up", "play"),
                        duration=np.nan)[["user", "item", "timestamp", "event", "duration", ROW]]


def _catalog(ids: pa.Array, titles: pa.Array, genres: pa.Array, tags: pd.Series | None, header: bool) -> pd.DataFrame:
    title, year = split_title_year(titles.to_pandas())
    n = len(ids)
    return pd.DataFrame({
        "item": ids.to_pandas(), "title": title, "year": year,
        "genres": genres.to_pandas(), "tags": None if tags is None else tags.to_numpy(),
        "kind": "movie", "series_id": pd.Series([None] * n, dtype=object),
        "episode": pd.array([None] * n, dtype="Int32"),
        ROW: np.arange(1, n + 1) + int(header),
    })


def _genre_names(folder: Path) -> tuple[str, ...]:
    """u.genre lines "Action|1", ordered by their index; the standard 19 when absent."""
    path = folder / "u.genre"
    if not path.is_file():
        return GENRES_100K
    pairs = [line.rsplit("|", 1) for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]
    try:
        return tuple(name for name, _ in sorted(pairs, key=lambda pair: int(pair[1])))
    except (ValueError, IndexError):
        raise DataError("u.genre: expected lines 'name|index'") from None


def _read_100k(folder: Path) -> tuple[pa.Table, pd.DataFrame]:
    ratings = _ratings(folder / "u.data", delimiter="\t", header=False)
    names = _genre_names(folder)
    columns = {"item": pa.string(), "title": pa.string(), "release": pa.string(), "video": pa.string(),
               "url": pa.string(), **{f"g{i}": pa.int8() for i in range(len(names))}}
    table = _read(folder / "u.item", columns, delimiter="|", header=False, encoding="latin-1")
    flags = np.column_stack([table.column(f"g{i}").to_numpy(zero_copy_only=False) for i in range(len(names))])
    named = np.array([name not in _NO_GENRE for name in names])
    rows, cols = np.nonzero((flags == 1) & named)
    # Row-major nonzero keeps each movie's genres together, in u.genre order.
    offsets = np.searchsorted(rows, np.arange(table.num_rows + 1)).astype(np.int32)
    genres = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.asarray(names, dtype=object)[cols], pa.string()))
    return ratings, _catalog(table.column("item"), table.column("title"), genres, None, header=False)


def _read_1m(folder: Path) -> tuple[pa.Table, pd.DataFrame]:
    ratings = _ratings(folder / "ratings.dat", delimiter="\t", header=False, double_colon=True)
    columns = {"item": pa.string(), "title": pa.string(), "genres": pa.string()}
    table = _read(folder / "movies.dat", columns, delimiter="\t", header=False, encoding="latin-1", double_colon=True)
    genres = split_list_cells(table.column("genres").combine_chunks(), "|", drop=_NO_GENRE)
    return ratings, _catalog(table.column("item"), table.column("title"), genres, None, header=False)


def _top_tags(path: Path) -> pd.Series:
    """movieId -> its most frequent tags (lower-cased, at most 10, ties alphabetical)."""
    table = _read(path, {"movieId": pa.string(), "tag": pa.string()}, delimiter=",", header=True)
    tags = pd.DataFrame({"item": table.column("movieId").to_pandas(),
                         "tag": table.column("tag").to_pandas().str.strip().str.lower()})
    counts = tags[tags["tag"] != ""].groupby(["item", "tag"]).size().rename("n").reset_index()
    counts = counts.sort_values(["item", "n", "tag"], ascending=[True, False, True], kind="stable")
    return counts.groupby("item").head(_MAX_TAGS).groupby("item", sort=False)["tag"].agg(list)


def _read_25m(folder: Path) -> tuple[pa.Table, pd.DataFrame]:
    ratings = _ratings(folder / "ratings.csv", delimiter=",", header=True,
                       names=("userId", "movieId", "rating", "timestamp"))
    columns = {"movieId": pa.string(), "title": pa.string(), "genres": pa.string()}
    table = _read(folder / "movies.csv", columns, delimiter=",", header=True)
    genres = split_list_cells(table.column("genres").combine_chunks(), "|", drop=_NO_GENRE)
    ids = table.column("movieId")
    tags = ids.to_pandas().map(_top_tags(folder / "tags.csv")) if (folder / "tags.csv").is_file() else None
    return ratings, _catalog(ids, table.column("title"), genres, tags, header=True)


_LAYOUTS = (  # (ratings file, movies file, name, reader)
    ("u.data", "u.item", "ML-100K", _read_100k),
    ("ratings.dat", "movies.dat", "ML-1M", _read_1m),
    ("ratings.csv", "movies.csv", "ML-25M / latest", _read_25m),
)


def read_movielens(folder: str | Path, report: DataReport) -> CanonicalData:
    """Canonical tables from an unpacked MovieLens folder; see the module docstring for the mapping."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (data.path for data.source=movielens)")
    for ratings_name, movies_name, _, reader in _LAYOUTS:
        if (folder / ratings_name).is_file() and (folder / movies_name).is_file():
            ratings, items = reader(folder)
            return finalize(_events(ratings), items, report, ratings_name, items_source=movies_name)
    looked_for = "; ".join(f"{r} + {m} ({name})" for r, m, name, _ in _LAYOUTS)
    found = sorted(p.name for p in folder.iterdir())
    raise DataError(f"{folder}: not a MovieLens folder: looked for {looked_for}; found: {', '.join(found[:20]) or 'nothing'}")
