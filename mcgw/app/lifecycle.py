"""One way to start and stop a composition of servers and background tasks (``mcgw run``, ``standalone``).

Everything started is registered on an exit stack as it starts, so a failure half-way, a signal, a
crashed background task and a normal exit all stop exactly what was started, in reverse order. Each
shutdown step logs one line, so an operator can see what a stop did.

:func:`run_until_signalled` is how the CLI runs a composition: the first SIGTERM or SIGINT cancels the
main coroutine (which then shuts down through its ``async with``), a second one exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Self, TypeVar

from mcgw.admin import AdminServer
from mcgw.support.processes import kill_every_child
from xdsserver import XdsServer

log = logging.getLogger(__name__)
# How long a background task has to end after a cancellation before it is cancelled again.
_CANCEL_AGAIN_AFTER = 5.0

T = TypeVar("T")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DEFAULT_DRAIN_GRACE = 1.0  # seconds open xDS streams get after the server stops accepting, before they are closed


class BackgroundTaskFailed(RuntimeError):
    """A background task of a composition raised: the composition stops (and cleans up) instead of limping on."""


class Lifecycle(ABC):
    """Base of the compositions: ``async with`` calls :meth:`_start`; whatever it registered is undone."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._failure: asyncio.Future[BaseException] | None = None
        self._stopping = False
        self._xds: XdsServer | None = None
        self._xds_grace = DEFAULT_DRAIN_GRACE
        self._xds_streams = 0  # open when the xDS server stopped accepting
        self._xds_stopping: asyncio.Future[None] | None = None

    async def __aenter__(self) -> Self:
        self._failure = asyncio.get_running_loop().create_future()
        try:
            await self._start()
        except BaseException as error:
            await self._shut_down(error)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: object) -> None:
        await self._shut_down(exc)

    async def _shut_down(self, cause: BaseException | None) -> None:
        """Run every registered step; a cancellation (the stop signal) must not cut the steps short."""
        self._stopping = True
        current = asyncio.current_task()
        if isinstance(cause, asyncio.CancelledError) and current is not None:
            current.uncancel()  # the steps' own timeouts work as usual; CancelledError still propagates
        if cause is not None and not isinstance(cause, asyncio.CancelledError | KeyboardInterrupt):
            log.error("shutdown: stopping after a failure: %s", cause)
        started = time.monotonic()
        await self._stack.aclose()
        log.info("shutdown: complete in %.2fs", time.monotonic() - started)

    @abstractmethod
    async def _start(self) -> None:
        """Start everything, registering how to stop each part on ``self._stack`` as it starts."""

    def _on_stop(self, step: Callable[[], Awaitable[object]], done: str | Callable[[], str]) -> None:
        """Register a shutdown step that logs ``done`` when it finished; a failing step does not skip the rest."""

        async def run_step() -> None:
            try:
                await step()
            except Exception as error:
                what = done if isinstance(done, str) else getattr(step, "__name__", "a step")
                log.error("shutdown: %s failed: %s", what, error)
                return
            log.info("shutdown: %s", done if isinstance(done, str) else done())

        self._stack.push_async_callback(run_step)

    def _stop_xds_gracefully(self, xds: XdsServer, grace: float) -> None:
        """Register the xDS drain; :meth:`_stop_accepting` begins it earlier, this step waits for its end.

        grpc's ``stop(grace)`` refuses new connections and RPCs at once and closes the open streams when
        ``grace`` has passed (or earlier if they all ended).
        """
        self._xds, self._xds_grace = xds, grace

        async def drain() -> None:
            await self._begin_xds_stop()

        self._on_stop(drain, lambda: f"drained the xDS streams ({self._xds_streams} open, grace {grace:g}s) and "
                                     "closed the xDS server")

    def _begin_xds_stop(self) -> asyncio.Future[None]:
        if self._xds_stopping is None:
            assert self._xds is not None
            self._xds_streams = len(self._xds.status.nodes())
            self._xds_stopping = asyncio.ensure_future(self._xds.stop(self._xds_grace))
        return self._xds_stopping

    def _stop_accepting(self, admin: AdminServer) -> None:
        """Register the first shutdown step: neither the xDS nor the admin server takes new connections."""

        async def stop_accepting() -> None:
            self._begin_xds_stop()
            await admin.stop()

        self._on_stop(stop_accepting, "the xDS and admin servers stopped accepting connections")

    def _spawn(self, coroutine: Coroutine[Any, Any, None], what: str) -> None:
        """Run ``coroutine`` in the background until the composition stops; if it raises, the composition stops."""
        task = asyncio.get_running_loop().create_task(coroutine, name=what)
        task.add_done_callback(self._background_done)

        async def cancel() -> None:
            # Cancelled again while it runs on: a task that swallowed one cancellation must not hang shutdown.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=_CANCEL_AGAIN_AFTER)
                if not task.done():
                    log.warning("shutdown: the %s is still running after a cancellation; cancelling it again", what)
            if not task.cancelled():
                task.exception()  # retrieved: a failure was logged when it happened
            log.info("shutdown: stopped the %s", what)

        self._stack.push_async_callback(cancel)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stopping:
            return
        error = task.exception() or RuntimeError("returned, but should run until stopped")
        log.error("background task %r failed: %r", task.get_name(), error, exc_info=error)
        if self._failure is not None and not self._failure.done():
            failed = BackgroundTaskFailed(f"background task {task.get_name()!r} failed: {error!r}")
            failed.__cause__ = error
            self._failure.set_result(failed)

    async def guard(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``, unless a background task fails first: then raise :class:`BackgroundTaskFailed`."""
        assert self._failure is not None, "only inside ``async with``"
        work = asyncio.ensure_future(awaitable)
        either: set[asyncio.Future[Any]] = {work, self._failure}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if work.done() and not work.cancelled():
            return work.result()
        raise self._failure.result()

    async def serve(self) -> None:
        """Until cancelled (the stop signal) or a background task fails."""
        await self.guard(asyncio.get_running_loop().create_future())


def run_until_signalled(main: Callable[[], Coroutine[Any, Any, T]], command: str) -> T | None:
    """Run ``main()``; the first SIGTERM/SIGINT cancels it, so it shuts down gracefully (returns None then).

    A second signal during the shutdown logs one line, kills every child process this process started
    (they live in their own process groups and would otherwise outlive it) and exits at once with
    128 + the signal number, as a shell reports a process killed by that signal.
    """

    async def body() -> T | None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(main(), name=command)
        received: list[signal.Signals] = []

        def on_signal(signum: signal.Signals) -> None:
            if received:
                log.error("%s: second signal (%s) during shutdown: exiting at once", command, signum.name)
                for handler in logging.getLogger().handlers:
                    handler.flush()
                kill_every_child()
                os._exit(128 + signum)
            received.append(signum)
            log.info("shutdown: %s received, %s stopping gracefully (a second signal exits at once)", signum.name,
                     command)
            task.cancel()

        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            return await task
        except asyncio.CancelledError:
            if received:
                return None
            raise
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)

    return asyncio.run(body())
