"""Access logs written by real Envoys in ``mcgw standalone`` (the quickstart, on loopback): which host served
each request and connection, in which member cluster, as each Gateway's parameters ask."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mcgw.app.demo import QUICKSTART, _request, demo_backends
from mcgw.app.echo import make_app
from mcgw.app.standalone import Standalone, StandaloneOptions

GATEWAY = ("infra", "public")
PARAMETERS_REF = "{group: mcgw.io, kind: EnvoyProxy, name: access-log"


@pytest.fixture
async def clusters(tmp_path: Path) -> AsyncIterator[tuple[Path, dict[tuple[str, str], web.AppRunner]]]:
    """The quickstart and its sample backends (by cluster and address); west's Gateway logs text, central's
    GatewayClass turns the log off."""
    root = tmp_path / "clusters"
    shutil.copytree(QUICKSTART, root)
    proxy = "---\napiVersion: mcgw.io/v1alpha1\nkind: EnvoyProxy\nmetadata: {{name: access-log, namespace: infra}}\n" \
            "spec: {{accessLog: {log}}}\n"
    west = root / "west" / "gateway.yaml"
    west.write_text(west.read_text().replace(
        "  gatewayClassName: mcgw\n",
        f"  gatewayClassName: mcgw\n  infrastructure: {{parametersRef: {PARAMETERS_REF}}}}}\n")
        + proxy.format(log="{format: text}"))
    central = root / "central" / "gateway.yaml"
    central.write_text(central.read_text().replace(
        "spec: {controllerName: mcgw.io/gateway-controller}",
        f"spec: {{controllerName: mcgw.io/gateway-controller, parametersRef: {PARAMETERS_REF}, namespace: infra}}}}")
        + proxy.format(log="{enabled: false}"))
    runners = {}
    for backend in demo_backends(root):
        runner = web.AppRunner(make_app(backend.cluster, backend.namespace, backend.pod), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, backend.address, backend.port).start()
        runners[(backend.cluster, f"{backend.address}:{backend.port}")] = runner
    yield root, runners
    for runner in runners.values():
        await runner.cleanup()


def _access_lines(log: Path) -> list[str]:
    """The access log lines in an Envoy's output (its stdout, beside its own log on stderr)."""
    return [line for line in log.read_text().splitlines() if line.startswith(("{", "start_time="))]


async def _lines(log: Path, count: int, within: float = 10.0) -> list[str]:
    """The access log lines of an Envoy once there are ``count`` (it flushes them every second)."""
    lines: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        lines = await asyncio.to_thread(_access_lines, log)
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.1)
    raise AssertionError(f"{log} has {len(lines)} access log lines, not {count}")


def _tcp_exchange(address: str, port: int) -> bytes:
    with socket.create_connection((address, port), timeout=5) as connection:
        connection.sendall(b"GET /ledger HTTP/1.0\r\n\r\n")
        return connection.recv(1024)


async def test_envoys_log_the_upstream_host_and_the_cluster_that_served(
        clusters: tuple[Path, dict[tuple[str, str], web.AppRunner]]) -> None:
    root, runners = clusters
    options = StandaloneOptions(root, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    async with Standalone(options) as standalone:
        await standalone.wait_ready()
        assert standalone.fleet is not None
        envoys = {cluster: standalone.fleet.envoys[(cluster, GATEWAY)] for cluster in ("east", "west", "central")}
        east = envoys["east"]

        answer = await asyncio.to_thread(_request, f"http://{east.address}:8080/failover?token=secret")
        assert (answer.status, answer.cluster) == (200, "east")
        assert (await asyncio.to_thread(_tcp_exchange, east.address, 5432)).startswith(b"HTTP/1.0 200")
        by_listener = {entry["listener"]: entry for entry in map(json.loads, await _lines(east.process.log_path, 2))}
        request: dict[str, Any] = by_listener["infra/public/8080"]
        assert request["upstream_host"] in ("127.20.1.1:8080", "127.20.1.2:8080")
        assert (request["source_cluster"], request["response_code"], request["upstream_attempts"]) == ("east", 200, 1)
        assert (request["method"], request["path"]) == ("GET", "/failover")
        assert request["authority"] == f"{east.address}:8080"
        assert request["upstream_cluster"] == "serviceimport/shop/store/80"
        assert request["route_name"] == "shop/store/rule/1/match/0"
        assert request["response_flags"] == "-"
        assert isinstance(request["duration_ms"], int)
        assert "secret" not in json.dumps(request)  # the query is not logged
        connection: dict[str, Any] = by_listener["infra/public/5432"]
        assert (connection["upstream_host"], connection["source_cluster"]) == ("127.20.1.31:5432", "east")
        assert (connection["upstream_cluster"], connection["upstream_attempts"]) == (
            "serviceimport/shop/ledger/5432/tcp", 1)
        assert "method" not in connection
        assert "response_code" not in connection

        # East's store backends stop: the request is retried on the next priority, central (east's
        # failoverOrder), and the log says which cluster served it and that it took more than one attempt.
        for address in ("127.20.1.1:8080", "127.20.1.2:8080"):
            await runners.pop(("east", address)).cleanup()
        answer = await asyncio.to_thread(_request, f"http://{east.address}:8080/failover")
        assert (answer.status, answer.cluster) == (200, "central")
        failed_over = json.loads((await _lines(east.process.log_path, 3))[-1])
        assert (failed_over["source_cluster"], failed_over["response_code"]) == ("central", 200)
        assert failed_over["upstream_host"] in ("127.20.3.1:8080", "127.20.3.2:8080")
        assert failed_over["upstream_attempts"] > 1

        # West's Gateway asks for text, central's GatewayClass for no access log at all.
        west = envoys["west"]
        answer = await asyncio.to_thread(_request, f"http://{west.address}:8080/failover")
        assert answer.cluster == "west"
        (text,) = await _lines(west.process.log_path, 1)
        pairs = dict(pair.split("=", 1) for pair in text.split(" "))
        assert (pairs["source_cluster"], pairs["response_code"], pairs["method"]) == ("west", "200", "GET")
        assert pairs["upstream_host"] in ("127.20.2.1:8080", "127.20.2.2:8080")
        central = envoys["central"]
        answer = await asyncio.to_thread(_request, f"http://{central.address}:8080/failover")
        assert (answer.status, answer.cluster) == (200, "central")
        await asyncio.sleep(2)  # past the access log flush interval (1 s)
        assert not _access_lines(central.process.log_path)
