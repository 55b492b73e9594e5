"""Python's cyclic garbage collector, paused while a translation pass or a manifest parse runs.

Both run in worker threads, so the pause is nestable and counted across threads. A translation
allocates hundreds of thousands of objects that all outlive it (the IR and Envoy resources it
returns), so every collection triggered during a pass scans them and frees nothing; once the young
generations fill, a full collection also scans every parsed object of every cluster. At 1,000 routes
per cluster that was a quarter of a full translation's time (``benchmarks/translate_scale.py``).
Parsing a large manifest allocates millions of short-lived acyclic nodes, and the full collections
they triggered held the GIL long enough to stall the event loop for over a second
(``benchmarks/file_provider.py``). Reference counting still frees everything acyclic at once; cycles
made meanwhile are collected at the first collection after the pause.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused() -> Iterator[None]:
    """Disable the collector for the duration (nestable, and across threads: it is re-enabled when the
    last pass ends, and only if it was enabled when the first began)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
