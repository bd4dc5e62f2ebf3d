"""Pass 1 of a sharded preparation (data/shard_passes.py): the log streamed into shards of users.

Each batch of the log (data/tables.py table_frames; the user sample applied while reading) is parsed
and checked by the in-memory path's code (data/logs.py parse_interactions), given its shard (a
vectorised hash of the user id, mod the shard count) and written by Arrow's dataset writer into
`shard=k/` folders, a chunk of rows per writer call. The log's time span is taken on the way.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from lit_verbrec.config.data_schema import DataConfig
from lit_verbrec.data.draws import mix
from lit_verbrec.data.logs import LogSource, parse_interactions
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import DataError
from lit_verbrec.data.tables import Table, table_frames

__all__ = ["PARTITION_CHUNK_ROWS", "SHARD", "id_hashes", "partition_log"]

SHARD = "shard"
ROW_GROUP_ROWS = 1 << 16
"""Rows per row group of the partitioned log (and at most held per open shard file)."""
PARTITION_CHUNK_ROWS = 1 << 20
"""Rows of the log partitioned by one call of Arrow's dataset writer: what the partition pass holds."""


def partition_log(cfg: DataConfig, source: LogSource, catalog: pa.Table, shards: int, folder: Path,
                  report: DataReport) -> dict:
    """Stream the log into `folder/shard=k/` (Arrow's dataset writer), parsed and checked (bad rows
    raised, or counted in `report`); {"rows", "label", "first", "last"}: rows written, how messages
    number them, the first and last timestamp (seconds) of rows on catalog items."""
    seen = {"rows": 0, "label": "row", "first": None, "last": None}
    items = catalog["item"]

    def batches():
        schema = None
        for frame, label in table_frames(source.log, cfg.encoding, source.keep(cfg)):
            rows = parse_interactions(frame, cfg, report, label)
            if len(rows) == 0:
                continue
            table = pa.Table.from_pandas(rows, preserve_index=False)
            shard = pa.array((id_hashes(table["user"]) % np.uint64(shards)).astype(np.int32))
            table = table.append_column(SHARD, shard)
            schema = schema or _stable(table.schema)
            table = _cast(table, schema, source.log)
            on_catalog = pc.filter(table["timestamp"].cast(pa.int64()), pc.is_in(table["item"], value_set=items))
            if len(on_catalog):
                first, last = pc.min(on_catalog).as_py(), pc.max(on_catalog).as_py()
                seen["first"] = first if seen["first"] is None else min(seen["first"], first)
                seen["last"] = last if seen["last"] is None else max(seen["last"], last)
            seen["rows"] += table.num_rows
            seen["label"] = label
            yield from table.to_batches()

    stream = batches()
    pending = [next(stream, None)]
    if pending[0] is None:
        raise DataError(f"{cfg.interactions}: no interactions" + (
            f" (no row is of a user in data.sample_users={cfg.sample_users:g})" if cfg.sample_users else ""))
    schema = pending[0].schema

    def chunk():
        """The stream's next PARTITION_CHUNK_ROWS rows (pending[0]: the batch after them, None at the end)."""
        rows, batch = 0, pending[0]
        while batch is not None and rows < PARTITION_CHUNK_ROWS:
            yield batch
            rows += batch.num_rows
            batch = next(stream, None)
        pending[0] = batch

    # One write_dataset call per chunk: each call has written its rows when it returns, so memory
    # holds about one chunk. In one call for the whole log the writer's memory grew with the log
    # (100M rows into 50 shards: 1.35 GB peak RSS, 0.42 GB in chunks). Part files are numbered by
    # chunk, so a shard's files read in path order give its rows in the log's order.
    for number in itertools.count():
        if pending[0] is None:
            break
        ds.write_dataset(chunk(), folder, schema=schema, format="parquet", preserve_order=True,
                         partitioning=ds.partitioning(pa.schema([(SHARD, pa.int32())]), flavor="hive"),
                         existing_data_behavior="overwrite_or_ignore", basename_template=f"part-{number:06d}-{{i}}.parquet",
                         max_rows_per_group=ROW_GROUP_ROWS)
    if seen["first"] is None:
        raise DataError(f"{cfg.interactions}: no interactions left: none is on an item of the catalog {cfg.items}")
    return seen


_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


def id_hashes(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """[n] uint64 FNV-1a hash of each id's UTF-8 text, vectorised over the rows (one pass per byte
    position), then splitmix-mixed so that `% shards` spreads evenly. Only which shard a user goes to
    depends on it. Not user_sample's BLAKE2b: that one loops in Python over a batch's distinct ids,
    about 45 ms per 65,536 rows of a time-ordered log, where most rows are of distinct users."""
    text = pc.cast(ids, pa.large_string()).fill_null("")
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset:text.offset + len(text) + 1]
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8) if text.buffers()[2] else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    hashes = np.full(len(text), _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(int(lengths.max(initial=0))):
            live = np.flatnonzero(lengths > j)
            hashes[live] = (hashes[live] ^ data[starts[live] + j].astype(np.uint64)) * _FNV_PRIME
    return mix(hashes)


def _stable(schema: pa.Schema) -> pa.Schema:
    """The batch schema every batch is cast to: large strings as strings, a part file's name as a
    dictionary with room for any number of part files."""
    fields = [pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if pa.types.is_dictionary(f.type)
              else pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f for f in schema]
    return pa.schema(fields)


def _cast(table: pa.Table, schema: pa.Schema, log: Table) -> pa.Table:
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError) as exc:
        raise DataError(f"{log.name}: a batch of the log does not have the columns or types of its first rows "
                        f"({exc}); part files of one log need one schema") from None
