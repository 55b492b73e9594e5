"""The objects a failover test bed writes into its member clusters, and the ``mcgw run`` configuration that
reads them: one place for what every route kind's e2e test sets up alike."""

from __future__ import annotations

import contextlib
import urllib.error
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .cluster import MemberCluster
from .clusterset import ClusterSet, EchoBackend

GW, MCS = "gateway.networking.k8s.io", "multicluster.x-k8s.io"


def create(cluster: MemberCluster, path: str, body: dict[str, Any]) -> None:
    cluster.request("POST", path, body)


def namespace(cluster: MemberCluster, name: str) -> None:
    """Create namespace ``name`` unless it exists (the clusters are shared by the tests of a run)."""
    with contextlib.suppress(urllib.error.HTTPError):
        create(cluster, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def service(cluster: MemberCluster, ns: str, name: str, backends: Sequence[EchoBackend], port_name: str = "http",
            export: bool = True, traffic_distribution: str | None = None, zones: Sequence[str] = ()) -> None:
    """Service ``name`` (port 80 → the backends' port) with the EndpointSlice kube would write for its pods,
    exported to the ClusterSet unless ``export`` is false. ``traffic_distribution``: the Service's
    ``spec.trafficDistribution``; ``zones``: each backend's EndpointSlice ``zone``, by position."""
    namespace(cluster, ns)
    target = backends[0].port if backends else 8080
    create(cluster, f"/api/v1/namespaces/{ns}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"ports": [{"name": port_name, "port": 80, "targetPort": target, "protocol": "TCP"}],
                 **({"trafficDistribution": traffic_distribution} if traffic_distribution else {})}})
    create(cluster, f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-{cluster.name}", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4", "ports": [{"name": port_name, "port": target, "protocol": "TCP"}],
        "endpoints": [{"addresses": [b.address], "conditions": {"ready": True},
                       **({"zone": zones[i]} if i < len(zones) else {})} for i, b in enumerate(backends)]})
    if export:
        create(cluster, f"/apis/{MCS}/v1beta1/namespaces/{ns}/serviceexports", {
            "apiVersion": f"{MCS}/v1beta1", "kind": "ServiceExport", "metadata": {"name": name}})


def gateway(cluster: MemberCluster, ns: str, listeners: list[dict[str, Any]], provisioned: bool = False,
            name: str = "public") -> None:
    """A Gateway of class ``mcgw`` (created too, unless there): on loopback for an Envoy the test runs (a static
    address), or at whatever address its load balancer gives it when mcgw provisions its Envoys."""
    namespace(cluster, ns)
    with contextlib.suppress(urllib.error.HTTPError):
        create(cluster, f"/apis/{GW}/v1/gatewayclasses", {
            "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
            "spec": {"controllerName": "mcgw.io/gateway-controller"}})
    create(cluster, f"/apis/{GW}/v1/namespaces/{ns}/gateways", {
        "apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": name},
        "spec": {"gatewayClassName": "mcgw",
                 "addresses": [] if provisioned else [{"type": "IPAddress", "value": "127.0.0.1"}],
                 "listeners": listeners}})


def http_gateway_to_import(cluster: MemberCluster, port: int, route_ns: str, gateway_ns: str, name: str = "cart",
                           path: str = "/cart", service_port: int = 80) -> None:
    """Gateway ``public`` in ``gateway_ns`` with one HTTP listener on ``port`` (routes from every namespace), and
    HTTPRoute ``name`` in ``route_ns`` sending ``path`` to the ServiceImport of that name: the shape of most
    failover tests."""
    gateway(cluster, gateway_ns, [{"name": "http", "port": port, "protocol": "HTTP",
                                   "allowedRoutes": {"namespaces": {"from": "All"}}}])
    create(cluster, f"/apis/{GW}/v1/namespaces/{route_ns}/httproutes", {
        "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": "public", "namespace": gateway_ns}], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": path}}],
             "backendRefs": [{"group": MCS, "kind": "ServiceImport", "name": name, "port": service_port}]}]}})


def run_config(path: Path, clusterset: ClusterSet, order: Sequence[str], xds_port: int,
               labels: Mapping[str, Mapping[str, str]] | None = None, zones: Mapping[str, str] | None = None) -> Path:
    """``mcgw run`` over every cluster of ``order``, the first failing over to the others in that order; short
    Leases, and no provisioning (the test runs the first cluster's Envoy on the host). ``labels``: each cluster's,
    for a FailoverPolicy's selectors. ``zones``: each cluster's ``zone`` (the gateway's own, for PreferClose)."""
    first, *rest = order
    labels = labels or {}
    zones = zones or {}
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": name, "kubeconfig": str(clusterset.clusters[name].kubeconfig), "context": name,
                      **({"failoverOrder": rest} if name == first else {}),
                      **({"labels": dict(labels[name])} if name in labels else {}),
                      **({"zone": zones[name]} if name in zones else {})} for name in order],
        "xds": {"listen": f"127.0.0.1:{xds_port}"},
        "admin": {"listen": "127.0.0.1:0"},
        "leaderElection": {"leaseDuration": 4, "renewDeadline": 3, "retryPeriod": 0.5},
        "provisioning": {"enabled": False},
    }))
    return path


def delete(cluster: MemberCluster, *paths: str) -> None:
    """Delete each object that is still there."""
    for path in paths:
        with contextlib.suppress(urllib.error.HTTPError):
            cluster.request("DELETE", path)
