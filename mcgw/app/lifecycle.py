"""One way to start and stop a composition of servers and background tasks (``mcgw run``, ``standalone``).

Everything started is registered on an exit stack as it starts, so a failure half-way, Ctrl-C and a
normal exit all stop exactly what was started, in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Coroutine
from typing import Any, Self


class Lifecycle(ABC):
    """Base of the compositions: ``async with`` calls :meth:`_start`; whatever it registered is undone."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @abstractmethod
    async def _start(self) -> None:
        """Start everything, registering how to stop each part on ``self._stack`` as it starts."""

    def _spawn(self, coroutine: Coroutine[Any, Any, None], what: str) -> None:
        """Run ``coroutine`` in the background until the composition stops."""
        task = asyncio.get_running_loop().create_task(coroutine, name=what)

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self._stack.push_async_callback(cancel)
