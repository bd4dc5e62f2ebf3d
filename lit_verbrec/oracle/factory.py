"""`make_oracle`: the oracle `oracle.kind` names. Apart from base.py, whose interface the concrete
oracles import: a factory there would import them back (a circle).

Constructors import their module when called: the lexical path must not pay for torch (model) or the
openai client at import time.
"""

from __future__ import annotations

from pathlib import Path

from lit_verbrec.config.train_schema import OracleConfig
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.oracle.base import Oracle


def _lexical(cfg: OracleConfig, catalog: Catalog, cache_dir: Path, model, tokenizer) -> Oracle:
    from lit_verbrec.oracle.lexical import LexicalOracle

    return LexicalOracle(catalog)


def _openai(cfg: OracleConfig, catalog: Catalog, cache_dir: Path, model, tokenizer) -> Oracle:
    from lit_verbrec.oracle.openai_client import OpenAIOracle

    return OpenAIOracle(cfg, catalog, cache_dir)


def _model(cfg: OracleConfig, catalog: Catalog, cache_dir: Path, model, tokenizer) -> Oracle:
    if model is None or tokenizer is None:
        raise ValueError("oracle.kind=model needs a loaded model and tokenizer passed to make_oracle "
                         "(loading oracle.model from config happens in lit_verbrec.models)")
    from lit_verbrec.oracle.model import ModelOracle

    return ModelOracle(model, tokenizer, catalog, cfg)


ORACLE_KINDS = {"lexical": _lexical, "openai": _openai, "model": _model}
"""oracle.kind -> constructor(cfg, catalog, cache_dir, model, tokenizer)."""


def make_oracle(cfg: OracleConfig, catalog: Catalog, cache_dir: Path, model=None, tokenizer=None) -> Oracle:
    """The oracle that cfg.kind names. cache_dir: where `openai` keeps its SQLite cache."""
    return ORACLE_KINDS[cfg.kind](cfg, catalog, Path(cache_dir), model, tokenizer)
