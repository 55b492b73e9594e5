"""One kind of one member cluster, kept in the Store by list + watch.

The loop, and why each step is there:

- **List** (paginated, ``limit``/``continue``) and hand the complete result to ``Store.replace_kind``:
  objects missing from a relist were deleted while we were not watching.
- **Watch** from the list's resourceVersion with ``allowWatchBookmarks``: bookmarks move our
  resourceVersion forward on quiet kinds, so a reconnect can resume instead of relisting.
- ``timeoutSeconds`` (server side, jittered so that informers do not reconnect in lockstep) ends each
  watch cleanly; the next one resumes from the last resourceVersion at once.
- An **inactivity timeout** (no event nor bookmark for N seconds) catches a connection that died
  without a FIN (a half-open TCP connection never raises); the watch is resumed.
- **410 Gone** (an HTTP 410 or a watch ERROR event with code 410): the resourceVersion is older than
  what the server still has (etcd compacted it, or a restarted API server's watch cache starts
  later), so events may have been missed: relist.
- **Any other failure** (connection refused or reset, 429, 5xx, bad JSON): back off with full
  jitter and resume the watch from the last resourceVersion, so an API server restart costs no
  relist when the server can still replay the missed events, deletions included.

Plain JSON is read off the stream (no generated models): the dicts go straight to ``parse_object``.
An object that does not parse is logged with cluster, kind and namespace/name and left out of the
Store (a watch event makes the Store look exactly as a relist would); the informer carries on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from mcgw.objects.kinds import Kind
from mcgw.objects.model import AnyObject, ManifestError, parse_object
from mcgw.providers.kubernetes.lister import api_get, list_kind_pages, object_name
from mcgw.providers.kubernetes.retry import TRANSIENT, retry_after
from mcgw.store import Store

log = logging.getLogger(__name__)

# A watch that delivered something, or stayed up this long, was healthy: the backoff starts over.
STABLE_WATCH_SECONDS = 10.0


class InformerState(enum.Enum):
    STARTING = "starting"
    LISTING = "listing"
    WATCHING = "watching"
    FAILING = "failing"  # waiting out a backoff after an error
    STOPPED = "stopped"


@dataclass(frozen=True)
class InformerSettings:
    """Timings of list + watch. The defaults suit production; tests shorten the backoff cap."""

    page_size: int = 500
    watch_timeout: float = 300.0  # server-side timeoutSeconds, jittered by ±10 %
    inactivity_timeout: float = 120.0  # bookmarks come about once a minute, so two can be missed
    request_timeout: float = 30.0  # connecting, and reading one list page
    backoff_base: float = 0.2
    backoff_cap: float = 15.0


class Backoff:
    """Exponential backoff with full jitter: a delay drawn from [0, min(cap, base * 2**attempt)).

    Full jitter spreads the reconnects of many informers (10 kinds x N clusters) after an API
    server restart, instead of sending them all at the same instants.
    """

    def __init__(self, base: float, cap: float, rng: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self.attempt = base, cap, 0
        self._rng = rng

    def ceiling(self) -> float:
        return min(self.cap, self.base * 2.0 ** self.attempt)

    def next(self) -> float:
        delay = self._rng() * self.ceiling()
        self.attempt = min(self.attempt + 1, 64)
        return delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class InformerStats:
    """Counters for /metrics and for tests; they only ever grow."""

    lists: int = 0  # complete lists, the initial one included
    relists: int = 0  # lists after the first one (each follows a 410)
    watches: int = 0  # watch requests the server accepted
    restarts: int = 0  # of those, watches resumed from the last resourceVersion without a relist
    expired: int = 0  # 410 Gone answers (HTTP status or watch ERROR event)
    errors: int = 0  # failures followed by a backoff
    inactivity_timeouts: int = 0
    events: int = 0  # ADDED / MODIFIED / DELETED
    bookmarks: int = 0
    invalid_objects: int = 0  # objects that did not parse and were left out


class WatchExpired(Exception):
    """410 Gone: the resourceVersion we hold is too old for the server; only a relist recovers."""


class WatchError(Exception):
    """A watch ERROR event other than 410, e.g. an internal error; the watch is resumed."""


def is_connection_failure(error: BaseException) -> bool:
    """True when the API server could not be reached (as opposed to answering with an error)."""
    return isinstance(error, aiohttp.ClientConnectionError | OSError | TimeoutError)


def describe(error: BaseException) -> str:
    """One line for logs and for the cluster's Unavailable reason."""
    if isinstance(error, ApiException):
        message = ""
        try:
            message = str(json.loads(error.body or "{}").get("message") or "")
        except (ValueError, AttributeError):
            message = ""
        return f"API answered {error.status} {error.reason or ''}".rstrip() + (f": {message}" if message else "")
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if text != type(error).__name__ else text


class Informer:
    """List + watch of one kind in one member cluster, written into ``store``; ``run()`` until cancelled."""

    def __init__(self, api: client.ApiClient, cluster: str, spec: Kind, store: Store,
                 settings: InformerSettings | None = None,
                 on_state: Callable[[Informer], None] | None = None) -> None:
        self.api, self.cluster, self.spec, self.store = api, cluster, spec, store
        self.settings = settings or InformerSettings()
        self.on_state = on_state
        self.stats = InformerStats()
        self.state = InformerState.STARTING
        self.resource_version = ""
        self.has_listed = False  # the initial list completed once
        self.failing_since: float | None = None  # monotonic time of the first failure of the current streak
        self.last_error = ""
        self.connection_failed = False  # the current failure streak is "cannot connect", not an API answer
        self._backoff = Backoff(self.settings.backoff_base, self.settings.backoff_cap)
        self._resuming = False  # the next watch continues a previous one (no relist in between)
        self._watch_started = 0.0
        self._watch_lines = 0

    @property
    def kind(self) -> str:
        return self.spec.name

    def _extra(self, obj: str = "") -> dict[str, str]:
        return {"cluster": self.cluster, "kind": self.kind, "object": obj}

    def _set_state(self, state: InformerState) -> None:
        if state is self.state:
            return
        self.state = state
        if self.on_state is not None:
            self.on_state(self)

    def _healthy(self) -> None:
        if self.failing_since is not None:
            log.info("cluster %s: %s reachable again after %.1fs", self.cluster, self.kind,
                     time.monotonic() - self.failing_since, extra=self._extra())
        self.failing_since, self.last_error, self.connection_failed = None, "", False

    # -- the loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        need_list, expired_in_row = True, 0
        try:
            while True:
                try:
                    if need_list:
                        await self._list()
                        need_list = False
                    await self._watch()
                    # The watch ended without an error: server timeout, or our inactivity timeout.
                    if self._watch_was_stable():
                        self._backoff.reset()
                    else:  # ended at once with nothing in it: do not hammer the server
                        await asyncio.sleep(self._backoff.next())
                except WatchExpired as expired:
                    self.stats.expired += 1
                    need_list = True
                    log.info("cluster %s: %s resourceVersion %s is too old (%s); relisting", self.cluster,
                             self.kind, self.resource_version or "-", expired, extra=self._extra())
                    expired_in_row = 0 if self._watch_was_stable() else expired_in_row + 1
                    if expired_in_row > 1:  # 410 again right after a relist: slow down
                        await asyncio.sleep(self._backoff.next())
                except Exception as error:  # every failure is retried; the reason goes to health and logs
                    if self._watch_was_stable():
                        self._backoff.reset()
                    await asyncio.sleep(self._failed(error, need_list))
        finally:
            self._set_state(InformerState.STOPPED)

    def _watch_was_stable(self) -> bool:
        return self._watch_lines > 0 or (
            self._watch_started > 0 and time.monotonic() - self._watch_started >= STABLE_WATCH_SECONDS)

    def _failed(self, error: Exception, listing: bool) -> float:
        """Record a failure; returns how long to wait before the next attempt."""
        self.stats.errors += 1
        first_in_streak = self.failing_since is None
        if first_in_streak:
            self.failing_since = time.monotonic()
        self.connection_failed = (first_in_streak or self.connection_failed) and is_connection_failure(error)
        self.last_error = describe(error)
        self._watch_started, self._watch_lines = 0.0, 0
        delay = self._backoff.next()
        if isinstance(error, ApiException) and error.status in TRANSIENT:
            delay = max(delay, min(retry_after(error) or 0.0, self.settings.backoff_cap))
        what = "list" if listing else f"watch from resourceVersion {self.resource_version}"
        log.log(logging.WARNING if first_in_streak else logging.DEBUG,
                "cluster %s: %s %s failed: %s; retrying in %.1fs", self.cluster, self.kind, what,
                self.last_error, delay, extra=self._extra())
        if self.state is InformerState.FAILING:
            if self.on_state is not None:  # the error changed even though the state did not
                self.on_state(self)
        else:
            self._set_state(InformerState.FAILING)
        return delay

    # -- list ----------------------------------------------------------------------------------------

    async def _list(self) -> None:
        self._set_state(InformerState.LISTING)
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout * 4,
                                        sock_connect=self.settings.request_timeout,
                                        sock_read=self.settings.request_timeout)
        for attempt in (1, 2):
            items: list[dict[str, Any]] = []
            resource_version = ""
            try:
                async for page in list_kind_pages(self.api, self.spec, self.settings.page_size, timeout):
                    items.extend(page.items)
                    resource_version = page.resource_version
                break
            except ApiException as error:
                if error.status != 410 or attempt == 2:
                    raise
                # The continue token expired between two pages: start over from a fresh snapshot.
                log.info("cluster %s: %s list continue token expired; listing again", self.cluster, self.kind,
                         extra=self._extra())
        objects = [obj for obj in (self._parse(item) for item in items) if obj is not None]
        self.store.replace_kind(self.cluster, self.kind, objects)
        self.stats.lists += 1
        if self.has_listed:
            self.stats.relists += 1
        log.log(logging.INFO if self.has_listed else logging.DEBUG,
                "cluster %s: listed %d %s objects at resourceVersion %s", self.cluster, len(objects), self.kind,
                resource_version, extra=self._extra())
        self.has_listed = True
        self.resource_version = resource_version
        self._resuming = False
        self._healthy()

    def _parse(self, data: dict[str, Any]) -> AnyObject | None:
        name = object_name(data)
        try:
            return parse_object(data, f"cluster {self.cluster} {self.kind} {name}")
        except ManifestError as error:
            self.stats.invalid_objects += 1
            log.warning("cluster %s: %s %s is left out, it is not valid: %s", self.cluster, self.kind, name,
                        str(error).removeprefix(f"{error.source}: "), extra=self._extra(name))
            return None

    # -- watch ---------------------------------------------------------------------------------------

    async def _watch(self) -> None:
        settings = self.settings
        query = [("watch", "true"), ("allowWatchBookmarks", "true"), ("resourceVersion", self.resource_version),
                 ("timeoutSeconds", str(max(1, round(settings.watch_timeout * random.uniform(0.9, 1.1)))))]
        if self.spec.field_selector:
            query.append(("fieldSelector", self.spec.field_selector))
        if self.spec.label_selector:
            query.append(("labelSelector", self.spec.label_selector))
        # No total or read timeout on the request: the stream lives for timeoutSeconds, and silence is
        # the inactivity timeout's business below.
        timeout = aiohttp.ClientTimeout(total=None, connect=settings.request_timeout,
                                        sock_connect=settings.request_timeout)
        self._watch_started, self._watch_lines = 0.0, 0
        try:
            async with asyncio.timeout(settings.request_timeout):  # until the response headers arrive
                response = await api_get(self.api, self.spec.path, query, timeout)
        except ApiException as error:
            if error.status == 410:
                raise WatchExpired(describe(error)) from None
            raise
        try:
            self.stats.watches += 1
            if self._resuming:
                self.stats.restarts += 1
            self._resuming = True
            self._watch_started = time.monotonic()
            self._healthy()
            self._set_state(InformerState.WATCHING)
            await self._read_stream(response.content)
        finally:
            response.close()

    async def _read_stream(self, content: aiohttp.StreamReader) -> None:
        buffer = bytearray()
        while True:
            try:
                async with asyncio.timeout(self.settings.inactivity_timeout):
                    chunk = await content.readany()
            except TimeoutError:
                self.stats.inactivity_timeouts += 1
                log.info("cluster %s: %s watch silent for %.0fs (no event nor bookmark); resuming from "
                         "resourceVersion %s", self.cluster, self.kind, self.settings.inactivity_timeout,
                         self.resource_version, extra=self._extra())
                return
            if not chunk:  # the server ended the watch (timeoutSeconds)
                if buffer.strip():
                    self._handle_line(bytes(buffer))
                return
            buffer += chunk
            start = 0
            while (end := buffer.find(b"\n", start)) >= 0:
                line = bytes(buffer[start:end])
                start = end + 1
                if line.strip():
                    self._handle_line(line)
            del buffer[:start]

    def _handle_line(self, line: bytes) -> None:
        self._watch_lines += 1
        event = json.loads(line)
        kind = event.get("type")
        data = event.get("object") or {}
        if kind == "ERROR":
            code, message = data.get("code"), data.get("message") or data.get("reason") or "no message"
            if code == 410:
                raise WatchExpired(f"watch ERROR event {code}: {message}")
            raise WatchError(f"watch ERROR event {code}: {message}")
        metadata = data.get("metadata") or {}
        resource_version = str(metadata.get("resourceVersion") or "")
        if kind == "BOOKMARK":
            self.stats.bookmarks += 1
        elif kind in ("ADDED", "MODIFIED", "DELETED"):
            self.stats.events += 1
            self._apply(kind, {**data, "kind": self.kind, "apiVersion": self.spec.api_version})
        else:
            log.warning("cluster %s: %s watch sent an unknown event type %r", self.cluster, self.kind, kind,
                        extra=self._extra(object_name(data)))
        if resource_version:
            self.resource_version = resource_version

    def _apply(self, event: str, data: dict[str, Any]) -> None:
        metadata = data.get("metadata") or {}
        key = (self.kind, str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        if event == "DELETED":
            log.debug("cluster %s: %s %s deleted", self.cluster, self.kind, object_name(data),
                      extra=self._extra(object_name(data)))
            self.store.delete(self.cluster, key)
            return
        obj = self._parse(data)
        if obj is None:  # no longer valid: what a relist would show is "absent"
            self.store.delete(self.cluster, key)
        else:
            self.store.upsert(self.cluster, obj)


@dataclass
class InformerHealth:
    """One informer's view for /api/status: what it is doing, how long it has been failing, its counters.

    Plain values only, so ``vars()`` of it is JSON as it is.
    """

    kind: str
    state: str
    resource_version: str
    failing_for: float | None  # seconds, None while healthy
    last_error: str
    counters: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, informer: Informer) -> InformerHealth:
        failing_for = None if informer.failing_since is None else round(time.monotonic() - informer.failing_since, 3)
        return cls(informer.kind, informer.state.value, informer.resource_version, failing_for,
                   informer.last_error, dataclasses.asdict(informer.stats))
