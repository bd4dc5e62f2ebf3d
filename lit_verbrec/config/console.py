"""What the tools print besides their results: progress bars, and no known-harmless warnings.

`progress` is the one progress bar of the project (tqdm on stderr, counting users/s or
examples/s); it hides itself for work of one step. `quiet_known_warnings` silences the messages
every tool start printed that say nothing about the run, each matched by its text at the place
it comes from, never all warnings:

- bitsandbytes logs "Failed to load CPU gemm_4bit_forward from kernels-community" when the
  optional `kernels` package is absent (its own CPU kernel is used instead);
- Lightning prints a tip to install `litlogger`;
- torch warns that `LeafSpec` is deprecated, from pytree code inside Lightning and transformers.
"""

from __future__ import annotations

import logging
import sys
import warnings

from tqdm import tqdm

KNOWN_LOG_MESSAGES = {
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward",
    "lightning.pytorch.utilities.rank_zero": "litlogger",
    "lightning.fabric.utilities.rank_zero": "litlogger",
}
"""logger name -> text of a harmless record it emits."""
KNOWN_WARNINGS = ("LeafSpec",)
"""Text of harmless Python warnings (warnings.filterwarnings `message` prefixes)."""


class _DropMatching(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_known_warnings() -> None:
    """Filter the known harmless messages (module docstring); idempotent. Call it before bitsandbytes
    is imported (it logs at import): lit_verbrec/models/loading.py does."""
    for name, text in KNOWN_LOG_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMatching) and f.text == text for f in logger.filters):
            logger.addFilter(_DropMatching(text))
    for text in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=f".*{text}.*", category=FutureWarning)


def progress(total: int, desc: str, unit: str = "users", leave: bool = True) -> tqdm:
    """A progress bar on stderr for `total` units; `bar.update(n)` as work is done."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=1.0,
                leave=leave, disable=total <= 0)
