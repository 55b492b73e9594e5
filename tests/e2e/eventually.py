"""Polling for e2e tests: wait until something holds, with a generous deadline that only bounds a failure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

DEADLINE = 60.0


async def eventually(check: Callable[[], bool], what: str, within: float = DEADLINE, interval: float = 0.05) -> float:
    """Poll ``check`` until it holds; returns how long that took (printed by tests, never asserted)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not check():
        assert loop.time() - start < within, f"timed out after {within:.0f}s waiting for {what}"
        await asyncio.sleep(interval)
    return loop.time() - start
