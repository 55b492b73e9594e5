"""TCPRoute failover across three real clusters: ``mcgw run`` over the test bed, a TCP service exported from
each, east's Gateway (a real Envoy on the host) forwarding a TCP listener to the ServiceImport.

New connections open at 100/s, each asking the backend (mcgw's echo server, spoken to over the raw TCP
connection) which cluster it is. When east's backend is killed, or east's pod network is blackholed, no
new connection may fail: a refused connect (kill) or one that times out (blackhole) is made again, to west,
the next priority (``max_connect_attempts``), while health checks and outlier detection take east out.
Connections that were open when the fault came are counted apart: a killed backend's are closed (nothing
can move an established TCP stream); a blackholed one's hang until their peer gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.error
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from mcgw.app.config import load_run_config
from mcgw.app.run import Controller
from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget
from mcgw.support.netutil import free_port
from tests.e2e.testbed import ClusterSet, EchoBackend
from tests.e2e.testbed.cluster import MemberCluster
from tests.e2e.testbed.faults import BackendKill, Fault, NetworkBlackhole
from tests.e2e.xds_credentials import host_envoy_tls

GW, MCS = "gateway.networking.k8s.io", "multicluster.x-k8s.io"
ORDER = ["east", "west", "central"]
RATE = 100.0  # new connections per second
SHOP, INFRA = "db-tcp", "infra-tcp"
ASK_TIMEOUT = 5.0  # seconds for a connect, and for its answer


@dataclass
class Bed:
    clusterset: ClusterSet
    backends: dict[str, list[EchoBackend]]
    port: int  # the Gateway's TCP listener, on loopback


def _create(cluster: MemberCluster, path: str, body: dict[str, object]) -> None:
    cluster.request("POST", path, body)


def _export(cluster: MemberCluster, backends: list[EchoBackend]) -> None:
    _create(cluster, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SHOP}})
    _create(cluster, f"/api/v1/namespaces/{SHOP}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
        "spec": {"ports": [{"name": "db", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
    _create(cluster, f"/apis/discovery.k8s.io/v1/namespaces/{SHOP}/endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"db-{cluster.name}", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4", "ports": [{"name": "db", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [b.address], "conditions": {"ready": True}} for b in backends]})
    _create(cluster, f"/apis/{MCS}/v1beta1/namespaces/{SHOP}/serviceexports", {
        "apiVersion": f"{MCS}/v1beta1", "kind": "ServiceExport", "metadata": {"name": "db"}})


def _gateway_and_route(cluster: MemberCluster, port: int) -> None:
    _create(cluster, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INFRA}})
    with contextlib.suppress(urllib.error.HTTPError):  # another test may have created the class already
        _create(cluster, f"/apis/{GW}/v1/gatewayclasses", {
            "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
            "spec": {"controllerName": "mcgw.io/gateway-controller"}})
    _create(cluster, f"/apis/{GW}/v1/namespaces/{INFRA}/gateways", {
        "apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "public"},
        "spec": {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                 "listeners": [{"name": "db", "port": port, "protocol": "TCP",
                                "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    _create(cluster, f"/apis/{GW}/v1/namespaces/{SHOP}/tcproutes", {
        "apiVersion": f"{GW}/v1", "kind": "TCPRoute", "metadata": {"name": "db"},
        "spec": {"parentRefs": [{"name": "public", "namespace": INFRA}],
                 "rules": [{"backendRefs": [{"group": MCS, "kind": "ServiceImport", "name": "db", "port": 80}]}]}})


def _run_config(directory: Path, clusterset: ClusterSet, xds_port: int) -> Path:
    path = directory / "mcgw-tcp.yaml"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": name, "kubeconfig": str(clusterset.clusters[name].kubeconfig), "context": name,
                      **({"failoverOrder": ["west", "central"]} if name == "east" else {})} for name in ORDER],
        "xds": {"listen": f"127.0.0.1:{xds_port}"},
        "admin": {"listen": "127.0.0.1:0"},
        "leaderElection": {"leaseDuration": 4, "renewDeadline": 3, "retryPeriod": 0.5},
        "provisioning": {"enabled": False},  # east's Envoy runs on the host, started by the test
    }))
    return path


async def _ask(port: int) -> str:
    """One new connection through the Gateway: the cluster that answered, or why it failed."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), ASK_TIMEOUT)
    except (OSError, TimeoutError) as error:
        return f"connect: {error!r}"
    try:
        writer.write(b"GET /db HTTP/1.0\r\nHost: db\r\n\r\n")
        response = await asyncio.wait_for(reader.read(), ASK_TIMEOUT)
        _, _, body = response.partition(b"\r\n\r\n")
        return str(json.loads(body)["cluster"]) if body else "closed before an answer"
    except (OSError, TimeoutError, ValueError, KeyError) as error:
        return f"answer: {error!r}"
    finally:
        writer.close()


class ConnectionLoad:
    """New connections at a constant rate, open loop, on a thread and event loop of its own (the controller's
    translations must not delay them); every one recorded as (start time, outcome)."""

    def __init__(self, port: int, rate: float) -> None:
        self.port, self.rate = port, rate
        self.results: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _one(self) -> None:
        started = time.monotonic()
        self.results.append((started, await _ask(self.port)))

    async def _run(self) -> None:
        pending: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while not self._stop.is_set():
            task = asyncio.create_task(self._one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += 1 / self.rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[tuple[float, str]]:
        self._stop.set()
        self._thread.join(30)
        return sorted(self.results)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bed(clusterset: ClusterSet, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bed]:
    backends = {name: [clusterset.start_echo(name, namespace=SHOP, pod=f"db-{name}")] for name in ORDER}
    for name in ORDER:
        await asyncio.to_thread(_export, clusterset.clusters[name], backends[name])
    east = clusterset.clusters["east"]
    directory = tmp_path_factory.mktemp("tcproute")
    port, xds_port = free_port(), free_port()
    await asyncio.to_thread(_gateway_and_route, east, port)
    async with Controller(load_run_config(_run_config(directory, clusterset, xds_port))) as controller:
        await asyncio.wait_for(controller.reconciler.ready.wait(), 60)
        try:
            node = NodeIdentity("east", INFRA, "public")
            await asyncio.to_thread(clusterset.start_envoy, "east", node, XdsTarget(
                "127.0.0.1", xds_port, tls=host_envoy_tls(controller, node, directory)))
            deadline = time.monotonic() + 60
            while (answer := await _ask(port)) != "east":
                assert time.monotonic() < deadline, f"the TCPRoute never served from east (last: {answer})"
                await asyncio.sleep(0.2)
            yield Bed(clusterset, backends, port)
        finally:
            await asyncio.to_thread(_withdraw, clusterset)


def _withdraw(clusterset: ClusterSet) -> None:
    """The clusters are shared: leave no route, Gateway or export behind."""
    east = clusterset.clusters["east"]
    for path in (f"/apis/{GW}/v1/namespaces/{SHOP}/tcproutes/db", f"/apis/{GW}/v1/namespaces/{INFRA}/gateways/public"):
        with contextlib.suppress(urllib.error.HTTPError):
            east.request("DELETE", path)
    for name in ORDER:
        with contextlib.suppress(urllib.error.HTTPError):
            clusterset.clusters[name].request("DELETE", f"/apis/{MCS}/v1beta1/namespaces/{SHOP}/serviceexports/db")


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection through the Gateway left open (nothing sent yet)."""
    return await asyncio.open_connection("127.0.0.1", port)


async def _outcome(reader: asyncio.StreamReader) -> str:
    try:
        data = await asyncio.wait_for(reader.read(), 3)
        return "closed" if not data else "answered"
    except ConnectionError:
        return "reset"
    except TimeoutError:
        return "hanging"


@pytest.mark.parametrize("kind", ["kill", "blackhole"])
async def test_new_tcp_connections_fail_over_with_none_failing(bed: Bed, kind: str) -> None:
    fault: Fault = BackendKill(bed.clusterset, bed.backends["east"]) if kind == "kill" \
        else NetworkBlackhole(bed.clusterset.net("east"))
    load = ConnectionLoad(bed.port, RATE)
    load.start()
    restored = False
    opened = []
    try:
        await asyncio.sleep(1.5)
        opened = [await _open(bed.port) for _ in range(3)]
        await asyncio.sleep(0.2)
        fault_at = time.monotonic()
        await asyncio.to_thread(fault.inject)
        injected_at = time.monotonic()  # the backend is dead (waited for) or the link down
        deadline = time.monotonic() + 30
        while [c for at, c in sorted(load.results) if at > fault_at][-100:] != ["west"] * 100:
            assert time.monotonic() < deadline, f"new connections never all went to west: {load.results[-5:]}"
            await asyncio.sleep(0.1)
        open_outcomes = await asyncio.gather(*(_outcome(reader) for reader, _ in opened))
        restore_at = time.monotonic()
        await asyncio.to_thread(fault.restore)
        restored = True
        deadline = time.monotonic() + 30
        while [c for at, c in sorted(load.results) if at > restore_at][-100:] != ["east"] * 100:
            assert time.monotonic() < deadline, f"new connections never came back to east: {load.results[-5:]}"
            await asyncio.sleep(0.1)
    finally:
        if not restored:
            await asyncio.to_thread(fault.restore)
        results = load.stop()
        for _, writer in opened:
            writer.close()
    # Opened once the fault is complete: each must be served. Opened before (while the kill was landing), a
    # connection may already be the dead backend's: counted apart, with those held open across the fault.
    failed = [(round(at - injected_at, 3), c) for at, c in results if at >= injected_at and c not in ORDER]
    cut = [(round(at - injected_at, 3), c) for at, c in results if at < injected_at and c not in ORDER]
    during = [c for at, c in results if injected_at <= at < restore_at]
    first_west = next((at - injected_at for at, c in results if at >= injected_at and c == "west"), None)
    print(f"\n{kind}: {len(results)} new connections at {RATE:.0f}/s, {len(during)} opened during the fault "
          f"({(injected_at - fault_at) * 1000:.0f} ms to inject), {len(failed)} of them failed; answered by "
          f"{ {name: during.count(name) for name in ORDER} }; the first opened after it answered by west "
          f"{(first_west or 0) * 1000:.0f} ms after; {len(cut)} in flight as it landed were cut {cut[:3]}; "
          f"connections held open across the fault: {open_outcomes}")
    assert failed == [], f"new connections failed: {failed[:5]}"
    assert "central" not in during, "central (the third priority) answered while west (the second) was up"
    if kind == "kill":
        assert all(outcome in ("closed", "reset") for outcome in open_outcomes), open_outcomes
