"""Probe parsing, the threshold logic, and the checks against servers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.testbed.podrunner.probes import (
    Exec,
    Grpc,
    HttpGet,
    Probe,
    ProbeError,
    TcpSocket,
    Tracker,
    check,
    parse_probe,
)

CONTAINER = {"name": "c", "ports": [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9000}]}


def test_parse_with_defaults_and_named_ports() -> None:
    probe = parse_probe({"httpGet": {"path": "/healthz", "port": "http",
                                     "httpHeaders": [{"name": "X-Probe", "value": "1"}]}}, CONTAINER)
    assert probe == Probe(HttpGet(8080, "/healthz", "HTTP", "", (("X-Probe", "1"),)), 0.0, 10.0, 1.0, 1, 3)
    probe = parse_probe({"tcpSocket": {"port": 9000}, "initialDelaySeconds": 2, "periodSeconds": 1,
                         "timeoutSeconds": 3, "successThreshold": 2, "failureThreshold": 5}, CONTAINER)
    assert probe == Probe(TcpSocket(9000), 2.0, 1.0, 3.0, 2, 5)
    assert parse_probe({"httpGet": {"port": "admin", "scheme": "HTTPS"}}, CONTAINER).action == \
        HttpGet(9000, "/", "HTTPS")
    assert parse_probe({"grpc": {"port": 9090}}, CONTAINER).action == Grpc(9090)
    assert parse_probe({"exec": {"command": ["cat", "/ready"]}}, CONTAINER).action == Exec(("cat", "/ready"))
    with pytest.raises(ProbeError):
        parse_probe({"tcpSocket": {"port": "nope"}}, CONTAINER)
    with pytest.raises(ProbeError):
        parse_probe({"periodSeconds": 1}, CONTAINER)


def test_tracker_thresholds() -> None:
    readiness = Tracker(False, success_threshold=2, failure_threshold=3)
    assert [readiness.observe(ok) for ok in (True, False, True, True)] == [False, False, False, True]
    assert readiness.result
    assert [readiness.observe(ok) for ok in (False, False, True, False, False, False)] == [
        False, False, False, False, False, True]
    assert not readiness.result
    liveness = Tracker(True, 1, 1)
    assert liveness.observe(False)
    assert not liveness.result
    assert liveness.observe(True)
    assert liveness.result


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, int]]:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-Probe", ""))
        status = int(request.match_info["code"])
        headers = {"Location": "/elsewhere"} if 300 <= status < 400 else {}
        return web.Response(status=status, headers=headers, text=request.headers.get("User-Agent", ""))

    app = web.Application()
    app.router.add_get("/code/{code}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield "127.0.0.1", port
    await runner.cleanup()


async def test_http_and_tcp_checks(server: tuple[str, int]) -> None:
    host, port = server
    async with aiohttp.ClientSession() as session:
        for code, ok in ((200, True), (204, True), (302, True), (404, False), (500, False)):
            result, detail = await check(HttpGet(port, f"/code/{code}", headers=(("X-Probe", "1"),)), host, 1,
                                         session)
            assert result is ok, detail
        assert (await check(TcpSocket(port), host, 1, session))[0]
        listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        closed_port = listener.sockets[0].getsockname()[1]
        listener.close()
        await listener.wait_closed()
        assert not (await check(TcpSocket(closed_port), host, 1, session))[0]
        assert not (await check(HttpGet(closed_port), host, 1, session))[0]


async def test_exec_checks_use_the_given_runner() -> None:
    ran: list[Sequence[str]] = []

    async def run(argv: Sequence[str], seconds: float) -> int:
        ran.append(argv)
        return 0 if argv[-1] == "ok" else 1

    async with aiohttp.ClientSession() as session:
        assert (await check(Exec(("test", "ok")), "127.0.0.1", 1, session, run))[0]
        assert not (await check(Exec(("test", "bad")), "127.0.0.1", 1, session, run))[0]
        assert not (await check(Exec(("test", "ok")), "127.0.0.1", 1, session))[0]
    assert ran == [("test", "ok"), ("test", "bad")]
