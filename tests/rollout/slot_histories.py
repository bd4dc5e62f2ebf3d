"""Shared by the slot sampler tests: a tiny LoRA size and random action-verbalizer histories."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from lit_verbrec.config.schema import LoraConfig, SizeConfig

SIZE = SizeConfig(name="tiny", tokenizer="builtin", lora=LoraConfig(rank=8, alpha=16, dropout=0.0))


def history(n_lines: int, seed: int) -> list[dict]:
    """`n_lines` interactions a few hours apart with random 6-digit item ids."""
    rng = random.Random(seed)
    start = datetime(2025, 6, 1) + timedelta(hours=rng.randrange(1000))
    return [{"timestamp": start + timedelta(hours=7 * t + rng.randrange(5)), "item": rng.randrange(100000, 999999)}
            for t in range(n_lines)]
