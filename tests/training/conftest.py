"""Fixtures of the training tests."""

from __future__ import annotations

import signal

import pytest

from lit_verbrec.training import preemption


@pytest.fixture
def signal_handlers():
    """Restore this process's handlers and forget recorded signals after a test."""
    previous = {s: signal.getsignal(s) for s in preemption.SIGNALS}
    preemption.reset()
    yield
    preemption.reset()
    for signum, handler in previous.items():
        signal.signal(signum, handler)
