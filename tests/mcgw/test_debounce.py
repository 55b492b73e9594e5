"""The control loops' waits end when the loop is cancelled, even when a wake-up arrives at the same moment
(``asyncio.wait_for`` on Python 3.11 swallowed that cancellation, and a controller's shutdown hung)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from mcgw.runtime.debounce import settle, wait_set


async def _loop_forever(wait: Callable[[asyncio.Event], Awaitable[object]], wake: asyncio.Event) -> None:
    while True:  # as the MCS loop does: wait, act, wait again
        await wait(wake)


@pytest.mark.parametrize("wait", [
    lambda wake: wait_set(wake, 30.0),
    lambda wake: wait_set(wake, None),
    lambda wake: settle(wake, 30.0, 60.0),
], ids=["wait_set with a timeout", "wait_set without one", "settle"])
async def test_a_cancellation_that_meets_a_wake_up_still_stops_the_loop(
        wait: Callable[[asyncio.Event], Awaitable[object]]) -> None:
    for _ in range(20):  # the race in every order the scheduler gives it
        wake = asyncio.Event()
        task = asyncio.create_task(_loop_forever(wait, wake))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        wake.set()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert task in done, "the cancelled loop is still waiting"
        assert task.cancelled()


async def test_wait_set_says_whether_the_event_came() -> None:
    wake = asyncio.Event()
    assert await wait_set(wake, 0.01) is False
    wake.set()
    assert await wait_set(wake, 0.01) is True
