"""Paths the tools and the configs share, in one place.

The checkout's own folders, and the offline copy of Qwen3's tokenizer and 8B/32B configs that
machines without a model hub keep beside the checkout (`../shared/qwen3-tokenizer`): the tools
use it when it is there and fall back to the hub ids of the configs otherwise.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The checkout: lit_verbrec/, configs/, tools/, benchmarks/."""
CONFIGS = REPO / "configs"
"""The YAML configs (overridden by $LIT_VERBREC_CONFIGS; config/compose.py)."""
TOOLS = REPO / "tools"
"""The user's commands (submit, evaluate, export, predict, serve_oracle, ...)."""
SHARED_QWEN3 = REPO.parent / "shared" / "qwen3-tokenizer"
"""Qwen3's real tokenizer and the Qwen3-8B/32B config.json files, offline; may be absent."""
