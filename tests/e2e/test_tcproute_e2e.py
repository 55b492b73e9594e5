"""TCPRoute and UDPRoute end to end in ``mcgw standalone``: connections and datagrams through a real Envoy.

Two member clusters export a TCP service ``db`` and a UDP service ``dns``; east's Gateway has a TCP
listener whose TCPRoute sends to the ServiceImport ``db`` (east first, then west, east's failoverOrder)
and a UDP listener on the same port number whose UDPRoute sends to the ServiceImport ``dns``. Each
backend says which cluster it is: the TCP one writes its name on every new connection, the UDP one
answers every datagram with its name and the datagram.

New connections open at about 100/s while east's TCP backend is killed (it stops listening and its open
connections are closed): none of them may fail, and they move to west. Connections that were open when
east's backend died cannot be saved; they are counted apart and must have been closed, not left hanging.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from mcgw.app.standalone import Standalone, StandaloneOptions
from mcgw.support.netutil import free_port

GATEWAY_ADDRESS = "127.31.10.1"
GATEWAY_PORT = 9400  # the TCP listener's and the UDP listener's
BACKENDS = {"east": "127.31.10.10", "west": "127.31.10.20"}
GW, MCS = "gateway.networking.k8s.io", "multicluster.x-k8s.io"
RATE = 100  # new connections per second


@dataclass
class TcpBackend:
    """A TCP server that writes its cluster's name on every connection, then echoes what it reads."""

    cluster: str
    server: asyncio.Server | None = None
    port: int = 0
    connections: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self.port = free_port(BACKENDS[self.cluster])
        self.server = await asyncio.start_server(self._serve, BACKENDS[self.cluster], self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(writer)
        try:
            writer.write(f"{self.cluster}\n".encode())
            await writer.drain()
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.connections.discard(writer)
            writer.close()

    async def kill(self) -> None:
        """As a dying process: no more listening, and every open connection closed."""
        assert self.server is not None
        self.server.close()
        for writer in list(self.connections):
            writer.transport.abort()
        await self.server.wait_closed()


class UdpBackend(asyncio.DatagramProtocol):
    """Answers every datagram with ``<cluster> <datagram>``."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.cluster.encode() + b" " + data, addr)


@pytest.fixture
async def backends() -> AsyncIterator[dict[str, tuple[TcpBackend, int]]]:
    """Per cluster: its TCP backend and its UDP backend's port."""
    loop = asyncio.get_running_loop()
    started: dict[str, tuple[TcpBackend, int]] = {}
    transports = []
    for cluster, address in BACKENDS.items():
        tcp = TcpBackend(cluster)
        await tcp.start()
        udp_port = free_port(address)
        transport, _ = await loop.create_datagram_endpoint(lambda c=cluster: UdpBackend(c),  # type: ignore[misc]
                                                           local_addr=(address, udp_port))
        transports.append(transport)
        started[cluster] = (tcp, udp_port)
    yield started
    for tcp, _ in started.values():
        if tcp.server is not None and tcp.server.is_serving():
            await tcp.kill()
    for transport in transports:
        transport.close()


def _write(path: Path, documents: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n---\n".join(json.dumps(doc) for doc in documents) + "\n")


def _exported(cluster: str, name: str, port: int, protocol: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "data"},
         "spec": {"ports": [{"name": name, "port": 5000, "protocol": protocol}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{name}-1", "namespace": "data", "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4", "ports": [{"name": name, "port": port, "protocol": protocol}],
         "endpoints": [{"addresses": [BACKENDS[cluster]], "conditions": {"ready": True}}]},
        {"apiVersion": f"{MCS}/v1beta1", "kind": "ServiceExport",
         "metadata": {"name": name, "namespace": "data", "creationTimestamp": "2026-01-01T00:00:00Z"}},
    ]


def _cluster(cluster: str, backends: dict[str, tuple[TcpBackend, int]]) -> list[dict[str, Any]]:
    tcp, udp_port = backends[cluster]
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "data"}},
            *_exported(cluster, "db", tcp.port, "TCP"), *_exported(cluster, "dns", udp_port, "UDP")]


EAST_GATEWAY = [
    {"apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
     "spec": {"controllerName": "mcgw.io/gateway-controller"}},
    {"apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": "data", "generation": 1},
     "spec": {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": GATEWAY_ADDRESS}],
              "listeners": [{"name": "db", "port": GATEWAY_PORT, "protocol": "TCP"},
                            {"name": "dns", "port": GATEWAY_PORT, "protocol": "UDP"}]}},
    {"apiVersion": f"{GW}/v1", "kind": "TCPRoute", "metadata": {"name": "db", "namespace": "data", "generation": 1},
     "spec": {"parentRefs": [{"name": "gw", "sectionName": "db"}],
              "rules": [{"backendRefs": [{"group": MCS, "kind": "ServiceImport", "name": "db", "port": 5000}]}]}},
    {"apiVersion": f"{GW}/v1", "kind": "UDPRoute", "metadata": {"name": "dns", "namespace": "data", "generation": 1},
     "spec": {"parentRefs": [{"name": "gw", "sectionName": "dns"}],
              "rules": [{"backendRefs": [{"group": MCS, "kind": "ServiceImport", "name": "dns", "port": 5000}]}]}},
]


async def _new_connection() -> str:
    """The cluster that answered a new connection through the Gateway, or why it failed."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(GATEWAY_ADDRESS, GATEWAY_PORT), 5)
    except (OSError, TimeoutError) as error:
        return f"connect: {error!r}"
    try:
        line = await asyncio.wait_for(reader.readline(), 5)
        return line.decode().strip() or "closed before an answer"
    except (OSError, TimeoutError) as error:
        return f"read: {error!r}"
    finally:
        writer.close()


async def _open_connection() -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(GATEWAY_ADDRESS, GATEWAY_PORT)
    return (await asyncio.wait_for(reader.readline(), 5)).decode().strip(), reader, writer


async def _closed(reader: asyncio.StreamReader) -> bool:
    """Whether the connection was closed (EOF or reset) rather than left open."""
    try:
        return await asyncio.wait_for(reader.read(1024), 5) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


async def _datagram(payload: bytes) -> bytes | None:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            if not answer.done():
                answer.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(GATEWAY_ADDRESS, GATEWAY_PORT))
    try:
        transport.sendto(payload)
        return await asyncio.wait_for(answer, 1)
    except TimeoutError:
        return None
    finally:
        transport.close()


async def test_tcp_connections_fail_over_to_the_next_cluster_with_no_failed_new_connection_and_udp_round_trips(
        tmp_path: Path, backends: dict[str, tuple[TcpBackend, int]]) -> None:
    root = tmp_path / "clusters"
    (root / "clusterset.yaml").parent.mkdir(parents=True)
    (root / "clusterset.yaml").write_text(
        "clusters:\n  - {name: east, failoverOrder: [west]}\n  - {name: west, failoverOrder: [east]}\n")
    _write(root / "east" / "data.yaml", _cluster("east", backends))
    _write(root / "east" / "gateway.yaml", EAST_GATEWAY)
    _write(root / "west" / "data.yaml", _cluster("west", backends))
    options = StandaloneOptions(root, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    async with Standalone(options) as standalone:
        await standalone.wait_ready()
        deadline = time.monotonic() + 30
        while await _new_connection() != "east":
            assert time.monotonic() < deadline, "the TCPRoute never served from east"
            await asyncio.sleep(0.1)
        # UDP: a datagram through the UDP listener on the same port number, answered by east's backend.
        deadline = time.monotonic() + 30
        while (answer := await _datagram(b"ping")) != b"east ping":
            assert time.monotonic() < deadline, f"no UDP round trip through the UDPRoute; last answer {answer!r}"
            await asyncio.sleep(0.1)

        open_before = [await _open_connection() for _ in range(5)]
        assert {cluster for cluster, _, _ in open_before} == {"east"}
        results: list[tuple[float, str]] = []
        stop = asyncio.Event()

        async def one() -> None:
            started = time.monotonic()
            results.append((started, await _new_connection()))

        async def load() -> None:  # open loop: a new connection every 1/RATE s, whatever the others do
            pending: set[asyncio.Task[None]] = set()
            next_at = time.monotonic()
            while not stop.is_set():
                task = asyncio.create_task(one())
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += 1 / RATE
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*pending)

        connections = asyncio.create_task(load())
        await asyncio.sleep(2.0)
        tcp_east, _ = backends["east"]
        killed_at = time.monotonic()
        await tcp_east.kill()
        deadline = time.monotonic() + 30
        while [cluster for _, cluster in sorted(results)[-50:]] != ["west"] * 50:
            assert time.monotonic() < deadline, f"new connections never moved to west; last {results[-5:]}"
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        stop.set()
        await connections

        after = [(at, cluster) for at, cluster in results if at >= killed_at]
        failed = [cluster for _, cluster in results if cluster not in ("east", "west")]
        first_west = min(at for at, cluster in after if cluster == "west") - killed_at
        cut = [await _closed(reader) for _, reader, _ in open_before]
        for _, _, writer in open_before:
            writer.close()
        print(f"\n{len(results)} new connections at {RATE}/s, {len(after)} after east's backend was killed, "
              f"{len(failed)} failed; the first connection opened {first_west * 1000:.0f} ms after the kill was "
              "served by west; "
              f"{sum(cut)} of {len(open_before)} connections open at the kill were closed")
        assert failed == [], f"new connections failed while failing over: {failed[:5]}"
        assert all(cut), "a connection to the dead backend was left open instead of closed"
        # UDP still answers (east's UDP backend is alive).
        assert await _datagram(b"again") == b"east again"
