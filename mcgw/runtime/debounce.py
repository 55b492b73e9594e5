"""Waiting for a burst of changes to settle before acting on it, as both control loops do."""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, within: float | None) -> bool:
    """Wait until ``event`` is set (True) or ``within`` seconds pass (False; None waits forever).

    Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that arrives as the event is set,
    and a loop built on it then never stops (a controller's shutdown hung on it)."""
    try:
        async with asyncio.timeout(within):
            await event.wait()
    except TimeoutError:
        return False
    return True


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
        if not await wait_set(wake, min(quiet, left)):
            return
