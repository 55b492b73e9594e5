"""gRPC failover under steady load, end to end: ``mcgw run`` over three real clusters, a gRPC service
exported from each, east's GRPCRoute sending ``demo.Echo`` to the ServiceImport through a real Envoy,
200 unary calls/s against it.

Two beds, as in ``test_failover_e2e``: ``host`` (the test starts east's Envoy on the host, provisioning
off, calls on loopback) and ``provisioned`` (mcgw provisions east's Gateway as a pod east's pod runner
runs; calls go to the Gateway's address from east's load balancer).

The backends are gRPC echo servers (``mcgw/app/grpc_echo.py``) in each cluster's pod network,
health-checked by Envoy with ``grpc.health.v1``. With mcgw's defaults (no FailoverPolicy) and east's
``failoverOrder: [west, central]``: killing east's backends, making them fail every call with
``UNAVAILABLE``, or cutting east's pod network fails no call; once traffic has moved every answer comes
from west (the next priority), none from central; when east's backends are back, every answer comes
from east again.

How long each shift took is printed, not asserted: speed goals live in ``benchmarks/failover``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from mcgw.app.config import load_run_config
from mcgw.app.grpc_echo import CHANNEL_OPTIONS, HEALTH_METHOD, NOT_SERVING, SERVING, answered_by
from mcgw.app.run import Controller
from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget
from mcgw.support.netutil import free_port
from tests.e2e.provisioned import Mcgw, PodEnvoy, until
from tests.e2e.test_failover_e2e import (
    GW,
    MCS,
    ORDER,
    RATE,
    Bed,
    _answers,
    _create,
    _describe_failures,
    _eventually,
    _explain,
    _gateway_pods,
    _imported,
    _programmed_address,
    _provisioned_config,
    _seconds,
    _settled,
)
from tests.e2e.testbed import ClusterSet, EchoBackend
from tests.e2e.testbed import resources as bed_objects
from tests.e2e.testbed.cluster import MemberCluster
from tests.e2e.testbed.faults import Backend503, BackendKill, Fault, NetworkBlackhole, set_echo_mode
from tests.e2e.testbed.load import OpenLoopLoad, between, failures, served_by, settled_at
from tests.e2e.xds_credentials import host_envoy_tls

# Each bed's namespaces: the clusters are shared, and the ServiceImport of one bed must be gone before the next.
NAMESPACES = {"host": ("rpc-failover", "infra-grpc-failover"),
              "provisioned": ("rpc-failover-prov", "infra-grpc-failover-prov")}
METHOD = "demo.Echo/Say"


def _export(cluster: MemberCluster, backends: Sequence[EchoBackend], shop: str) -> None:
    """Service ``echo`` (port 80 → the servers' 8080) with its EndpointSlice, exported to the ClusterSet."""
    bed_objects.service(cluster, shop, "echo", backends, "grpc")


def _gateway_and_route(cluster: MemberCluster, port: int, shop: str, infra: str, provisioned: bool) -> None:
    """East's Gateway ``public`` (on loopback for an Envoy the test runs, else at its load balancer's address),
    and a GRPCRoute sending ``demo.Echo`` to the ServiceImport."""
    _create(cluster, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": infra}})
    with contextlib.suppress(urllib.error.HTTPError):  # another test may have created the class already
        _create(cluster, f"/apis/{GW}/v1/gatewayclasses", {
            "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
            "spec": {"controllerName": "mcgw.io/gateway-controller"}})
    _create(cluster, f"/apis/{GW}/v1/namespaces/{infra}/gateways", {
        "apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "public"},
        "spec": {"gatewayClassName": "mcgw",
                 "addresses": [] if provisioned else [{"type": "IPAddress", "value": "127.0.0.1"}],
                 "listeners": [{"name": "grpc", "port": port, "protocol": "HTTP",
                                "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    _create(cluster, f"/apis/{GW}/v1/namespaces/{shop}/grpcroutes", {
        "apiVersion": f"{GW}/v1", "kind": "GRPCRoute", "metadata": {"name": "echo"},
        "spec": {"parentRefs": [{"name": "public", "namespace": infra}], "rules": [
            {"matches": [{"method": {"service": "demo.Echo"}}],
             "backendRefs": [{"group": MCS, "kind": "ServiceImport", "name": "echo", "port": 80}]}]}})


def _run_config(directory: Path, clusterset: ClusterSet, xds_port: int) -> Path:
    return bed_objects.run_config(directory / "mcgw-grpc-failover.yaml", clusterset, ORDER, xds_port)


def _call(target: str, method: str, request: bytes = b"") -> bytes | grpc.StatusCode:
    with grpc.insecure_channel(target, CHANNEL_OPTIONS) as channel:
        try:
            answer: bytes = channel.unary_unary(method)(request, timeout=2)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
    return answer


async def _served_only_by(url: str, cluster: str, streak: int = 20, within: float = 60) -> None:
    answers: list[str] = []

    def check() -> bool:
        answers.append(answered_by(url))
        return answers[-streak:] == [cluster] * streak

    await _eventually(check, within, f"{streak} gRPC answers in a row from {cluster} (last: {answers[-5:]})")


async def _withdraw(clusterset: ClusterSet, shop: str, infra: str) -> None:
    """Delete the route, the Gateway and the exports while mcgw still runs, and wait until the imports are gone
    (the clusters are shared: leave no export for another test's MCS controller to import)."""
    def delete() -> None:
        east = clusterset.clusters["east"]
        for path in (f"/apis/{GW}/v1/namespaces/{shop}/grpcroutes/echo",
                     f"/apis/{GW}/v1/namespaces/{infra}/gateways/public"):
            with contextlib.suppress(urllib.error.HTTPError):
                east.request("DELETE", path)
        for name in ORDER:
            with contextlib.suppress(urllib.error.HTTPError):
                clusterset.clusters[name].request("DELETE",
                                                  f"/apis/{MCS}/v1beta1/namespaces/{shop}/serviceexports/echo")

    await asyncio.to_thread(delete)
    await _eventually(lambda: not any(_imported(clusterset.clusters[n], shop) for n in ORDER), 30,
                      "the ServiceImport to be gone from every cluster")


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=["host", "provisioned"])
async def bed(request: pytest.FixtureRequest, clusterset: ClusterSet,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bed]:
    variant: str = request.param
    shop, infra = NAMESPACES[variant]
    suffix = "" if variant == "host" else "-prov"
    backends = {name: [clusterset.start_grpc_echo(name, namespace=shop, pod=f"echo-{name}-{i}{suffix}")
                       for i in range(2)] for name in ORDER}
    for name in ORDER:
        await asyncio.to_thread(_export, clusterset.clusters[name], backends[name], shop)
    east = clusterset.clusters["east"]
    directory = tmp_path_factory.mktemp(f"grpc-failover-{variant}")
    if variant == "host":
        port, xds_port = free_port(), free_port()
        await asyncio.to_thread(_gateway_and_route, east, port, shop, infra, False)
        async with Controller(load_run_config(_run_config(directory, clusterset, xds_port))) as controller:
            await asyncio.wait_for(controller.reconciler.ready.wait(), 60)
            try:
                node = NodeIdentity("east", infra, "public")
                envoy = await asyncio.to_thread(clusterset.start_envoy, "east", node, XdsTarget(
                    "127.0.0.1", xds_port, tls=host_envoy_tls(controller, node, directory)))
                url = f"grpc://127.0.0.1:{port}/{METHOD}"
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
                url = f"grpc://{address}:80/{METHOD}"
                await _served_only_by(url, "east")
                yield Bed(clusterset, backends, PodEnvoy.of(clusterset, "east", pod), url, variant)
            finally:
                await _withdraw(clusterset, shop, infra)


def test_grpc_echo_backend_fails_on_demand_and_recovers(clusterset: ClusterSet) -> None:
    backend = clusterset.start_grpc_echo("central", namespace="rpc-echo-fault", pod="grpc-echo-fault")
    target = f"{backend.address}:{backend.port}"
    set_echo_mode(backend, "unavailable")
    assert _call(target, "/demo.Echo/Say") == grpc.StatusCode.UNAVAILABLE
    assert _call(target, HEALTH_METHOD) == NOT_SERVING
    set_echo_mode(backend, "ok")
    assert _call(target, HEALTH_METHOD) == SERVING
    answer = _call(target, "/demo.Echo/Say")
    assert isinstance(answer, bytes)
    assert json.loads(answer)["cluster"] == "central"


def _fault(kind: str, bed: Bed, cluster: str) -> Fault:
    backends = bed.backends[cluster]
    if kind == "kill":
        return BackendKill(bed.clusterset, backends)
    if kind == "unavailable":
        return Backend503(backends)
    return NetworkBlackhole(bed.clusterset.net(cluster))


@pytest.mark.parametrize("kind", ["kill", "unavailable", "blackhole"])
async def test_grpc_failover_under_steady_load_loses_no_call(bed: Bed, kind: str) -> None:
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
        restore_at = load.mark("restore")
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
    print(f"\n[grpc {bed.variant}] {kind}: {len(samples)} calls, {len(failures(samples))} failed; "
          f"every answer from west "
          f"{_seconds(None if shifted is None else shifted - fault_at)} after the fault, from east "
          f"{_seconds(None if back is None else max(0.0, back - back_at))} after the backends were back; "
          f"served during the fault {served_by(faulted)}")
    assert failures(samples) == [], _describe_failures(samples)
    assert all(s.cluster == "east" for s in samples if s.completed < fault_at), "before the fault east answered"
    # From the shift on, every answer comes from the next priority (west); central, the third, never answers.
    assert shifted is not None
    assert _answers(samples, "central") == []
    # And when east's backends are back, every answer comes from east again.
    assert back is not None
