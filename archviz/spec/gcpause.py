"""Pause Python's cyclic garbage collector while a spec's many small objects are built.

Each collection of the oldest generation scans every object alive, and reading, resolving,
tracing and tabulating a spec allocate a few objects per layer that all stay alive: with the
collector on, a 100k-layer spec spent most of its time in it and the time per layer grew
with the spec (benchmarks/spec_scale.py). None of these steps makes reference cycles worth
collecting, so the collector is paused for them and restored (with one collection) after.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Run the block with the cyclic collector off; nesting and an already-off collector are fine."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
