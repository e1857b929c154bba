"""Waiting in tests for what another process, a thread or a broker does after the call that caused it."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

import pytest

T = TypeVar("T")


def eventually(probe: Callable[[], T], what: str, timeout: float = 120.0) -> T:
    """Poll until probe returns a truthy value and return it; fails, naming what, only after a generous timeout."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)
    return value
