"""Informer paths that a real API server will not produce on demand, against a scripted fake server:
a silent watch (inactivity timeout), HTTP 410 on the watch request itself, a non-410 ERROR event,
an unparseable line, and the availability grace period; plus the backoff's bounds."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from kubernetes.aio import client

from mcgw.objects.kinds import BY_NAME
from mcgw.providers.kubernetes.cluster import MemberCluster
from mcgw.providers.kubernetes.informer import Backoff, Informer, InformerSettings
from mcgw.store import Store

SERVICES = "/api/v1/services"
FAST = InformerSettings(backoff_base=0.01, backoff_cap=0.05, inactivity_timeout=30.0)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _service(name: str, version: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "ns",
                                                                "resourceVersion": version},
            "spec": {"ports": [{"port": 80}]}}


class FakeApiServer:
    """Serves one collection: lists from ``lists`` and watches from ``watches``, in order, recording queries."""

    def __init__(self) -> None:
        self.lists: list[tuple[str, list[dict[str, Any]]]] = []  # (resourceVersion, items)
        self.watches: list[Handler] = []
        self.queries: list[dict[str, str]] = []
        self.fail_everything = False
        self.cut = asyncio.Event()  # ends every held-open watch

    def fail(self, failing: bool) -> None:
        """Answer 503 to everything (and end open watches), or serve again."""
        self.fail_everything = failing
        if failing:
            self.cut.set()
        else:
            self.cut = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.queries.append(query)
        if self.fail_everything:
            return web.json_response({"kind": "Status", "code": 503, "message": "unavailable"}, status=503)
        if query.get("watch") != "true":
            version, items = self.lists.pop(0) if len(self.lists) > 1 else self.lists[0]
            return web.json_response({"kind": "ServiceList", "metadata": {"resourceVersion": version},
                                      "items": [{k: v for k, v in i.items() if k not in ("kind", "apiVersion")}
                                                for i in items]})
        handler = self.watches.pop(0) if self.watches else hold_open()
        return await handler(request)

    def watch_queries(self) -> list[dict[str, str]]:
        return [q for q in self.queries if q.get("watch") == "true"]


FAKE = web.AppKey("fake", FakeApiServer)


def stream(*events: dict[str, Any], then: str = "hold") -> Handler:
    """A watch answer: these events, one JSON per line, then hold the stream open (silent) or end it."""
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for event in events:
            await response.write(json.dumps(event).encode() + b"\n")
        if then == "hold":
            await request.app[FAKE].cut.wait()
        return response
    return handler


def raw(line: bytes) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(line)
        return response
    return handler


def hold_open() -> Handler:
    return stream()


def status(code: int, message: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"kind": "Status", "code": code, "message": message}, status=code)
    return handler


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeApiServer, client.ApiClient]]:
    server = FakeApiServer()
    app = web.Application()
    app[FAKE] = server
    app.router.add_get(SERVICES, server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    api = client.ApiClient(configuration)
    yield server, api
    await api.close()
    await runner.cleanup()


async def eventually(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _run(informer: Informer) -> asyncio.Task[None]:
    return asyncio.create_task(informer.run())


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_silent_watch_is_resumed_from_the_last_resource_version(
        fake: tuple[FakeApiServer, client.ApiClient]) -> None:
    server, api = fake
    server.lists = [("10", [_service("a", "9")])]
    server.watches = [stream({"type": "ADDED", "object": _service("b", "11")})]  # then silence
    store = Store(["c"], ["Service"])
    settings = InformerSettings(backoff_base=0.01, backoff_cap=0.05, inactivity_timeout=0.3)
    informer = Informer(api, "c", BY_NAME["Service"], store, settings)
    task = await _run(informer)
    try:
        await eventually(lambda: len(server.watch_queries()) >= 2, "a second watch")
        first, second = server.watch_queries()[:2]
        assert first["resourceVersion"] == "10"
        assert first["allowWatchBookmarks"] == "true"
        assert 270 <= int(first["timeoutSeconds"]) <= 330  # 300 s ± 10 % jitter
        assert second["resourceVersion"] == "11"
        assert informer.stats.inactivity_timeouts >= 1
        assert informer.stats.relists == 0
        assert store["c"].get(("Service", "ns", "b")) is not None
    finally:
        await _stop(task)


async def test_http_410_on_the_watch_request_relists(fake: tuple[FakeApiServer, client.ApiClient]) -> None:
    server, api = fake
    server.lists = [("10", [_service("a", "9"), _service("gone", "8")]), ("20", [_service("a", "9")])]
    server.watches = [status(410, "too old resource version: 10 (15)")]
    store = Store(["c"], ["Service"])
    informer = Informer(api, "c", BY_NAME["Service"], store, FAST)
    task = await _run(informer)
    try:
        await eventually(lambda: informer.stats.relists == 1, "a relist")
        await eventually(lambda: len(server.watch_queries()) >= 2, "a watch after the relist")
        assert server.watch_queries()[1]["resourceVersion"] == "20"
        assert store["c"].get(("Service", "ns", "gone")) is None, "the relist removed what was deleted meanwhile"
        assert informer.stats.expired == 1
    finally:
        await _stop(task)


async def test_other_watch_errors_resume_from_the_last_bookmark(fake: tuple[FakeApiServer, client.ApiClient]) -> None:
    server, api = fake
    server.lists = [("10", [])]
    bookmark = {"type": "BOOKMARK", "object": {"kind": "Service", "metadata": {"resourceVersion": "15"}}}
    server.watches = [
        stream(bookmark, {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd hiccup"}},
               then="end"),
        raw(b'{"type": "ADDED", "object": {not json\n'),
    ]
    store = Store(["c"], ["Service"])
    informer = Informer(api, "c", BY_NAME["Service"], store, FAST)
    task = await _run(informer)
    try:
        # The fake server sees a query before the informer has its answer and counts the restart.
        await eventually(lambda: len(server.watch_queries()) >= 3 and informer.stats.restarts >= 2,
                         "two resumed watches")
        assert [q["resourceVersion"] for q in server.watch_queries()[:3]] == ["10", "15", "15"]
        assert informer.stats.bookmarks == 1
        assert informer.stats.errors == 2
        assert informer.stats.relists == 0
        assert informer.stats.restarts >= 2
    finally:
        await _stop(task)


async def test_a_cluster_is_unavailable_only_after_the_grace_period(
        fake: tuple[FakeApiServer, client.ApiClient]) -> None:
    server, api = fake
    server.lists = [("10", [_service("a", "9")])]
    server.watches = [stream(then="end")]  # the first watch ends; every later request fails
    flips: list[tuple[float, bool]] = []
    store = Store(["c"], ["Service"])
    store.subscribe(lambda _c: flips.append((time.monotonic(), store["c"].available)))
    member = MemberCluster("c", api, store, kinds=[BY_NAME["Service"]], settings=FAST, unavailable_after=0.5)
    informer = member.informers["Service"]
    await member.start()
    try:
        await eventually(lambda: store["c"].synced and member.available, "the initial sync")
        server.fail(True)
        await eventually(lambda: not store["c"].available, "the cluster to be marked Unavailable")
        assert informer.failing_since is not None
        went_down = next(at for at, available in flips if not available)
        # A lower bound only: slowness can delay the flip, never advance it.
        assert went_down - informer.failing_since >= 0.5
        assert "503" in store["c"].health().reason
        assert store["c"].get(("Service", "ns", "a")) is not None, "last known objects are kept"

        server.fail(False)
        await eventually(lambda: store["c"].available, "the cluster to be Available again")
    finally:
        await member.stop()


def test_backoff_is_full_jitter_under_a_cap() -> None:
    highest = Backoff(0.2, 10.0, rng=lambda: 1.0)
    assert [round(highest.next(), 3) for _ in range(8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
    lowest = Backoff(0.2, 10.0, rng=lambda: 0.0)
    assert {lowest.next() for _ in range(5)} == {0.0}
    highest.reset()
    assert highest.next() == pytest.approx(0.2)
