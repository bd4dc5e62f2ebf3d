"""Items <-> titles. A *title* is what a user discovers and what a candidate stands for:
the series for an episode (its `series_id`), else the item itself. A series is shown as
its representative item, the episode with the lowest number.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class TitleIndex:
    def __init__(self, items: pa.Table) -> None:
        self.items = items["item"].combine_chunks()                       # [I] item ids
        series = items["series_id"].combine_chunks()
        # Series ids and item ids may share a namespace: prefix keeps them apart.
        key = pc.if_else(pc.is_null(series), pc.binary_join_element_wise("item", self.items, ":"),
                         pc.binary_join_element_wise("series", series, ":"))
        encoded = pc.dictionary_encode(key)
        self.item_title = np.asarray(encoded.indices, dtype=np.int64)   # [I] title code of each item
        self.n_titles = len(encoded.dictionary)
        episode = items["episode"].combine_chunks().fill_null(0).to_numpy(zero_copy_only=False)
        # Representative item per title: lowest episode number (first row on ties).
        order = np.lexsort((np.arange(len(episode)), episode, self.item_title))
        first = np.r_[True, self.item_title[order][1:] != self.item_title[order][:-1]]
        self.rep = np.empty(self.n_titles, dtype=np.int64)                 # [T] item code
        self.rep[self.item_title[order[first]]] = order[first]

    def item_code(self, item_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Row of each id in the catalog; every id must be in it (canonical data guarantees that)."""
        codes = pc.index_in(item_ids, value_set=self.items)
        if codes.null_count:
            missing = pc.filter(item_ids, pc.is_null(codes))[0]
            raise KeyError(f"item {missing.as_py()!r} is not in the catalog")
        return np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64)

    def title_of(self, item_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        return self.item_title[self.item_code(item_ids)]

    def rep_item_code(self, title_codes: np.ndarray) -> np.ndarray:
        return self.rep[title_codes]
