"""Hand values to a slow consumer one at a time per key, where only the newest value is worth handling.

The reconcile loop's sinks and the MCS loop's writers both get a new result on every pass; a result
that was overtaken while the previous one was being written need never be written at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LatestWins(Generic[K, V]):
    """Runs ``handle(key, value)`` for submitted values: one call at a time per key, and while one runs, only
    the latest value submitted for that key waits (earlier ones are dropped).

    ``handle`` does its own error handling: an exception ends that key's drain (the value that raised is
    lost; a later submit starts again).
    """

    def __init__(self, handle: Callable[[K, V], Awaitable[None]],
                 task_name: Callable[[K], str] | None = None) -> None:
        self._handle = handle
        self._task_name = task_name
        self._waiting: dict[K, V] = {}
        self._tasks: dict[K, asyncio.Task[None]] = {}

    def submit(self, key: K, value: V) -> None:
        """Handle ``value`` for ``key`` as soon as the call in progress for ``key`` (if any) is done."""
        self._waiting[key] = value
        if key in self._tasks:
            return
        name = self._task_name(key) if self._task_name is not None else None
        self._tasks[key] = asyncio.get_running_loop().create_task(self._drain(key), name=name)

    def waiting(self, key: K) -> bool:
        """Whether a value for ``key`` is submitted and not yet handed over."""
        return key in self._waiting

    async def _drain(self, key: K) -> None:
        try:
            while key in self._waiting:
                await self._handle(key, self._waiting.pop(key))
        finally:
            del self._tasks[key]

    async def idle(self) -> None:
        """Until every value submitted so far (and any submitted meanwhile) has been handled."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel the calls in progress and the drains behind them."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
