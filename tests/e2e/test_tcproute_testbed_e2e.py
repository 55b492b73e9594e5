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
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from mcgw.support.netutil import free_port
from tests.e2e.testbed import ClusterSet, EchoBackend
from tests.e2e.testbed import resources as bed_objects
from tests.e2e.testbed.faults import BackendKill, Fault, NetworkBlackhole
from tests.e2e.testbed.load import OpenLoopLoad, Sample, between, until_served_by
from tests.e2e.xds_credentials import controller_with_east_envoy

GW, MCS = bed_objects.GW, bed_objects.MCS
ORDER = ["east", "west", "central"]
RATE = 100.0  # new connections per second
SHOP, INFRA = "db-tcp", "infra-tcp"
ASK_TIMEOUT = 5.0  # seconds for a connect, and for its answer


@dataclass
class Bed:
    clusterset: ClusterSet
    backends: dict[str, list[EchoBackend]]
    url: str  # tcp:// through the Gateway's TCP listener, on loopback


def _gateway_and_route(clusterset: ClusterSet, port: int) -> None:
    east = clusterset.clusters["east"]
    bed_objects.gateway(east, INFRA, [{"name": "db", "port": port, "protocol": "TCP",
                                       "allowedRoutes": {"namespaces": {"from": "All"}}}])
    bed_objects.create(east, f"/apis/{GW}/v1/namespaces/{SHOP}/tcproutes", {
        "apiVersion": f"{GW}/v1", "kind": "TCPRoute", "metadata": {"name": "db"},
        "spec": {"parentRefs": [{"name": "public", "namespace": INFRA}],
                 "rules": [{"backendRefs": [{"group": MCS, "kind": "ServiceImport", "name": "db", "port": 80}]}]}})


async def _answered_by(url: str) -> str:
    """One connection through the Gateway: the cluster that answered, or why it failed."""
    load = OpenLoopLoad(url, rate=20, timeout=ASK_TIMEOUT)
    await asyncio.to_thread(load.start)
    await asyncio.sleep(0.01)
    samples = await asyncio.to_thread(load.stop)
    return samples[0].cluster or samples[0].error if samples else "no sample"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bed(clusterset: ClusterSet, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bed]:
    backends = {name: [clusterset.start_echo(name, namespace=SHOP, pod=f"db-{name}")] for name in ORDER}
    for name in ORDER:
        await asyncio.to_thread(bed_objects.service, clusterset.clusters[name], SHOP, "db", backends[name], "db")
    directory = tmp_path_factory.mktemp("tcproute")
    port, xds_port = free_port(), free_port()
    url = f"tcp://127.0.0.1:{port}/db"
    await asyncio.to_thread(_gateway_and_route, clusterset, port)
    config = bed_objects.run_config(directory / "mcgw-tcp.yaml", clusterset, ORDER, xds_port)
    try:
        async with controller_with_east_envoy(clusterset, config, xds_port, INFRA, directory):
            deadline = time.monotonic() + 60
            while (answer := await _answered_by(url)) != "east":
                assert time.monotonic() < deadline, f"the TCPRoute never served from east (last: {answer})"
                await asyncio.sleep(0.2)
            yield Bed(clusterset, backends, url)
    finally:
        await asyncio.to_thread(_withdraw, clusterset)


def _withdraw(clusterset: ClusterSet) -> None:
    """The clusters are shared: leave no route, Gateway or export behind."""
    bed_objects.delete(clusterset.clusters["east"], f"/apis/{GW}/v1/namespaces/{SHOP}/tcproutes/db",
                       f"/apis/{GW}/v1/namespaces/{INFRA}/gateways/public")
    for name in ORDER:
        bed_objects.delete(clusterset.clusters[name], f"/apis/{MCS}/v1beta1/namespaces/{SHOP}/serviceexports/db")


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection through the Gateway left open (nothing sent yet)."""
    port = int(url.removeprefix("tcp://").split("/")[0].rpartition(":")[2])
    return await asyncio.open_connection("127.0.0.1", port)


async def _outcome(reader: asyncio.StreamReader) -> str:
    try:
        data = await asyncio.wait_for(reader.read(), 3)
        return "closed" if not data else "answered"
    except ConnectionError:
        return "reset"
    except TimeoutError:
        return "hanging"


def report(kind: str, results: list[Sample], fault_at: float, injected_at: float, restore_at: float) -> tuple[
        list[Sample], list[Sample], list[Sample]]:
    """Print the run; returns the connections opened once the fault was complete that failed, those opened
    while it landed that failed (nothing can save them: counted apart), and those opened during the fault."""
    failed = [s for s in between(results, injected_at) if not s.ok]
    cut = [s for s in between(results, fault_at, injected_at) if not s.ok]
    during = between(results, injected_at, restore_at)
    first_west = next((s.sent - injected_at for s in during if s.cluster == "west"), 0.0)
    print(f"\n{kind}: {len(results)} new connections at {RATE:.0f}/s, {len(during)} opened during the fault "
          f"({(injected_at - fault_at) * 1000:.0f} ms to inject), {len(failed)} of them failed; answered by "
          f"{ {name: sum(s.cluster == name for s in during) for name in ORDER} }; the first opened after it "
          f"answered by west {first_west * 1000:.0f} ms after; {len(cut)} opened as it landed failed "
          f"{[(round(s.sent - injected_at, 3), s.error) for s in cut[:3]]}")
    return failed, cut, during


@pytest.mark.parametrize("kind", ["kill", "blackhole"])
async def test_new_tcp_connections_fail_over_with_none_failing(bed: Bed, kind: str) -> None:
    fault: Fault = BackendKill(bed.clusterset, bed.backends["east"]) if kind == "kill" \
        else NetworkBlackhole(bed.clusterset.net("east"))
    load = OpenLoopLoad(bed.url, RATE, ASK_TIMEOUT)
    await asyncio.to_thread(load.start)
    restored = False
    opened = []
    try:
        await asyncio.sleep(1.5)
        opened = [await _open(bed.url) for _ in range(3)]
        await asyncio.sleep(0.2)
        fault_at = load.mark("fault")
        await asyncio.to_thread(fault.inject)
        injected_at = load.mark("injected")  # the backend is dead (waited for) or the link down
        await until_served_by(load, fault_at, "west")
        open_outcomes = await asyncio.gather(*(_outcome(reader) for reader, _ in opened))
        restore_at = load.mark("restore")
        await asyncio.to_thread(fault.restore)
        restored = True
        await until_served_by(load, restore_at, "east")
    finally:
        if not restored:
            await asyncio.to_thread(fault.restore)
        results = await asyncio.to_thread(load.stop)
        for _, writer in opened:
            writer.close()
    failed, _, during = report(kind, results, fault_at, injected_at, restore_at)
    print(f"connections held open across the fault: {open_outcomes}")
    assert failed == [], f"new connections failed: {failed[:5]}"
    assert not any(s.cluster == "central" for s in during), "central (the third priority) answered while west was up"
    if kind == "kill":
        assert all(outcome in ("closed", "reset") for outcome in open_outcomes), open_outcomes
