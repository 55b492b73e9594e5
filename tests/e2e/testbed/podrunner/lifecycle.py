"""Stopping a container as a kubelet does: its preStop hook, then SIGTERM, then SIGKILL at the deadline.

The deadline is the end of the grace period, preStop time included. A hook still running then is
cut short, and the container still gets SIGTERM and ``MIN_GRACE`` seconds more before SIGKILL (the
kubelet's one-off extension). A deadline only ever moves earlier: a second DELETE with a shorter grace
period, the pod force-deleted, or the runner stopping. The last two also cut hooks at once.

Hooks (``lifecycle.preStop``): ``sleep`` in the runner, ``httpGet`` from the node to the pod's address
(as probes are), ``exec`` inside the container's namespaces. A failed hook is reported and the
container is stopped all the same; a hook of another kind (``tcpSocket``) is a failed hook, as the
kubelet runs none. A hook runs to its end even if its container exits meanwhile, as the kubelet's does.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from .probes import Exec, HttpGet, ProbeError, resolve_port

Json = dict[str, Any]
MIN_GRACE = 2.0
USER_AGENT = "kube-lifecycle/1.37"


@dataclass(frozen=True)
class Sleep:
    seconds: float


Hook = Sleep | HttpGet | Exec


class HookError(ValueError):
    """A hook the runner cannot run; running it fails."""


def parse_handler(handler: Json, container: Json) -> Hook:
    if "sleep" in handler:
        return Sleep(float(handler["sleep"].get("seconds", 0) or 0))
    if "exec" in handler:
        return Exec(tuple(str(arg) for arg in handler["exec"].get("command", []) or []))
    if "httpGet" in handler:
        get = handler["httpGet"]
        try:
            port = resolve_port(get["port"], container)
        except (ProbeError, KeyError) as error:
            raise HookError(str(error)) from error
        return HttpGet(port, get.get("path", "/") or "/", str(get.get("scheme", "HTTP")).upper(),
                       get.get("host", "") or "",
                       tuple((h["name"], h["value"]) for h in get.get("httpHeaders", []) or []))
    raise HookError(f"invalid handler: {sorted(handler)}")


def pre_stop(container: Json) -> Hook | HookError | None:
    """The container's preStop hook; a HookError when it has one the runner cannot run."""
    handler = (container.get("lifecycle") or {}).get("preStop")
    if not handler:
        return None
    try:
        return parse_handler(handler, container)
    except (HookError, TypeError, ValueError) as error:
        return error if isinstance(error, HookError) else HookError(str(error))


class Deadline:
    """When a stopping container gets SIGKILL at the latest (``time.monotonic`` seconds), and whether hooks
    may still run. Shared by every container of a terminating pod."""

    def __init__(self, at: float, floor: float = MIN_GRACE, clock: Callable[[], float] = time.monotonic) -> None:
        self.at = at
        self.floor = floor
        self.hooks = True
        self.clock = clock
        self._moved = asyncio.Event()

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(clock() + max(0.0, seconds), clock=clock)

    def remaining(self) -> float:
        return max(0.0, self.at - self.clock())

    def shorten(self, at: float, *, hooks: bool = True, floor: float | None = None) -> None:
        """Move the deadline to ``at`` if that is earlier; ``hooks=False`` cuts running hooks now; ``floor``
        lowers the time SIGTERM is given at least."""
        moved = False
        if at < self.at:
            self.at, moved = at, True
        if not hooks and self.hooks:
            self.hooks, moved = False, True
        if floor is not None and floor < self.floor:
            self.floor, moved = floor, True
        if moved:
            self._moved.set()

    async def wait(self, futures: Collection[asyncio.Future[Any]], *, hook: bool = False,
                   signalled: float | None = None) -> bool:
        """Wait until one of ``futures`` is done (True) or time is up (False): the deadline, or for a hook
        also hooks being cut, or after a SIGTERM sent at ``signalled`` not before ``floor`` seconds more."""
        while not any(f.done() for f in futures):
            if hook and not self.hooks:
                return False
            end = self.at if signalled is None else max(self.at, signalled + self.floor)
            remaining = end - self.clock()
            if remaining <= 0:
                return False
            self._moved.clear()
            moved = asyncio.ensure_future(self._moved.wait())
            try:
                await asyncio.wait({*futures, moved}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                moved.cancel()
        return True


class Stoppable(Protocol):
    """What stopping needs of a container instance (``ContainerProcess``)."""

    def signal(self, sig: int) -> None: ...

    def running(self) -> bool: ...

    async def wait(self) -> int: ...

    async def exec(self, argv: Sequence[str], seconds: float) -> int: ...


async def run_hook(hook: Hook, instance: Stoppable, pod_ip: str, session: aiohttp.ClientSession,
                   seconds: float) -> None:
    """Run ``hook`` within ``seconds``; raises HookError when it fails."""
    if isinstance(hook, Sleep):
        await asyncio.sleep(min(hook.seconds, seconds))
        return
    if isinstance(hook, Exec):
        code = await instance.exec(hook.command, seconds)
        if code != 0:
            raise HookError(f"command {list(hook.command)!r} exited with {code}")
        return
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*", **dict(hook.headers)}
    path = hook.path if hook.path.startswith("/") else "/" + hook.path
    url = f"{hook.scheme.lower()}://{hook.host or pod_ip}:{hook.port}{path}"
    try:
        async with session.get(url, headers=headers, ssl=False,
                               timeout=aiohttp.ClientTimeout(total=max(seconds, 0.001))) as response:
            await response.read()  # any status will do: only an unanswered request fails, as in the kubelet
    except (OSError, TimeoutError, aiohttp.ClientError) as error:
        raise HookError(f"GET {url}: {type(error).__name__}: {error}") from error


HookRun = Callable[[float], Awaitable[None]]


async def stop_container(instance: Stoppable, deadline: Deadline, hook: HookRun | None = None,
                         failed: Callable[[str], None] | None = None) -> int:
    """The preStop hook (``hook(seconds)``) if there is time for it, SIGTERM, SIGKILL when time is up;
    returns the exit status. ``failed`` hears why a hook failed or was cut short."""
    exited = asyncio.ensure_future(asyncio.shield(instance.wait()))
    running: asyncio.Future[None] | None = None
    try:
        if hook is not None and deadline.hooks and deadline.remaining() > 0 and instance.running():
            running = asyncio.ensure_future(hook(deadline.remaining()))
            why = ""
            if not await deadline.wait([running], hook=True):
                running.cancel()
                await asyncio.wait({running})
                why = "still running when the grace period ended" if deadline.hooks else "cut short"
            elif not running.cancelled() and running.exception() is not None:
                error = running.exception()
                why = str(error) if isinstance(error, HookError) else f"{type(error).__name__}: {error}"
            if why and failed is not None:
                failed(why)
        instance.signal(signal.SIGTERM)
        if not await deadline.wait([exited], signalled=deadline.clock()):
            instance.signal(signal.SIGKILL)
        return await exited
    finally:
        exited.cancel()
        if running is not None:
            running.cancel()
