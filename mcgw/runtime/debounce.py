"""Waiting for a burst of changes to settle before acting on it, as both control loops do."""

from __future__ import annotations

import asyncio


async def settle(wake: asyncio.Event, quiet: float, cap: float) -> None:
    """Return once ``wake`` has stayed clear for ``quiet`` seconds, or ``cap`` seconds after the call at the latest.

    Called right after a first wake-up: a burst of events (a relist, a ``kubectl apply`` of many objects)
    then costs one pass instead of one per event, and a steady stream of events cannot hold a pass back
    longer than ``cap``. ``wake`` is left clear.
    """
    loop = asyncio.get_running_loop()
    first = loop.time()
    while True:
        wake.clear()
        left = first + cap - loop.time()
        if left <= 0:
            return
        try:
            await asyncio.wait_for(wake.wait(), min(quiet, left))
        except TimeoutError:
            return
