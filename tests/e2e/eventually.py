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


async def eventually_in_thread(check: Callable[[], object], what: str, within: float = DEADLINE,
                               interval: float = 0.05, explain: Callable[[], str] | None = None) -> object:
    """Like :func:`eventually` for a check that blocks (an HTTP request to a server on this event loop):
    it runs in a thread, and its last truthy result is returned. ``explain``, also run in a thread, says
    what the system looked like when the wait gave up."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not (result := await asyncio.to_thread(check)):
        if loop.time() - start >= within:
            detail = f"\n{await asyncio.to_thread(explain)}" if explain is not None else ""
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what} (last: {result!r}){detail}")
        await asyncio.sleep(interval)
    return result
