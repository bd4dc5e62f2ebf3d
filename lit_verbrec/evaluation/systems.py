"""The systems `tools/evaluate.py` can score, one table from name to predictor.

A row name is `reasoner` or `reasoner/verbalization`:

    random                           a seeded uniform pick (the chance floor: 1/N)
    popularity                       the candidate with the most plays outside val/test targets
    lexical/template                 the lexical reasoner on the paper's template text
    lexical/template+metadata        ... with year, genres and plot tags on every line
    lexical/taste-lines+metadata     ... keeping only the lines the synthetic log marks as the main
                                     viewer's taste (needs its `origin` column): what perfect
                                     noise filtering would give, a reference for stage 1

A predictor maps (examples, catalog, popularity) to chosen indices, -1 for an invalid answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from lit_verbrec.data.catalog import Catalog
from lit_verbrec.oracle.lexical import lexical_choice
from lit_verbrec.text.template import METADATA_FIELDS, verbalize_template

Predictor = Callable[[pa.Table, Catalog, dict[str, int], int], np.ndarray]


@dataclass(frozen=True)
class System:
    predict: Predictor
    needs_history_column: str = ""
    """A history field the system needs (rows whose data lack it are reported as unavailable)."""


def _random(examples: pa.Table, catalog: Catalog, popularity: dict[str, int], seed: int) -> np.ndarray:
    sizes = np.array([len(c) for c in examples["candidates"].to_pylist()])
    return np.random.default_rng(seed).integers(0, sizes)


def _popularity(examples: pa.Table, catalog: Catalog, popularity: dict[str, int], seed: int) -> np.ndarray:
    return np.array([int(np.argmax([popularity[c] for c in cands])) for cands in examples["candidates"].to_pylist()])


def _lexical(metadata: tuple[str, ...], keep_origins: tuple[str, ...] = ()) -> Predictor:
    def predict(examples: pa.Table, catalog: Catalog, popularity: dict[str, int], seed: int) -> np.ndarray:
        preds = []
        for history, cands in zip(examples["history"].to_pylist(), examples["candidates"].to_pylist()):
            if keep_origins:
                history = [h for h in history if h["origin"] in keep_origins]
            preds.append(lexical_choice(verbalize_template(history, catalog, metadata), cands, catalog))
        return np.array(preds, dtype=np.int64)
    return predict


SYSTEMS: dict[str, System] = {
    "random": System(_random),
    "popularity": System(_popularity),
    "lexical/template": System(_lexical(())),
    "lexical/template+metadata": System(_lexical(METADATA_FIELDS)),
    "lexical/taste-lines+metadata": System(_lexical(METADATA_FIELDS, ("taste",)), "origin"),
}
