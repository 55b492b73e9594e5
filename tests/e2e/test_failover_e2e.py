"""Failover under steady load, end to end: ``mcgw run`` over three real clusters, a service exported from
each, east's gateway routing to the ServiceImport through a real Envoy, 200 requests/s against it.

Two beds, each running every test: ``host``, where the test starts east's Envoy on the host (provisioning
off) and sends to it on loopback; and ``provisioned``, where ``mcgw run`` provisions east's Gateway (a
Deployment's pod that east's pod runner runs as real Envoy, in a network namespace of its own) and the
traffic goes to the Gateway's address from east's load balancer, which forwards to that pod.

With mcgw's defaults (no FailoverPolicy) and east's ``failoverOrder: [west, central]``:
- killing east's backends, making them answer 503, or cutting east's pod network fails no request,
  and once traffic has moved every answer comes from west (the next priority), none from central;
- when east's backends are back, every answer comes from east again;
- with east and then west failed, answers walk east → west → central, in that order.

How long each shift took is printed, not asserted: speed goals live in ``benchmarks/failover``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import pytest_asyncio

from mcgw.app.config import load_run_config
from mcgw.app.run import Controller
from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget
from mcgw.support.netutil import free_port
from tests.e2e.provisioned import Mcgw, PodEnvoy, run_config, until
from tests.e2e.testbed import ClusterSet, EchoBackend
from tests.e2e.testbed import resources as bed_objects
from tests.e2e.testbed.cluster import MemberCluster
from tests.e2e.testbed.faults import Backend503, BackendKill, Fault, NetworkBlackhole, set_echo_mode
from tests.e2e.testbed.load import OpenLoopLoad, Sample, between, failures, served_by, settled_at
from tests.e2e.xds_credentials import host_envoy_tls

GW, MCS = "gateway.networking.k8s.io", "multicluster.x-k8s.io"
ORDER = ["east", "west", "central"]
RATE = 200.0
# Each bed's namespaces: the clusters are shared, and the ServiceImport of one bed must be gone before the next.
NAMESPACES = {"host": ("shop-failover", "infra-failover"), "provisioned": ("shop-failover-prov", "infra-failover-prov")}


class EnvoyAdmin(Protocol):
    def admin(self, path: str) -> bytes: ...


@dataclass
class Bed:
    clusterset: ClusterSet
    backends: dict[str, list[EchoBackend]]
    envoy: EnvoyAdmin  # east's gateway Envoy
    url: str
    variant: str  # "host": started by the test; "provisioned": mcgw's, a pod in east


def _create(cluster: MemberCluster, path: str, body: dict[str, Any]) -> None:
    cluster.request("POST", path, body)


def _export(cluster: MemberCluster, backends: Sequence[EchoBackend], shop: str) -> None:
    """Service ``cart`` with the EndpointSlice kube would write for its pods, exported to the ClusterSet."""
    bed_objects.service(cluster, shop, "cart", backends, "http")


def _gateway_and_route(cluster: MemberCluster, port: int, shop: str, infra: str, provisioned: bool) -> None:
    """East's Gateway ``public`` routing /cart to the ServiceImport: on loopback for an Envoy the test runs
    (a static address), or at whatever address its load balancer gives it when mcgw provisions its Envoys."""
    _create(cluster, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": infra}})
    with contextlib.suppress(urllib.error.HTTPError):  # another test may have created the class already
        _create(cluster, f"/apis/{GW}/v1/gatewayclasses", {
            "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
            "spec": {"controllerName": "mcgw.io/gateway-controller"}})
    addresses = [] if provisioned else [{"type": "IPAddress", "value": "127.0.0.1"}]
    _create(cluster, f"/apis/{GW}/v1/namespaces/{infra}/gateways", {
        "apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "public"},
        "spec": {"gatewayClassName": "mcgw", "addresses": addresses,
                 "listeners": [{"name": "http", "port": port, "protocol": "HTTP",
                                "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    _create(cluster, f"/apis/{GW}/v1/namespaces/{shop}/httproutes", {
        "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": "cart"},
        "spec": {"parentRefs": [{"name": "public", "namespace": infra}], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/cart"}}],
             "backendRefs": [{"group": MCS, "kind": "ServiceImport", "name": "cart", "port": 80}]}]}})


def _run_config(directory: Path, clusterset: ClusterSet, xds_port: int) -> Path:
    return bed_objects.run_config(directory / "mcgw-failover.yaml", clusterset, ORDER, xds_port)


def _answered_by(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(json.loads(response.read()).get("cluster", ""))
    except (OSError, ValueError):
        return ""


async def _eventually(check: Callable[[], bool], within: float, what: str,
                      explain: Callable[[], str] = lambda: "") -> None:
    """Wait for a state the system must reach; the generous limit only stops a broken run."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            pytest.fail(f"never happened within {within:.0f}s: {what}\n{await asyncio.to_thread(explain)}")
        await asyncio.sleep(0.1)


async def _served_only_by(url: str, cluster: str, streak: int = 20, within: float = 60) -> None:
    answers: list[str] = []

    def check() -> bool:
        answers.append(_answered_by(url))
        return answers[-streak:] == [cluster] * streak

    await _eventually(check, within, f"{streak} answers in a row from {cluster} (last: {answers[-5:]})")


def _explain(bed: Bed, load: OpenLoopLoad) -> Callable[[], str]:
    """What the last second of traffic and Envoy's view of the ServiceImport cluster looked like."""
    def explain() -> str:
        recent = load.answered_since(load.now() - 2)
        hosts = [line for line in bed.envoy.admin("/clusters").decode().splitlines()
                 if line.startswith("serviceimport/") and ("health_flags" in line or "priority" in line)]
        return (f"last 2 s of traffic: answered by {served_by(recent)}, failed {_describe_failures(recent)}\n"
                "Envoy hosts:\n" + "\n".join(hosts))

    return explain


def _settled(load: OpenLoopLoad, since: float, cluster: str, seconds: float = 1.0) -> Callable[[], bool]:
    """True once the last ``seconds`` of answered requests (sent after ``since``) all came from ``cluster``."""
    def check() -> bool:
        samples = sorted(load.answered_since(since), key=lambda s: s.sent)
        if not samples or samples[-1].sent - since < seconds:
            return False
        recent = [s for s in samples if s.sent >= samples[-1].sent - seconds]
        return all(s.ok and s.cluster == cluster for s in recent)

    return check


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=["host", "provisioned"])
async def bed(request: pytest.FixtureRequest, clusterset: ClusterSet,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bed]:
    variant: str = request.param
    shop, infra = NAMESPACES[variant]
    suffix = "" if variant == "host" else "-prov"
    backends = {name: [clusterset.start_echo(name, namespace=shop, pod=f"cart-{name}-{i}{suffix}") for i in range(2)]
                for name in ORDER}
    for name in ORDER:
        await asyncio.to_thread(_export, clusterset.clusters[name], backends[name], shop)
    east = clusterset.clusters["east"]
    directory = tmp_path_factory.mktemp(f"failover-{variant}")
    if variant == "host":
        port, xds_port = free_port(), free_port()
        await asyncio.to_thread(_gateway_and_route, east, port, shop, infra, False)
        async with Controller(load_run_config(_run_config(directory, clusterset, xds_port))) as controller:
            await asyncio.wait_for(controller.reconciler.ready.wait(), 60)
            try:
                node = NodeIdentity("east", infra, "public")
                envoy = await asyncio.to_thread(clusterset.start_envoy, "east", node, XdsTarget(
                    "127.0.0.1", xds_port, tls=host_envoy_tls(controller, node, directory)))
                url = f"http://127.0.0.1:{port}/cart"
                await _served_only_by(url, "east")
                yield Bed(clusterset, backends, envoy, url, variant)
            finally:
                await _withdraw(clusterset, shop, infra)
    else:
        await asyncio.to_thread(_gateway_and_route, east, 80, shop, infra, True)
        async with Mcgw(_provisioned_config(directory, clusterset), (shop, infra).__contains__):
            try:
                address = await until(lambda: asyncio.to_thread(_programmed_address, east, infra), 120,
                                      "east's Gateway to be Programmed at its load balancer's address")
                (pod,) = await asyncio.to_thread(_gateway_pods, east, infra)
                url = f"http://{address}:80/cart"
                await _served_only_by(url, "east")
                yield Bed(clusterset, backends, PodEnvoy.of(clusterset, "east", pod), url, variant)
            finally:
                await _withdraw(clusterset, shop, infra)


def _provisioned_config(directory: Path, clusterset: ClusterSet) -> Path:
    """mcgw run with provisioning, as deployed: east's Envoys are its own to run, in east."""
    return run_config(directory, clusterset, ORDER, failover_order={"east": ["west", "central"]})


def _programmed_address(cluster: MemberCluster, infra: str) -> str | None:
    gateway = cluster.request("GET", f"/apis/{GW}/v1/namespaces/{infra}/gateways/public")
    status = gateway.get("status") or {}
    programmed = any(c["type"] == "Programmed" and c["status"] == "True" and c.get("observedGeneration")
                     for c in status.get("conditions", []))
    addresses = [a["value"] for a in status.get("addresses", [])]
    return addresses[0] if programmed and addresses else None


def _gateway_pods(cluster: MemberCluster, infra: str) -> list[dict[str, Any]]:
    pods = cluster.request("GET", f"/api/v1/namespaces/{infra}/pods?labelSelector="
                                  "gateway.networking.k8s.io%2Fgateway-name%3Dpublic")
    return list(pods["items"])


async def _withdraw(clusterset: ClusterSet, shop: str, infra: str) -> None:
    """Delete the route, the Gateway and the exports while mcgw still runs: it removes the ServiceImports (and,
    for a provisioned Gateway, its Envoys' objects); wait until the imports are gone."""
    def delete() -> None:
        east = clusterset.clusters["east"]
        for path in (f"/apis/{GW}/v1/namespaces/{shop}/httproutes/cart",
                     f"/apis/{GW}/v1/namespaces/{infra}/gateways/public"):
            with contextlib.suppress(urllib.error.HTTPError):
                east.request("DELETE", path)
        for name in ORDER:
            with contextlib.suppress(urllib.error.HTTPError):
                clusterset.clusters[name].request("DELETE",
                                                  f"/apis/{MCS}/v1beta1/namespaces/{shop}/serviceexports/cart")

    # The clusters are shared: leave no export for another test's MCS controller to import.
    await asyncio.to_thread(delete)
    await _eventually(lambda: not any(_imported(clusterset.clusters[n], shop) for n in ORDER), 30,
                      "the ServiceImport to be gone from every cluster")


def _imported(cluster: MemberCluster, shop: str) -> bool:
    try:
        cluster.request("GET", f"/apis/{MCS}/v1beta1/namespaces/{shop}/serviceimports/cart")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise
    return True


def test_echo_backend_fails_on_demand_and_recovers(clusterset: ClusterSet) -> None:
    backend = clusterset.start_echo("central", namespace="shop-echo-fault", pod="echo-fault")
    set_echo_mode(backend, "503")
    for path in ("/healthz", "/anything"):
        with pytest.raises(urllib.error.HTTPError) as failed:
            backend.get(path)
        assert failed.value.code == 503
    set_echo_mode(backend, "ok")
    assert backend.get("/healthz")["ok"] is True
    assert backend.get("/anything")["cluster"] == "central"


def _fault(kind: str, bed: Bed, cluster: str) -> Fault:
    backends = bed.backends[cluster]
    if kind == "kill":
        return BackendKill(bed.clusterset, backends)
    if kind == "503":
        return Backend503(backends)
    return NetworkBlackhole(bed.clusterset.net(cluster))


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}s"


def _answers(samples: Sequence[Sample], cluster: str) -> list[Sample]:
    return [s for s in samples if s.ok and s.cluster == cluster]


@pytest.mark.parametrize("kind", ["kill", "503", "blackhole"])
async def test_failover_under_steady_load_loses_no_request(bed: Bed, kind: str) -> None:
    fault = _fault(kind, bed, "east")
    load = OpenLoopLoad(bed.url, RATE)
    await asyncio.to_thread(load.start)
    restored = False
    try:
        await asyncio.sleep(1.5)
        fault_at = load.mark("fault")
        await asyncio.to_thread(fault.inject)
        await _eventually(_settled(load, fault_at, "west"), 30, "every answer from west after the fault",
                          _explain(bed, load))
        await asyncio.sleep(1)
        restore_at = load.mark("restore")  # the fault window ends here: a restarted backend answers soon after
        await asyncio.to_thread(fault.restore)
        restored = True
        back_at = load.mark("restored")
        await _eventually(_settled(load, back_at, "east"), 30, "every answer from east after the restore",
                          _explain(bed, load))
        await asyncio.sleep(0.5)
    finally:
        if not restored:
            await asyncio.to_thread(fault.restore)
        samples = await asyncio.to_thread(load.stop)
    faulted, after = between(samples, fault_at, restore_at), between(samples, back_at)
    shifted, back = settled_at(faulted, fault_at, {"west"}), settled_at(after, back_at, {"east"})
    print(f"\n[{bed.variant}] {kind}: {len(samples)} requests, {len(failures(samples))} failed; every answer from west "
          f"{_seconds(None if shifted is None else shifted - fault_at)} after the fault, from east "
          f"{_seconds(None if back is None else max(0.0, back - back_at))} after the backends were back; "
          f"served during the fault "
          f"{served_by(faulted)}")
    assert failures(samples) == [], _describe_failures(samples)
    assert all(s.cluster == "east" for s in samples if s.completed < fault_at), "before the fault east answered"
    # From the shift on, every answer comes from the next priority (west); central, the third, never answers.
    assert shifted is not None
    assert _answers(samples, "central") == []
    # And when east's backends are back, every answer comes from east again.
    assert back is not None


async def test_three_levels_walk_the_failover_order(bed: Bed) -> None:
    east, west = _fault("kill", bed, "east"), _fault("kill", bed, "west")
    load = OpenLoopLoad(bed.url, RATE)
    await asyncio.to_thread(load.start)
    injected: list[Fault] = []
    try:
        await asyncio.sleep(1.5)
        east_at = load.mark("killing east")
        await asyncio.to_thread(east.inject)
        injected.append(east)
        east_down = load.mark("east down")
        await _eventually(_settled(load, east_at, "west"), 30, "every answer from west once east is down",
                          _explain(bed, load))
        west_at = load.mark("killing west")
        await asyncio.to_thread(west.inject)
        injected.append(west)
        west_down = load.mark("west down")
        await _eventually(_settled(load, west_at, "central"), 30, "every answer from central once west is down",
                          _explain(bed, load))
        await asyncio.sleep(0.5)
        restore_at = load.mark("restore")
        for fault in injected[::-1]:
            await asyncio.to_thread(fault.restore)
        injected.clear()
        back_at = load.mark("restored")
        await _eventually(_settled(load, back_at, "east"), 30, "every answer from east after the restore",
                          _explain(bed, load))
    finally:
        for fault in injected[::-1]:
            await asyncio.to_thread(fault.restore)
        samples = await asyncio.to_thread(load.stop)
    print(f"\n[{bed.variant}] three levels: {len(samples)} requests, {len(failures(samples))} failed; "
          f"east down: {served_by(between(samples, east_at, west_at))}, "
          f"west down too: {served_by(between(samples, west_at, restore_at))}")
    assert failures(samples) == [], _describe_failures(samples)
    # Each level takes over only once the one before it has failed, and never answers again until the restore.
    assert all(s.completed > east_at for s in _answers(samples, "west")), "west answered while east was up"
    assert all(s.completed > west_at for s in _answers(samples, "central")), "central answered while west was up"
    assert _answers(between(samples, east_down, restore_at), "east") == []
    assert _answers(between(samples, west_down, restore_at), "west") == []
    assert _answers(between(samples, east_down, west_at), "west"), "west took over from east"
    assert _answers(between(samples, west_down, restore_at), "central"), "central took over from west"


def _describe_failures(samples: Sequence[Sample]) -> str:
    failed = failures(samples)
    kinds: dict[str, int] = {}
    for sample in failed:
        key = str(sample.status) if sample.status else sample.error.split(":")[0]
        kinds[key] = kinds.get(key, 0) + 1
    first = failed[0].sent if failed else 0.0
    return f"{len(failed)} of {len(samples)} requests failed ({kinds}), the first sent at {first:.2f}s"
