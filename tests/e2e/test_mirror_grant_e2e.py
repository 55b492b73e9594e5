"""A RequestMirror across namespaces, end to end with real Envoy: only a ReferenceGrant lets it mirror.

The mirror's target counts every request it receives. Without a grant it must receive none (and the
route says ResolvedRefs False, RefNotPermitted); adding the grant starts the mirroring; removing it
stops it again.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mcgw.app.echo import make_app
from mcgw.app.standalone import Standalone, StandaloneOptions
from mcgw.support.netutil import free_port
from tests.e2e.eventually import eventually_in_thread

GATEWAY_ADDRESS = "127.31.8.1"
APP_ADDRESS = "127.31.8.10"
AUDIT_ADDRESS = "127.31.8.20"
REQUESTS = 20


class Counter:
    """The mirror target: counts what reaches it."""

    def __init__(self) -> None:
        self.hits = 0

    async def handle(self, _: web.Request) -> web.Response:
        self.hits += 1
        return web.json_response({"pod": "audit"})


@pytest.fixture
async def servers() -> AsyncIterator[tuple[int, int, Counter]]:
    counter = Counter()
    audit = web.Application()
    audit.router.add_route("*", "/{tail:.*}", counter.handle)
    runners = [web.AppRunner(make_app("east", "apps", "app-1"), access_log=None),
               web.AppRunner(audit, access_log=None)]
    ports = (free_port(APP_ADDRESS), free_port(AUDIT_ADDRESS))
    for runner, address, port in zip(runners, (APP_ADDRESS, AUDIT_ADDRESS), ports, strict=True):
        await runner.setup()
        await web.TCPSite(runner, address, port).start()
    yield ports[0], ports[1], counter
    for runner in runners:
        await runner.cleanup()


def _write(path: Path, documents: list[dict[str, Any]]) -> None:
    path.write_text("\n---\n".join(json.dumps(doc) for doc in documents) + "\n")


def _service(namespace: str, name: str, address: str, port: int) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{name}-1", "namespace": namespace, "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
         "endpoints": [{"addresses": [address], "conditions": {"ready": True}}]},
    ]


GRANT = {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
         "metadata": {"name": "mirror-from-apps", "namespace": "other"},
         "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "apps"}],
                  "to": [{"group": "", "kind": "Service"}]}}


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _admin(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return dict(json.loads(response.read()))


async def _send(count: int) -> None:
    for _ in range(count):
        assert await asyncio.to_thread(_get, f"http://{GATEWAY_ADDRESS}:8080/mirrored") == 200


async def test_a_mirror_across_namespaces_mirrors_only_while_a_grant_allows_it(
        tmp_path: Path, servers: tuple[int, int, Counter]) -> None:
    app_port, audit_port, counter = servers
    cluster = tmp_path / "clusters" / "east"
    cluster.mkdir(parents=True)
    _write(cluster / "base.yaml", [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
         "spec": {"controllerName": "mcgw.io/gateway-controller"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "gw", "namespace": "apps", "generation": 1},
         "spec": {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": GATEWAY_ADDRESS}],
                  "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}},
        *_service("apps", "app", APP_ADDRESS, app_port),
        *_service("other", "audit", AUDIT_ADDRESS, audit_port),
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "mirrored", "namespace": "apps", "generation": 1},
         "spec": {"parentRefs": [{"name": "gw"}], "rules": [{
             "matches": [{"path": {"type": "PathPrefix", "value": "/mirrored"}}],
             "filters": [{"type": "RequestMirror", "requestMirror": {
                 "backendRef": {"name": "audit", "namespace": "other", "port": 80}}}],
             "backendRefs": [{"name": "app", "port": 80}]}]}},
    ])
    options = StandaloneOptions(tmp_path / "clusters", xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    async with Standalone(options) as standalone:
        await standalone.wait_ready()

        def resolved_refs() -> tuple[str, str] | None:
            route = _admin(standalone.admin_port, "/api/status")["clusters"]["east"]["objects"]["HTTPRoute"]
            for parent in (route.get("apps/mirrored", {}).get("status") or {}).get("parents", []):
                for condition in parent["conditions"]:
                    if condition["type"] == "ResolvedRefs":
                        return condition["status"], condition["reason"]
            return None

        # No grant: the route serves, the status says why nothing is mirrored, and nothing is.
        await eventually_in_thread(lambda: _get(f"http://{GATEWAY_ADDRESS}:8080/mirrored") == 200, "the route serving")
        assert await asyncio.to_thread(resolved_refs) == ("False", "RefNotPermitted")
        await _send(REQUESTS)
        await asyncio.sleep(1.0)  # a mirrored request is sent beside the answer, not before it
        assert counter.hits == 0, "a mirror without a ReferenceGrant reached the other namespace"

        # With the grant, mirroring starts.
        _write(cluster / "grant.yaml", [GRANT])
        await eventually_in_thread(lambda: resolved_refs() == ("True", "ResolvedRefs"), "ResolvedRefs after the grant")

        async def mirrored() -> bool:
            await _send(5)
            await asyncio.sleep(0.2)
            return counter.hits > 0

        deadline = time.monotonic() + 20
        while not await mirrored():
            assert time.monotonic() < deadline, "the grant never started the mirroring"

        # Without it again, mirroring stops.
        (cluster / "grant.yaml").unlink()
        await eventually_in_thread(lambda: resolved_refs() == ("False", "RefNotPermitted"), "RefNotPermitted again",
                          within=30.0)
        await asyncio.sleep(1.0)  # the new route table reaches Envoy
        before = counter.hits
        await _send(REQUESTS)
        await asyncio.sleep(1.0)
        assert counter.hits == before, "mirroring went on after the grant was removed"
