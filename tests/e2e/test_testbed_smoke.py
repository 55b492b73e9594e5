"""The test bed works end to end: clusters, CRDs, pod addresses the API accepts, and Envoy reaching them."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException

from tests.e2e.testbed import ClusterSet
from tests.e2e.testbed.cluster import MemberCluster
from tests.e2e.testbed.processes import free_port

EXPECTED_CRDS = {
    "gatewayclasses.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "referencegrants.gateway.networking.k8s.io",
    "serviceexports.multicluster.x-k8s.io",
    "serviceimports.multicluster.x-k8s.io",
}


async def _api(cluster: MemberCluster) -> client.ApiClient:
    return await config.new_client_from_config(config_file=str(cluster.kubeconfig), context=cluster.name)


@pytest.fixture
async def api_clients(clusterset: ClusterSet) -> AsyncIterator[dict[str, client.ApiClient]]:
    clients = {name: await _api(cluster) for name, cluster in clusterset.clusters.items()}
    yield clients
    for api in clients.values():
        await api.close()


def _service(name: str) -> dict[str, Any]:
    # Selectorless: nothing but our hand-made EndpointSlice feeds it, as MCS import slices will.
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def _endpoint_slice(service: str, slice_name: str, addresses: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": slice_name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}} for address in addresses],
    }


def _static_route_to(backend_address: str, backend_port: int, listen_port: int) -> dict[str, Any]:
    """One listener on loopback whose only route goes to the EndpointSlice address."""
    return {
        "listeners": [{
            "name": "smoke",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                             ".HttpConnectionManager",
                    "stat_prefix": "smoke",
                    "route_config": {"virtual_hosts": [{
                        "name": "all", "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}],
                    }]},
                    "http_filters": [{
                        "name": "envoy.filters.http.router",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                    }],
                },
            }]}],
        }],
        "clusters": [{
            "name": "echo", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "echo", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": backend_address, "port_value": backend_port}},
            }}]}]},
        }],
    }


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def test_three_clusters_with_crds_established(clusterset: ClusterSet) -> None:
    assert len(clusterset.clusters) == 3
    for cluster in clusterset.clusters.values():
        crds = cluster.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]
        established = {
            crd["metadata"]["name"] for crd in crds
            if any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])
        }
        assert established >= EXPECTED_CRDS, f"{cluster.name}: missing {EXPECTED_CRDS - established}"
        version = cluster.request("GET", "/version")
        assert version["gitVersion"] == clusterset.artifacts.kube_version


def test_clusters_are_isolated(clusterset: ClusterSet) -> None:
    east, west = clusterset.clusters["east"], clusterset.clusters["west"]
    east.request("POST", "/api/v1/namespaces", {"metadata": {"name": "only-in-east"}})
    assert east.request("GET", "/api/v1/namespaces/only-in-east")["metadata"]["name"] == "only-in-east"
    with pytest.raises(urllib.request.HTTPError) as missing:
        west.request("GET", "/api/v1/namespaces/only-in-east")
    assert missing.value.code == 404


async def test_api_server_rejects_loopback_endpoints(
    clusterset: ClusterSet, api_clients: dict[str, client.ApiClient]
) -> None:
    """Why the test bed needs namespaces at all: loopback pod addresses are refused."""
    discovery = client.DiscoveryV1Api(api_clients["east"])
    with pytest.raises(ApiException) as refused:
        await discovery.create_namespaced_endpoint_slice(
            "default", _endpoint_slice("loopback", "loopback-1", ["127.0.0.1"]))
    assert refused.value.status == 422
    assert "loopback" in (refused.value.body or "")


async def test_envoy_reaches_backend_through_api_endpoint_slice(
    clusterset: ClusterSet, api_clients: dict[str, client.ApiClient]
) -> None:
    for name in clusterset.clusters:
        backend = clusterset.start_echo(name)
        core = client.CoreV1Api(api_clients[name])
        discovery = client.DiscoveryV1Api(api_clients[name])
        await core.create_namespaced_service("default", _service("echo"))
        await discovery.create_namespaced_endpoint_slice(
            "default", _endpoint_slice("echo", "echo-1", [backend.address]))

        # Read back what the API server stored: the address Envoy uses comes from the API, not from the helper.
        slices = await discovery.list_namespaced_endpoint_slice(
            "default", label_selector="kubernetes.io/service-name=echo")
        assert len(slices.items) == 1
        stored = slices.items[0]
        address = stored.endpoints[0].addresses[0]
        assert address == backend.address
        assert address.startswith("198.18.") or address.startswith("198.19.")

        listen_port = free_port()
        envoy = clusterset.start_envoy(name, static_resources=_static_route_to(address, stored.ports[0].port,
                                                                                listen_port))
        answer = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{listen_port}/hello?x=1")
        assert answer["cluster"] == name
        assert answer["pod"] == backend.pod
        assert answer["path"] == "/hello?x=1"
        assert "x-envoy-expected-rq-timeout-ms" in {k.lower() for k in answer["headers"]}
        assert envoy.stats("cluster.echo.upstream_rq_200")["cluster.echo.upstream_rq_200"] == "1"
