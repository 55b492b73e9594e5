"""Gateway API end to end: manifests in a real kube-apiserver, mcgw's translation served to a real Envoy,
requests routed as the spec says, and status written through the status subresource."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes.aio import client, config

from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget
from mcgw.providers.kubernetes.lister import list_cluster
from mcgw.providers.kubernetes.status_writer import write_statuses
from mcgw.runtime.pipeline import ClusterOutput, translate_cluster
from mcgw.support.netutil import free_port
from tests.e2e.testbed import ClusterSet
from xdsserver import Snapshot, SnapshotCache, XdsServer

GW = "gateway.networking.k8s.io"
FOREIGN = {"parentRef": {"group": GW, "kind": "Gateway", "namespace": "infra", "name": "elsewhere"},
           "controllerName": "example.com/another-controller",
           "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "theirs",
                           "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
async def east_api(clusterset: ClusterSet) -> AsyncIterator[client.ApiClient]:
    cluster = clusterset.clusters["east"]
    api = await config.new_client_from_config(config_file=str(cluster.kubeconfig), context=cluster.name)
    yield api
    await api.close()


async def _apply(api: client.ApiClient, port: int, backend_addresses: list[str], payments_address: str) -> None:
    core, discovery, custom = client.CoreV1Api(api), client.DiscoveryV1Api(api), client.CustomObjectsApi(api)
    for namespace in ("infra", "shop", "payments"):
        await core.create_namespace({"metadata": {"name": namespace}})
    try:
        await custom.create_cluster_custom_object(GW, "v1", "gatewayclasses", {
            "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
            "spec": {"controllerName": "mcgw.io/gateway-controller"}})
    except client.ApiException as error:
        if error.status != 409:  # 409: another test of the session created it (clusters are shared)
            raise
    await custom.create_namespaced_custom_object(GW, "v1", "infra", "gateways", {
        "apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "public"},
        "spec": {"gatewayClassName": "mcgw", "listeners": [
            {"name": "http", "port": port, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    await core.create_namespaced_service("shop", {
        "metadata": {"name": "cart"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    await discovery.create_namespaced_endpoint_slice("shop", {
        "metadata": {"name": "cart-1", "labels": {"kubernetes.io/service-name": "cart"}}, "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in backend_addresses]})
    # A Service with no endpoints at all, and one in another namespace behind a ReferenceGrant.
    await core.create_namespaced_service("shop", {"metadata": {"name": "empty"}, "spec": {"ports": [{"port": 80}]}})
    await core.create_namespaced_service("payments", {
        "metadata": {"name": "pay"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    await discovery.create_namespaced_endpoint_slice("payments", {
        "metadata": {"name": "pay-1", "labels": {"kubernetes.io/service-name": "pay"}}, "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [payments_address], "conditions": {"ready": True}}]})
    await custom.create_namespaced_custom_object(GW, "v1beta1", "payments", "referencegrants", {
        "apiVersion": f"{GW}/v1beta1", "kind": "ReferenceGrant", "metadata": {"name": "shop-may-pay"},
        "spec": {"from": [{"group": GW, "kind": "HTTPRoute", "namespace": "shop"}],
                 "to": [{"group": "", "kind": "Service", "name": "pay"}]}})
    route: dict[str, Any] = {
        "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": "cart"},
        "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/cart"}}],
             "filters": [{"type": "RequestHeaderModifier",
                          "requestHeaderModifier": {"set": [{"name": "x-mcgw-route", "value": "cart"}]}}],
             "backendRefs": [{"name": "cart", "port": 80}]},
            {"matches": [{"path": {"type": "Exact", "value": "/broken"}}],
             "backendRefs": [{"name": "no-such-service", "port": 80}]},
            {"matches": [{"path": {"type": "Exact", "value": "/empty"}}],
             "backendRefs": [{"name": "empty", "port": 80}]},
            {"matches": [{"path": {"type": "Exact", "value": "/pay"}}],
             "backendRefs": [{"name": "pay", "namespace": "payments", "port": 80}]},
        ]}}
    created = await custom.create_namespaced_custom_object(GW, "v1", "shop", "httproutes", route)
    # Another controller already reports on this route: mcgw must keep its entry.
    await custom.replace_namespaced_custom_object_status(GW, "v1", "shop", "httproutes", "cart",
                                                         {**created, "status": {"parents": [FOREIGN]}})


GATEWAY = ("infra", "public")


async def _publish(api: client.ApiClient, cache: SnapshotCache) -> ClusterOutput:
    """What the controller does on every change: list, translate, publish."""
    listing = await list_cluster(api, "east")
    assert listing.errors == []
    output = translate_cluster("east", listing.objects, addresses={GATEWAY: ["127.0.0.1"]},
                               bind_addresses={GATEWAY: "127.0.0.1"})
    cache.set_snapshot(("east", "infra/public"), Snapshot.from_messages(output.resources[GATEWAY],
                                                                       previous=cache.get(("east", "infra/public"))))
    return output


async def _eventually_status(url: str, expected: int, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (status := (await asyncio.to_thread(_get, url))[0]) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{url} answered {status}, expected {expected}"
        await asyncio.sleep(0.1)


async def test_routes_served_by_envoy_and_status_written(clusterset: ClusterSet, east_api: client.ApiClient) -> None:
    backends = [clusterset.start_echo("east", namespace="shop", pod=f"cart-{i}") for i in range(2)]
    payments = clusterset.start_echo("east", namespace="payments", pod="pay-0")
    port = free_port()
    await _apply(east_api, port, [b.address for b in backends], payments.address)

    cache = SnapshotCache()
    output = await _publish(east_api, cache)
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    try:
        await asyncio.to_thread(clusterset.start_envoy, "east", NodeIdentity("east", "infra", "public"),
                                XdsTarget("127.0.0.1", xds_port))
        served = set()
        for _ in range(6):
            status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/cart/items")
            assert status == 200
            answer = json.loads(body)
            assert (answer["cluster"], answer["namespace"]) == ("east", "shop")
            assert {k.lower(): v for k, v in answer["headers"].items()}.get("x-mcgw-route") == "cart"
            served.add(answer["pod"])
        assert served == {"cart-0", "cart-1"}
        assert (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/broken"))[0] == 500  # invalid backend
        assert (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/empty"))[0] == 503  # no ready endpoint
        assert (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/nowhere"))[0] == 404  # no match
        status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/pay")
        assert (status, json.loads(body)["namespace"]) == (200, "payments")  # granted cross-namespace backend
        # Gateway and HTTPRoute at least; the shared cluster may also hold other tests' objects (and the
        # GatewayClass status an earlier test's controller wrote), so the exact count is not this test's.
        assert await write_statuses(east_api, output.statuses()) >= 2
        assert await write_statuses(east_api, output.statuses()) == 0  # nothing changed: nothing written

        # Deleting the ReferenceGrant revokes the cross-namespace backend: its share now answers 500.
        await client.CustomObjectsApi(east_api).delete_namespaced_custom_object(
            GW, "v1beta1", "payments", "referencegrants", "shop-may-pay")
        revoked = await _publish(east_api, cache)
        await _eventually_status(f"http://127.0.0.1:{port}/pay", 500)
        assert (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/cart"))[0] == 200
        assert await write_statuses(east_api, revoked.statuses()) == 1  # only the HTTPRoute's ResolvedRefs changed
    finally:
        await server.stop(0)

    custom = client.CustomObjectsApi(east_api)
    stored_gateway = await custom.get_namespaced_custom_object_status(GW, "v1", "infra", "gateways", "public")
    gateway_status = stored_gateway["status"]
    # ResolvedRefs: the Gateway-level references (spec.tls.backend) and its listeners' all resolve.
    assert {c["type"]: c["status"] for c in gateway_status["conditions"]} == {"Accepted": "True",
                                                                              "Programmed": "True",
                                                                              "ResolvedRefs": "True"}
    assert gateway_status["addresses"] == [{"type": "IPAddress", "value": "127.0.0.1"}]
    (listener,) = gateway_status["listeners"]
    assert listener["attachedRoutes"] == 1
    generation = stored_gateway["metadata"]["generation"]
    assert all(c["observedGeneration"] == generation for c in gateway_status["conditions"])
    stored_route = await custom.get_namespaced_custom_object_status(GW, "v1", "shop", "httproutes", "cart")
    parents = {p["controllerName"]: p for p in stored_route["status"]["parents"]}
    assert parents["example.com/another-controller"] == FOREIGN
    ours = {c["type"]: (c["status"], c["reason"]) for c in parents["mcgw.io/gateway-controller"]["conditions"]}
    assert ours["Accepted"] == ("True", "Accepted")
    assert ours["ResolvedRefs"][0] == "False"  # a missing Service and, after the grant went, a revoked one
    messages = [c["message"] for c in parents["mcgw.io/gateway-controller"]["conditions"]]
    assert any("no-such-service" in m and "and 1 more" in m for m in messages)
    gateway_class = await custom.get_cluster_custom_object_status(GW, "v1", "gatewayclasses", "mcgw")
    assert gateway_class["status"]["conditions"][0]["reason"] == "Accepted"
