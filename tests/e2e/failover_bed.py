"""The failover bed shared by the HTTP and gRPC failover e2e tests (and the in-cluster controller's): a
service exported from each of the three clusters, east's Gateway routing to its ServiceImport, and either an
Envoy the test starts on the host (``host``) or the one mcgw provisions as a pod in east (``provisioned``).

What differs between route kinds is a ``RouteKind``; the rest (starting the bed, withdrawing it, waiting,
explaining a wait that failed, one fault-and-restore run under steady load) is here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mcgw.app.config import load_run_config
from mcgw.app.run import Controller
from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget
from mcgw.support.netutil import free_port
from tests.e2e.eventually import eventually_in_thread
from tests.e2e.provisioned import Mcgw, PodEnvoy, run_config, until
from tests.e2e.testbed import ClusterSet, EchoBackend
from tests.e2e.testbed import resources as bed_objects
from tests.e2e.testbed.cluster import MemberCluster
from tests.e2e.testbed.faults import Backend503, BackendKill, Fault, NetworkBlackhole, restored_at_end
from tests.e2e.testbed.load import (
    OpenLoopLoad,
    Sample,
    between,
    describe_failures,
    failures,
    served_by,
    settled_at,
    settles,
)
from tests.e2e.xds_credentials import host_envoy_tls

GW, MCS = bed_objects.GW, bed_objects.MCS
ORDER = ["east", "west", "central"]
RATE = 200.0


class EnvoyAdmin(Protocol):
    def admin(self, path: str) -> bytes: ...


@dataclass
class Bed:
    clusterset: ClusterSet
    backends: dict[str, list[EchoBackend]]
    envoy: EnvoyAdmin  # east's gateway Envoy
    url: str
    variant: str  # "host": started by the test; "provisioned": mcgw's, a pod in east


def _answered_by(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(json.loads(response.read()).get("cluster", ""))
    except (OSError, ValueError):
        return ""


@dataclass(frozen=True)
class RouteKind:
    """How one route kind's bed differs: its backends, Service, route, URL and how a client reads who
    answered."""

    service: str  # the Service exported from every cluster, and so the ServiceImport's name
    route: str  # the route's path below its namespace, e.g. "httproutes/cart"
    port_name: str  # the Service port's name, which is also its appProtocol hint
    start_backend: Callable[[ClusterSet, str, str, str], EchoBackend]  # (clusterset, cluster, namespace, pod)
    route_body: Callable[[str], dict[str, Any]]  # the route object, given the Gateway's namespace
    listener: str  # the Gateway listener's name
    url: Callable[[str, int], str]  # (address, port) → what the load and the probes send to
    answered_by: Callable[[str], str] = _answered_by  # one request: the cluster that answered, or ""


def http_route_to(name: str) -> Callable[[str], dict[str, Any]]:
    """HTTPRoute ``name`` sending /``name`` to the ServiceImport of that name."""
    def body(infra: str) -> dict[str, Any]:
        return {"apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": name},
                "spec": {"parentRefs": [{"name": "public", "namespace": infra}], "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": f"/{name}"}}],
                     "backendRefs": [{"group": MCS, "kind": "ServiceImport", "name": name, "port": 80}]}]}}

    return body


HTTP = RouteKind("cart", "httproutes/cart", "http",
                 lambda clusterset, cluster, ns, pod: clusterset.start_echo(cluster, namespace=ns, pod=pod),
                 http_route_to("cart"), "http", lambda address, port: f"http://{address}:{port}/cart")


def export(kind: RouteKind, cluster: MemberCluster, backends: Sequence[EchoBackend], shop: str) -> None:
    """The kind's Service with the EndpointSlice kube would write for its pods, exported to the ClusterSet."""
    bed_objects.service(cluster, shop, kind.service, backends, kind.port_name)


def gateway_and_route(kind: RouteKind, cluster: MemberCluster, port: int, shop: str, infra: str,
                      provisioned: bool) -> None:
    """East's Gateway ``public`` (on loopback for an Envoy the test runs, else at its load balancer's address)
    and the kind's route to the ServiceImport."""
    bed_objects.gateway(cluster, infra, [{"name": kind.listener, "port": port, "protocol": "HTTP",
                                          "allowedRoutes": {"namespaces": {"from": "All"}}}], provisioned)
    collection = kind.route.split("/")[0]
    bed_objects.create(cluster, f"/apis/{GW}/v1/namespaces/{shop}/{collection}", kind.route_body(infra))


async def served_only_by(url: str, cluster: str, streak: int = 20, within: float = 60,
                         answered_by: Callable[[str], str] = _answered_by) -> None:
    answers: list[str] = []

    def check() -> bool:
        answers.append(answered_by(url))
        return answers[-streak:] == [cluster] * streak

    await eventually_in_thread(check, f"{streak} answers in a row from {cluster} (last: {answers[-5:]})", within)


def settled(load: OpenLoopLoad, since: float, cluster: str, seconds: float = 1.0) -> Callable[[], bool]:
    """True once the last ``seconds`` of answered requests (sent after ``since``) all came from ``cluster``."""
    return settles(load, since, lambda s: s.ok and s.cluster == cluster, seconds)


def explain(bed: Bed, load: OpenLoopLoad) -> Callable[[], str]:
    """What the last second of traffic and Envoy's view of the ServiceImport cluster looked like."""
    def text() -> str:
        recent = load.answered_since(load.now() - 2)
        hosts = [line for line in bed.envoy.admin("/clusters").decode().splitlines()
                 if line.startswith("serviceimport/") and ("health_flags" in line or "priority" in line)]
        return (f"last 2 s of traffic: answered by {served_by(recent)}, failed {describe_failures(recent)}\n"
                "Envoy hosts:\n" + "\n".join(hosts))

    return text


def answers(samples: Sequence[Sample], cluster: str) -> list[Sample]:
    return [s for s in samples if s.ok and s.cluster == cluster]


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}s"


def programmed_address(cluster: MemberCluster, infra: str) -> str | None:
    gateway = cluster.request("GET", f"/apis/{GW}/v1/namespaces/{infra}/gateways/public")
    status = gateway.get("status") or {}
    programmed = any(c["type"] == "Programmed" and c["status"] == "True" and c.get("observedGeneration")
                     for c in status.get("conditions", []))
    addresses = [a["value"] for a in status.get("addresses", [])]
    return addresses[0] if programmed and addresses else None


def gateway_pods(cluster: MemberCluster, infra: str) -> list[dict[str, Any]]:
    pods = cluster.request("GET", f"/api/v1/namespaces/{infra}/pods?labelSelector="
                                  "gateway.networking.k8s.io%2Fgateway-name%3Dpublic")
    return list(pods["items"])


def imported(cluster: MemberCluster, shop: str, service: str = "cart") -> bool:
    try:
        cluster.request("GET", f"/apis/{MCS}/v1beta1/namespaces/{shop}/serviceimports/{service}")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise
    return True


async def withdraw(clusterset: ClusterSet, shop: str, infra: str, kind: RouteKind = HTTP) -> None:
    """Delete the route, the Gateway and the exports while mcgw still runs: it removes the ServiceImports (and,
    for a provisioned Gateway, its Envoys' objects); wait until the imports are gone. The clusters are shared:
    leave no export for another test's MCS controller to import."""
    def delete() -> None:
        bed_objects.delete(clusterset.clusters["east"], f"/apis/{GW}/v1/namespaces/{shop}/{kind.route}",
                           f"/apis/{GW}/v1/namespaces/{infra}/gateways/public")
        for name in ORDER:
            bed_objects.delete(clusterset.clusters[name],
                               f"/apis/{MCS}/v1beta1/namespaces/{shop}/serviceexports/{kind.service}")

    await asyncio.to_thread(delete)
    await eventually_in_thread(lambda: not any(imported(clusterset.clusters[n], shop, kind.service) for n in ORDER),
                               f"the ServiceImport {kind.service} to be gone from every cluster", 30)


def provisioned_config(directory: Path, clusterset: ClusterSet) -> Path:
    """mcgw run with provisioning, as deployed: east's Envoys are its own to run, in east."""
    return run_config(directory, clusterset, ORDER, failover_order={"east": ["west", "central"]})


@contextlib.asynccontextmanager
async def failover_bed(kind: RouteKind, variant: str, namespaces: tuple[str, str], clusterset: ClusterSet,
                       directory: Path) -> AsyncIterator[Bed]:
    """The bed of ``variant`` for ``kind``, in the namespaces ``(shop, infra)``, serving from east before it is
    handed over; withdrawn afterwards."""
    shop, infra = namespaces
    suffix = "" if variant == "host" else "-prov"
    backends = {name: [kind.start_backend(clusterset, name, shop, f"{kind.service}-{name}-{i}{suffix}")
                       for i in range(2)] for name in ORDER}
    for name in ORDER:
        await asyncio.to_thread(export, kind, clusterset.clusters[name], backends[name], shop)
    east = clusterset.clusters["east"]
    if variant == "host":
        port, xds_port = free_port(), free_port()
        await asyncio.to_thread(gateway_and_route, kind, east, port, shop, infra, False)
        config = bed_objects.run_config(directory / "mcgw.yaml", clusterset, ORDER, xds_port)
        async with Controller(load_run_config(config)) as controller:
            await asyncio.wait_for(controller.reconciler.ready.wait(), 60)
            try:
                node = NodeIdentity("east", infra, "public")
                envoy = await asyncio.to_thread(clusterset.start_envoy, "east", node, XdsTarget(
                    "127.0.0.1", xds_port, tls=host_envoy_tls(controller, node, directory)))
                url = kind.url("127.0.0.1", port)
                await served_only_by(url, "east", answered_by=kind.answered_by)
                yield Bed(clusterset, backends, envoy, url, variant)
            finally:
                await withdraw(clusterset, shop, infra, kind)
    else:
        await asyncio.to_thread(gateway_and_route, kind, east, 80, shop, infra, True)
        async with Mcgw(provisioned_config(directory, clusterset), (shop, infra).__contains__):
            try:
                address = await until(lambda: asyncio.to_thread(programmed_address, east, infra), 120,
                                      "east's Gateway to be Programmed at its load balancer's address")
                (pod,) = await asyncio.to_thread(gateway_pods, east, infra)
                url = kind.url(address, 80)
                await served_only_by(url, "east", answered_by=kind.answered_by)
                yield Bed(clusterset, backends, PodEnvoy.of(clusterset, "east", pod), url, variant)
            finally:
                await withdraw(clusterset, shop, infra, kind)


def fault_of(kind: str, bed: Bed, cluster: str) -> Fault:
    """``kill`` (SIGKILL), ``503`` or ``unavailable`` (every answer fails, health checks too), or ``blackhole``
    (the cluster's pod network goes dark)."""
    backends = bed.backends[cluster]
    if kind == "kill":
        return BackendKill(bed.clusterset, backends)
    if kind in ("503", "unavailable"):
        return Backend503(backends)
    if kind == "blackhole":
        return NetworkBlackhole(bed.clusterset.net(cluster))
    raise ValueError(f"unknown fault {kind!r}")


async def assert_lossless_failover(bed: Bed, fault: Fault, label: str, noun: str = "requests") -> None:
    """Under steady load, ``fault`` on east: not one request fails, every answer comes from west (the next
    priority) once traffic has moved and none from central (the third), and from east again after the restore.
    How long each shift took is printed."""
    load = OpenLoopLoad(bed.url, RATE)
    await asyncio.to_thread(load.start)
    try:
        async with restored_at_end(fault) as in_force:
            await asyncio.sleep(1.5)
            fault_at = load.mark("fault")
            await in_force.inject()
            await eventually_in_thread(settled(load, fault_at, "west"), "every answer from west after the fault",
                                       30, explain=explain(bed, load))
            await asyncio.sleep(1)
            restore_at = load.mark("restore")  # the fault window ends here: a restarted backend answers soon after
            await in_force.restore()
            back_at = load.mark("restored")
            await eventually_in_thread(settled(load, back_at, "east"), "every answer from east after the restore",
                                       30, explain=explain(bed, load))
            await asyncio.sleep(0.5)
    finally:
        samples = await asyncio.to_thread(load.stop)
    faulted, after = between(samples, fault_at, restore_at), between(samples, back_at)
    shifted, back = settled_at(faulted, fault_at, {"west"}), settled_at(after, back_at, {"east"})
    print(f"\n{label}: {len(samples)} {noun}, {len(failures(samples))} failed; every answer from west "
          f"{seconds(None if shifted is None else shifted - fault_at)} after the fault, from east "
          f"{seconds(None if back is None else max(0.0, back - back_at))} after the backends were back; "
          f"served during the fault {served_by(faulted)}")
    assert failures(samples) == [], describe_failures(samples)
    assert all(s.cluster == "east" for s in samples if s.completed < fault_at), "before the fault east answered"
    # From the shift on, every answer comes from the next priority (west); central, the third, never answers.
    assert shifted is not None
    assert answers(samples, "central") == []
    # And when east's backends are back, every answer comes from east again.
    assert back is not None
