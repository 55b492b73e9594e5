"""The live dashboard: its document from /api/status, the admin server's page and event stream, and the page
rendered in a real headless Chromium, updating without a reload as the serving level changes."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import aiohttp

from mcgw.admin.dashboard import STATIC_FILES, dashboard_document
from mcgw.admin.server import AdminServer
from tests.browser import browser_page, require_chromium


def _level(priority: int, cluster: str, share: float, rps: float) -> dict[str, Any]:
    return {"priority": priority, "clusters": [cluster], "requestsPerSecond": rps, "errorsPerSecond": 0.0,
            "inFlight": 1, "share": share, "requestsPerSecondLastMinute": rps}


def _status(serving: int = 0) -> dict[str, Any]:
    east_share = 1.0 if serving == 0 else 0.0
    events = [] if serving == 0 else [{
        "at": "2026-12-02T13:00:00Z", "cluster": "east", "gateway": "infra/public", "service": "shop/cart:80",
        "from": {"priority": 0, "clusters": ["east"]}, "to": {"priority": 1, "clusters": ["west"]},
        "share": 1.0, "requestsPerSecond": 200.0}]
    return {
        "ready": True, "mode": "run", "leader": {"east": True, "west": False},
        "clusters": {
            "east": {"available": True, "synced": True, "reason": "", "since": "2026-12-02T12:00:00Z",
                     "objects": {"Gateway": {"infra/public": {"generation": 1, "status": {
                         "addresses": [{"type": "IPAddress", "value": "198.18.0.10"}],
                         "conditions": [{"type": "Programmed", "status": "True"}]}}}}},
            "west": {"available": False, "synced": True, "reason": "connection refused",
                     "since": "2026-12-02T12:30:00Z", "objects": {"Gateway": {}}},
        },
        "multiClusterServices": {
            "importedServices": [{"service": "shop/cart", "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
                                  "endpoints": [{"port": 80, "clusters": [
                                      {"cluster": "east", "healthy": 0 if serving else 2, "draining": 0,
                                       "lost": False},
                                      {"cluster": "west", "healthy": 2, "draining": 1, "lost": True}]}]}],
            "lostClusters": [{"cluster": "west"}]},
        "nodes": [{"nodeId": "infra/public/a", "peer": "ipv4:127.0.0.1:5", "mode": "delta",
                   "group": {"cluster": "east", "gateway": "infra/public"},
                   "types": {"cds": {"sentVersion": "3", "ackedVersion": "3", "nackedVersion": None,
                                     "lastNackError": None},
                             "lds": {"sentVersion": "4", "ackedVersion": "3", "nackedVersion": "4",
                                     "lastNackError": "invalid listener"}}}],
        "traffic": {"enabled": True, "services": [{
            "cluster": "east", "gateway": "infra/public", "service": "shop/cart:80", "servingPriority": serving,
            "levels": [_level(0, "east", east_share, 200 * east_share), _level(1, "west", 1 - east_share,
                                                                                200 * (1 - east_share))]}],
            "events": events},
    }


def test_the_document_joins_traffic_with_endpoint_health_gateways_and_envoys() -> None:
    status = _status(serving=1)
    document = dashboard_document(status, status["traffic"])
    assert [(c["name"], c["available"], c["lost"], c["leader"]) for c in document["clusters"]] == [
        ("east", True, False, True), ("west", False, True, False)]
    (gateway,) = document["gateways"]
    assert gateway["cluster"] == "east"
    assert gateway["name"] == "infra/public"
    assert gateway["addresses"] == ["198.18.0.10"]
    assert gateway["programmed"] is True
    (envoy,) = gateway["envoys"]
    assert (envoy["state"], envoy["nacked"], envoy["lastNackError"]) == ("NACK", ["lds"], "invalid listener")
    (service,) = document["services"]
    assert service["servingPriority"] == 1
    east, west = service["levels"]
    assert east["clusters"] == [{"name": "east", "healthy": 0, "draining": 0, "lost": False}]
    assert west["clusters"] == [{"name": "west", "healthy": 2, "draining": 1, "lost": True}]
    assert west["share"] == 1.0
    assert document["events"][0]["to"] == {"priority": 1, "clusters": ["west"]}


def test_an_empty_status_makes_an_empty_dashboard() -> None:
    assert dashboard_document({}, {}) == {"ready": False, "mode": "", "clusters": [], "gateways": [],
                                          "services": [], "events": [], "loadReports": False}


async def _serve(state: dict[str, Any], push_interval: float = 1.0) -> tuple[AdminServer, str]:
    server = AdminServer(ready=lambda: True, status=lambda: copy.deepcopy(state), push_interval=push_interval)
    port = await server.start()
    return server, f"http://127.0.0.1:{port}"


async def test_the_page_is_served_from_the_package_and_needs_nothing_from_elsewhere() -> None:
    server, base = await _serve(_status())
    try:
        async with aiohttp.ClientSession() as session:
            for path, name in (("/", "index.html"), *((f"/{n}", n) for n in STATIC_FILES)):
                async with session.get(base + path) as response:
                    assert response.status == 200
                    assert response.content_type == STATIC_FILES[name]
                    text = await response.text()
                    assert "http://" not in text.replace("http://127.0.0.1", "")  # no CDN, works offline
                    assert "https://" not in text
            async with session.get(base + "/api/dashboard") as response:
                assert (await response.json())["services"][0]["service"] == "shop/cart:80"
            async with session.get(base + "/nope.js") as response:
                assert response.status == 404
    finally:
        await server.stop()


async def test_the_event_stream_pushes_at_once_when_notified() -> None:
    state = _status()
    server, base = await _serve(state, push_interval=30.0)
    try:
        async with aiohttp.ClientSession() as session, session.get(base + "/api/dashboard/events") as response:
            assert response.content_type == "text/event-stream"

            async def next_document() -> dict[str, Any]:
                data = b""
                async for line in response.content:
                    if line.startswith(b"data: "):
                        data = line[6:]
                    elif line == b"\n" and data:
                        document: dict[str, Any] = json.loads(data)
                        return document
                raise AssertionError("the stream ended")

            first = await asyncio.wait_for(next_document(), 5)
            assert first["services"][0]["servingPriority"] == 0
            state.update(_status(serving=1))
            server.notify()
            second = await asyncio.wait_for(next_document(), 5)  # long before the 30 s interval
            assert second["services"][0]["servingPriority"] == 1
    finally:
        await server.stop()


async def test_the_page_in_a_real_browser_follows_a_failover_without_reloading() -> None:
    require_chromium()
    state = _status()
    server, base = await _serve(state, push_interval=0.2)
    try:
        async with browser_page() as page:
            await page.goto(base + "/")
            serving = "document.querySelector('.service')?.dataset.servingPriority"
            assert await page.until(f"{serving} === '0' && {serving}") == "0"
            assert await page.evaluate("document.querySelector('.served-by').textContent") == "east (priority 0)"
            assert await page.evaluate("document.getElementById('no-events').hidden") is False
            assert await page.until("document.getElementById('live').textContent === 'live'") is True
            background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == "rgb(16, 20, 26)"  # the dark scheme
            marker = await page.evaluate("window.stayedOnThisPage = true")
            assert marker is True
            state.update(_status(serving=1))
            await page.until(f"{serving} === '1'", within=5)
            assert await page.evaluate("document.querySelector('.served-by').textContent") == "west (priority 1)"
            assert await page.evaluate("document.querySelectorAll('#timeline li').length") == 1
            assert await page.evaluate("document.querySelector('[data-envoy-state]').dataset.envoyState") == "NACK"
            assert await page.evaluate("window.stayedOnThisPage") is True  # updated live, not reloaded
    finally:
        await server.stop()
