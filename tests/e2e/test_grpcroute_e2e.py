"""GRPCRoute end to end in ``mcgw standalone``: gRPC calls through a real Envoy to gRPC servers.

Two member clusters export a gRPC service ``echo``; east's Gateway routes ``demo.Echo/Local`` to its own
Service and the rest of ``demo.Echo`` to the ServiceImport (east first, then west, east's failoverOrder).
A method no rule matches is UNIMPLEMENTED. Calls go one after another while east's server is stopped: none
may fail, and the answers move to west.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mcgw.app.standalone import Standalone, StandaloneOptions
from mcgw.support.netutil import free_port

GATEWAY_ADDRESS = "127.31.9.1"
BACKENDS = {"east": "127.31.9.10", "west": "127.31.9.20"}
GW, MCS = "gateway.networking.k8s.io", "multicluster.x-k8s.io"
SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse{status: SERVING}


class Echo(grpc.GenericRpcHandler):
    """Answers every ``demo.Echo`` method with its cluster's name, and the health service with SERVING."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster.encode()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = details.method
        if method == "/grpc.health.v1.Health/Check":
            return grpc.unary_unary_rpc_method_handler(self._health)
        if method.startswith("/demo.Echo/"):
            return grpc.unary_unary_rpc_method_handler(self._echo)
        return None

    async def _echo(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return self.cluster

    async def _health(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return SERVING


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, tuple[grpc.aio.Server, int]]]:
    started = {}
    for cluster, address in BACKENDS.items():
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((Echo(cluster),))
        port = free_port(address)
        server.add_insecure_port(f"{address}:{port}")
        await server.start()
        started[cluster] = (server, port)
    yield started
    for server, _ in started.values():
        await server.stop(None)


def _write(path: Path, documents: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n---\n".join(json.dumps(doc) for doc in documents) + "\n")


def _exported_echo(cluster: str, port: int) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rpc"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "rpc"},
         "spec": {"ports": [{"name": "grpc", "port": 80}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "echo-1", "namespace": "rpc", "labels": {"kubernetes.io/service-name": "echo"}},
         "addressType": "IPv4", "ports": [{"name": "grpc", "port": port}],
         "endpoints": [{"addresses": [BACKENDS[cluster]], "conditions": {"ready": True}}]},
        {"apiVersion": f"{MCS}/v1beta1", "kind": "ServiceExport",
         "metadata": {"name": "echo", "namespace": "rpc", "creationTimestamp": "2026-01-01T00:00:00Z"}},
    ]


EAST_GATEWAY = [
    {"apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
     "spec": {"controllerName": "mcgw.io/gateway-controller"}},
    {"apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": "rpc", "generation": 1},
     "spec": {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": GATEWAY_ADDRESS}],
              "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}},
    {"apiVersion": f"{GW}/v1", "kind": "GRPCRoute", "metadata": {"name": "echo", "namespace": "rpc", "generation": 1},
     "spec": {"parentRefs": [{"name": "gw"}], "rules": [
         {"matches": [{"method": {"service": "demo.Echo", "method": "Local"}}],
          "backendRefs": [{"name": "echo", "port": 80}]},
         {"matches": [{"method": {"service": "demo.Echo"}}],
          "backendRefs": [{"group": MCS, "kind": "ServiceImport", "name": "echo", "port": 80}]}]}},
]


async def _call(channel: grpc.aio.Channel, method: str) -> bytes | grpc.StatusCode:
    try:
        answer: bytes = await channel.unary_unary(method)(b"", timeout=5)
        return answer
    except grpc.aio.AioRpcError as error:
        return error.code()


async def test_grpc_calls_route_by_method_and_fail_over_to_the_next_cluster_without_a_failure(
        tmp_path: Path, servers: dict[str, tuple[grpc.aio.Server, int]]) -> None:
    root = tmp_path / "clusters"
    (root / "clusterset.yaml").parent.mkdir(parents=True)
    (root / "clusterset.yaml").write_text(
        "clusters:\n  - {name: east, failoverOrder: [west]}\n  - {name: west, failoverOrder: [east]}\n")
    _write(root / "east" / "echo.yaml", _exported_echo("east", servers["east"][1]))
    _write(root / "east" / "gateway.yaml", EAST_GATEWAY)
    _write(root / "west" / "echo.yaml", _exported_echo("west", servers["west"][1]))
    options = StandaloneOptions(root, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    async with Standalone(options) as standalone, grpc.aio.insecure_channel(f"{GATEWAY_ADDRESS}:8080") as channel:
        await standalone.wait_ready()
        deadline = time.monotonic() + 30
        while await _call(channel, "/demo.Echo/Say") != b"east":
            assert time.monotonic() < deadline, "the GRPCRoute never served from east"
            await asyncio.sleep(0.1)
        assert await _call(channel, "/demo.Echo/Local") == b"east"
        assert await _call(channel, "/other.Service/Say") == grpc.StatusCode.UNIMPLEMENTED

        answers: list[bytes | grpc.StatusCode] = []
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                answers.append(await _call(channel, "/demo.Echo/Say"))
                await asyncio.sleep(0.005)

        calls = asyncio.create_task(load())
        await asyncio.sleep(1.0)
        await servers["east"][0].stop(None)  # east's backend goes away
        killed_at = len(answers)
        deadline = time.monotonic() + 30
        while answers[-20:] != [b"west"] * 20:
            assert time.monotonic() < deadline, f"calls never moved to west; last answers {answers[-5:]}"
            await asyncio.sleep(0.1)
        stop.set()
        await calls
        failed = [a for a in answers if not isinstance(a, bytes)]
        print(f"\n{len(answers)} calls, {len(answers) - killed_at} after east stopped, {len(failed)} failed")
        assert failed == [], f"calls failed while failing over: {failed[:5]}"
        assert set(answers[:killed_at]) <= {b"east", b"west"}
