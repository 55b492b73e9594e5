"""TLSRoute passthrough across three real clusters: ``mcgw run`` over the test bed, east's Gateway (a real
Envoy on the host) with one TLS listener in Passthrough mode and two routes told apart by SNI alone.

- ``db.example.com`` goes to the ServiceImport ``db``, served from every cluster;
- ``api.example.com`` goes to east's own Service ``api``.

Every backend is mcgw's echo server speaking HTTPS with a certificate of its own from a test CA (subject
CN = its pod's name), and the client verifies against that CA, for the SNI name it sent. So an Envoy that
terminated TLS (it has no such certificate), a route picked by anything but SNI, or a backend of the wrong
cluster shows in every connection's record. New connections open at 100/s; killing east's ``db`` backend or
blackholing east's pod network fails none opened after the fault: west answers, with west's certificate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from mcgw.support.netutil import free_port
from tests.e2e.test_tcproute_testbed_e2e import report
from tests.e2e.testbed import ClusterSet, EchoBackend
from tests.e2e.testbed import resources as bed_objects
from tests.e2e.testbed.faults import BackendKill, Fault, NetworkBlackhole
from tests.e2e.testbed.load import OpenLoopLoad, Sample, between, until_served_by
from tests.e2e.testbed.pki import CertificateAuthority
from tests.e2e.xds_credentials import controller_with_east_envoy

GW, MCS = bed_objects.GW, bed_objects.MCS
ORDER = ["east", "west", "central"]
RATE = 100.0  # new connections per second
SHOP, INFRA = "db-tls", "infra-tls"
DB, API = "db.example.com", "api.example.com"
ASK_TIMEOUT = 5.0


@dataclass
class Bed:
    clusterset: ClusterSet
    db: dict[str, list[EchoBackend]]  # by cluster
    port: int  # the Gateway's TLS listener, on loopback
    ca: CertificateAuthority

    def url(self, name: str) -> str:
        return f"tls://127.0.0.1:{self.port}/who?sni={name}&ca={self.ca.cert_path}"


def _gateway_and_routes(clusterset: ClusterSet, port: int) -> None:
    east = clusterset.clusters["east"]
    bed_objects.gateway(east, INFRA, [{"name": "tls", "port": port, "protocol": "TLS", "hostname": "*.example.com",
                                       "tls": {"mode": "Passthrough"},
                                       "allowedRoutes": {"namespaces": {"from": "All"}}}])
    for route, hostname, backend in (
            ("db", DB, {"group": MCS, "kind": "ServiceImport", "name": "db", "port": 80}),
            ("api", API, {"name": "api", "port": 80})):
        bed_objects.create(east, f"/apis/{GW}/v1/namespaces/{SHOP}/tlsroutes", {
            "apiVersion": f"{GW}/v1", "kind": "TLSRoute", "metadata": {"name": route},
            "spec": {"parentRefs": [{"name": "public", "namespace": INFRA}], "hostnames": [hostname],
                     "rules": [{"backendRefs": [backend]}]}})


async def _samples(url: str, seconds: float, rate: float = RATE) -> list[Sample]:
    load = OpenLoopLoad(url, rate, ASK_TIMEOUT)
    await asyncio.to_thread(load.start)
    await asyncio.sleep(seconds)
    return await asyncio.to_thread(load.stop)


def _all_ok(samples: list[Sample]) -> bool:
    return bool(samples) and all(s.ok for s in samples)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bed(clusterset: ClusterSet, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bed]:
    directory = tmp_path_factory.mktemp("tlsroute")
    ca = CertificateAuthority(directory / "ca", "mcgw-tlsroute-test-ca")

    def backend(cluster: str, pod: str, hostname: str) -> EchoBackend:
        cert = ca.issue(pod, pod, dns=(hostname,), server=True)
        return clusterset.start_echo(cluster, namespace=SHOP, pod=pod, tls=cert)

    db = {name: [await asyncio.to_thread(backend, name, f"db-{name}", DB)] for name in ORDER}
    api = await asyncio.to_thread(backend, "east", "api-east", API)
    for name in ORDER:
        await asyncio.to_thread(bed_objects.service, clusterset.clusters[name], SHOP, "db", db[name], "tls")
    await asyncio.to_thread(bed_objects.service, clusterset.clusters["east"], SHOP, "api", [api], "tls", False)
    port, xds_port = free_port(), free_port()
    await asyncio.to_thread(_gateway_and_routes, clusterset, port)
    config = bed_objects.run_config(directory / "mcgw-tls.yaml", clusterset, ORDER, xds_port)
    result = Bed(clusterset, db, port, ca)
    try:
        async with controller_with_east_envoy(clusterset, config, xds_port, INFRA, directory):
            deadline = time.monotonic() + 60
            while not _all_ok(last := await _samples(result.url(DB), 0.05, 40)):
                assert time.monotonic() < deadline, f"the TLSRoute never served: {last[-3:]}"
                await asyncio.sleep(0.2)
            yield result
    finally:
        await asyncio.to_thread(_withdraw, clusterset)


def _withdraw(clusterset: ClusterSet) -> None:
    """The clusters are shared: leave no route, Gateway or export behind."""
    bed_objects.delete(clusterset.clusters["east"], *(f"/apis/{GW}/v1/namespaces/{SHOP}/tlsroutes/{r}"
                                                      for r in ("db", "api")),
                       f"/apis/{GW}/v1/namespaces/{INFRA}/gateways/public")
    for name in ORDER:
        bed_objects.delete(clusterset.clusters[name], f"/apis/{MCS}/v1beta1/namespaces/{SHOP}/serviceexports/db")


async def test_sni_picks_the_route_and_the_client_sees_the_backends_own_certificate(bed: Bed) -> None:
    db, api, unknown = await asyncio.gather(_samples(bed.url(DB), 1.0), _samples(bed.url(API), 1.0),
                                            _samples(bed.url("shop.example.com"), 0.3, 20))
    assert len(db) >= 90
    assert len(api) >= 90
    assert {(s.status, s.cluster, s.peer) for s in db} == {(200, "east", "db-east")}
    assert {(s.status, s.cluster, s.peer) for s in api} == {(200, "east", "api-east")}
    # A name the listener takes but no route has: Envoy finds no filter chain and drops the connection in the
    # handshake (the listener is there: never a refused connect).
    assert unknown
    dropped = {"connect: ConnectionResetError", "tls: EOF occurred in violation of protocol",
               "tls: UNEXPECTED_EOF_WHILE_READING"}
    assert {s.error for s in unknown} <= dropped, unknown[:3]


@pytest.mark.parametrize("kind", ["kill", "blackhole"])
async def test_new_tls_connections_fail_over_to_the_next_cluster_and_its_certificate(bed: Bed, kind: str) -> None:
    fault: Fault = BackendKill(bed.clusterset, bed.db["east"]) if kind == "kill" \
        else NetworkBlackhole(bed.clusterset.net("east"))
    load = OpenLoopLoad(bed.url(DB), RATE, ASK_TIMEOUT)
    await asyncio.to_thread(load.start)
    restored = False
    try:
        await asyncio.sleep(1.5)
        fault_at = load.mark("fault")
        await asyncio.to_thread(fault.inject)
        injected_at = load.mark("injected")
        await until_served_by(load, fault_at, "west")
        restore_at = load.mark("restore")
        await asyncio.to_thread(fault.restore)
        restored = True
        await until_served_by(load, restore_at, "east")
    finally:
        if not restored:
            await asyncio.to_thread(fault.restore)
        results = await asyncio.to_thread(load.stop)
    failed, _, during = report(kind, results, fault_at, injected_at, restore_at)
    assert failed == [], f"new connections failed: {failed[:5]}"
    assert {s.cluster for s in during} == {"west"}, "west (the second priority) alone answers during the fault"
    answered = [s for s in results if s.ok]
    assert all(s.peer == f"db-{s.cluster}" for s in answered), \
        {(s.cluster, s.peer) for s in answered if s.peer != f"db-{s.cluster}"}
    assert any(s.cluster == "east" for s in between(results, restore_at)), "east never answered after the restore"
