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

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from mcgw.app.grpc_echo import CHANNEL_OPTIONS, HEALTH_METHOD, NOT_SERVING, SERVING, answered_by
from tests.e2e.failover_bed import GW, MCS, Bed, RouteKind, assert_lossless_failover, failover_bed, fault_of
from tests.e2e.testbed import ClusterSet
from tests.e2e.testbed.faults import set_echo_mode

# Each bed's namespaces: the clusters are shared, and the ServiceImport of one bed must be gone before the next.
NAMESPACES = {"host": ("rpc-failover", "infra-grpc-failover"),
              "provisioned": ("rpc-failover-prov", "infra-grpc-failover-prov")}
METHOD = "demo.Echo/Say"


def _grpc_route(infra: str) -> dict[str, Any]:
    """GRPCRoute ``echo`` sending ``demo.Echo`` to the ServiceImport ``echo``."""
    return {"apiVersion": f"{GW}/v1", "kind": "GRPCRoute", "metadata": {"name": "echo"},
            "spec": {"parentRefs": [{"name": "public", "namespace": infra}], "rules": [
                {"matches": [{"method": {"service": "demo.Echo"}}],
                 "backendRefs": [{"group": MCS, "kind": "ServiceImport", "name": "echo", "port": 80}]}]}}


GRPC = RouteKind("echo", "grpcroutes/echo", "grpc",
                 lambda clusterset, cluster, ns, pod: clusterset.start_grpc_echo(cluster, namespace=ns, pod=pod),
                 _grpc_route, "grpc", lambda address, port: f"grpc://{address}:{port}/{METHOD}", answered_by)


def _call(target: str, method: str, request: bytes = b"") -> bytes | grpc.StatusCode:
    with grpc.insecure_channel(target, CHANNEL_OPTIONS) as channel:
        try:
            answer: bytes = channel.unary_unary(method)(request, timeout=2)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
    return answer


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=["host", "provisioned"])
async def bed(request: pytest.FixtureRequest, clusterset: ClusterSet,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bed]:
    variant: str = request.param
    async with failover_bed(GRPC, variant, NAMESPACES[variant], clusterset,
                            tmp_path_factory.mktemp(f"grpc-failover-{variant}")) as ready:
        yield ready


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


@pytest.mark.parametrize("kind", ["kill", "unavailable", "blackhole"])
async def test_grpc_failover_under_steady_load_loses_no_call(bed: Bed, kind: str) -> None:
    await assert_lossless_failover(bed, fault_of(kind, bed, "east"), f"[grpc {bed.variant}] {kind}", "calls")
