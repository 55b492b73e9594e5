"""mcgw itself under test: ``mcgw run`` in-process over the three member clusters, the MCS controller
importing the exported service everywhere, and east's gateway routing to the ServiceImport.

Each run applies its policy row as a FailoverPolicy on the ServiceImport (none for the defaults) and
starts a fresh Envoy for east's gateway, so no health or ejection state carries over between runs.

gRPC rows use a service of their own (``rpc``, gRPC echo backends) and a Gateway of their own (``gw-grpc``)
with a GRPCRoute to its ServiceImport, so each run's Envoy holds one backend cluster. TCP rows do the same
with ``db`` (echo backends) and ``gw-tcp``, a TCP listener with a TCPRoute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mcgw.app.config import load_run_config
from mcgw.app.run import Controller
from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget
from mcgw.dataplane.process import EnvoyProcess
from mcgw.support.netutil import free_port
from tests.e2e.testbed.cluster import ApiServer, MemberCluster
from tests.e2e.testbed.clusterset import ClusterSet, EchoBackend
from tests.e2e.xds_credentials import host_envoy_tls

from .scenario import PolicyMode
from .stacks import SERVICE_IMPORT_REF, backend_cluster, stop_envoy, url_for, wait_serving

NAMESPACE, INFRA, GATEWAY, SERVICE = "bench-failover", "bench-infra", "gw", "cart"
GRPC_GATEWAY, GRPC_SERVICE = "gw-grpc", "rpc"
TCP_GATEWAY, TCP_SERVICE = "gw-tcp", "db"
ROUTE_KINDS = {"http": ("HTTPRoute", "httproutes", "HTTP"), "grpc": ("GRPCRoute", "grpcroutes", "HTTP"),
               "tcp": ("TCPRoute", "tcproutes", "TCP")}
GW = "gateway.networking.k8s.io"
MCS = "multicluster.x-k8s.io"


def _create(cluster: MemberCluster, path: str, body: dict[str, Any]) -> None:
    """POST, or PUT over an object left by an earlier run (the test bed is fresh, but be idempotent)."""
    try:
        cluster.request("POST", path, body)
    except urllib.error.HTTPError as error:
        if error.code != 409:
            raise
        name = body["metadata"]["name"]
        current = cluster.request("GET", f"{path}/{name}")
        body = {**body, "metadata": {**body["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
        cluster.request("PUT", f"{path}/{name}", body)


@dataclass(frozen=True)
class Served:
    """What one protocol's rows load: a Service exported from every cluster, and east's Gateway routing to its
    ServiceImport on ``port``."""

    protocol: str
    service: str
    gateway: str
    port: int
    backends: dict[str, list[EchoBackend]]


def endpoint_slice(cluster: str, backends: list[EchoBackend], ready: bool, service: str = SERVICE) -> dict[str, Any]:
    conditions = {"ready": ready, "serving": ready, "terminating": False}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-{cluster}", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [b.address], "conditions": conditions} for b in backends]}


def export_service(cluster: MemberCluster, backends: list[EchoBackend], service: str = SERVICE) -> None:
    """A Service with its EndpointSlice (what kube's controllers would write) and a ServiceExport."""
    _create(cluster, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    _create(cluster, f"/api/v1/namespaces/{NAMESPACE}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": NAMESPACE},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
    _create(cluster, f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices",
            endpoint_slice(cluster.name, backends, True, service))
    _create(cluster, f"/apis/{MCS}/v1beta1/namespaces/{NAMESPACE}/serviceexports", {
        "apiVersion": f"{MCS}/v1beta1", "kind": "ServiceExport", "metadata": {"name": service, "namespace": NAMESPACE}})


def route_to_import(cluster: MemberCluster, port: int, served: Served | None = None) -> None:
    """East's Gateway on loopback and a route whose backend is the ServiceImport: an HTTPRoute, for a gRPC
    ``served`` a GRPCRoute (every method), for a TCP one a TCP listener and a TCPRoute."""
    served = served or Served("http", SERVICE, GATEWAY, port, {})
    _create(cluster, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INFRA}})
    with contextlib.suppress(urllib.error.HTTPError):  # shared by every user of the test bed
        cluster.request("POST", f"/apis/{GW}/v1/gatewayclasses", {
            "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
            "spec": {"controllerName": "mcgw.io/gateway-controller"}})
    _create(cluster, f"/apis/{GW}/v1/namespaces/{INFRA}/gateways", {
        "apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": served.gateway, "namespace": INFRA},
        "spec": {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                 "listeners": [{"name": served.protocol, "port": port, "protocol": ROUTE_KINDS[served.protocol][2],
                                "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    kind, plural, _ = ROUTE_KINDS[served.protocol]
    _create(cluster, f"/apis/{GW}/v1/namespaces/{NAMESPACE}/{plural}", {
        "apiVersion": f"{GW}/v1", "kind": kind, "metadata": {"name": served.service, "namespace": NAMESPACE},
        "spec": {"parentRefs": [{"name": served.gateway, "namespace": INFRA}],
                 "rules": [{"backendRefs": [{"group": MCS, "kind": "ServiceImport", "name": served.service,
                                             "port": 80}]}]}})


def write_run_config(directory: Path, kubeconfigs: dict[str, Path], order: list[str], xds_port: int) -> Path:
    local = order[0]
    path = directory / "mcgw.yaml"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": name, "kubeconfig": str(kubeconfig), "context": name,
                      **({"failoverOrder": order[1:]} if name == local else {})}
                     for name, kubeconfig in kubeconfigs.items()],
        "xds": {"listen": f"127.0.0.1:{xds_port}"},
        "admin": {"listen": "127.0.0.1:0"},
        "leaderElection": {"leaseDuration": 4, "renewDeadline": 3, "retryPeriod": 0.5},
    }))
    return path


def _routes(dump: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for config in dump.get("configs", []):
        for entry in config.get("dynamic_route_configs", []):
            for host in entry.get("route_config", {}).get("virtual_hosts", []):
                found += host.get("routes", [])
    return found


def _tcp_proxies(dump: dict[str, Any]) -> list[dict[str, Any]]:
    return [f.get("typed_config", {}) for c in dump.get("configs", []) for entry in c.get("dynamic_listeners", [])
            for chain in entry.get("active_state", {}).get("listener", {}).get("filter_chains", [])
            for f in chain.get("filters", []) if f.get("name") == "envoy.filters.network.tcp_proxy"]


def applied(dump: dict[str, Any], expect: dict[str, bool], protocol: str = "http") -> bool:
    """Whether Envoy's configuration has exactly the mechanisms the policy row asks for (a TCP listener's
    retry is its connect attempts)."""
    cluster = backend_cluster(dump)
    if cluster is None:
        return False
    if protocol == "tcp":
        proxies = _tcp_proxies(dump)
        seen = {"healthCheck": bool(cluster.get("health_checks")), "outlierDetection": "outlier_detection" in cluster,
                "retry": any(int(p.get("max_connect_attempts", 1)) > 1 for p in proxies)}
        return bool(proxies) and seen == expect
    routes = _routes(dump)
    retry = any("retry_policy" in r.get("route", {}) for r in routes) or any(
        "retry_policy" in host for c in dump.get("configs", []) for e in c.get("dynamic_route_configs", [])
        for host in e.get("route_config", {}).get("virtual_hosts", []))
    seen = {"healthCheck": bool(cluster.get("health_checks")), "outlierDetection": "outlier_detection" in cluster,
            "retry": retry}
    return seen == expect


def expected_mechanisms(policy: PolicyMode) -> dict[str, bool]:
    spec = policy.spec or {}
    return {key: spec.get(key, {}).get("enabled", True) is not False
            for key in ("healthCheck", "outlierDetection", "retry")}


class McgwStack:
    """The controller, its config and east's objects; a fresh Envoy and FailoverPolicy per run."""

    def __init__(self, clusterset: ClusterSet, served: dict[str, Served], local: str,
                 order: list[str], controller: Controller, local_apiserver: ApiServer, xds_port: int) -> None:
        self.clusterset = clusterset
        self.services = served
        self.served = served["http"]  # the current run's
        self.local = local
        self.order = order
        self.controller = controller
        self.local_apiserver = local_apiserver
        self.xds_port = xds_port
        self.envoy: EnvoyProcess | None = None
        self.cluster_name = ""
        self.last_dump: dict[str, Any] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, clusterset: ClusterSet, backends: dict[str, list[EchoBackend]], local: str,
                      order: list[str], grpc_backends: dict[str, list[EchoBackend]] | None = None,
                      tcp_backends: dict[str, list[EchoBackend]] | None = None) -> AsyncIterator[McgwStack]:
        """``grpc_backends``, ``tcp_backends``: serve the gRPC rows, the TCP rows too."""
        xds_port = free_port()
        served = {"http": Served("http", SERVICE, GATEWAY, free_port(), backends)}
        if grpc_backends is not None:
            served["grpc"] = Served("grpc", GRPC_SERVICE, GRPC_GATEWAY, free_port(), grpc_backends)
        if tcp_backends is not None:
            served["tcp"] = Served("tcp", TCP_SERVICE, TCP_GATEWAY, free_port(), tcp_backends)
        # The controller reads the local cluster through an API server of its own, which the
        # "local API server lost" fault stops; the benchmark's kubelet writes through the main one.
        local_apiserver = await asyncio.to_thread(clusterset.clusters[local].add_apiserver, "bench-failover")
        for each in served.values():
            for name in order:
                await asyncio.to_thread(export_service, clusterset.clusters[name], each.backends[name], each.service)
            await asyncio.to_thread(route_to_import, clusterset.clusters[local], each.port, each)
        kubeconfigs = {name: local_apiserver.kubeconfig if name == local else clusterset.clusters[name].kubeconfig
                       for name in order}
        config_path = write_run_config(clusterset.workdir, kubeconfigs, order, xds_port)
        async with Controller(load_run_config(config_path)) as controller:
            await asyncio.wait_for(controller.reconciler.ready.wait(), 120)
            yield cls(clusterset, served, local, order, controller, local_apiserver, xds_port)

    def _policy_path(self) -> str:
        return f"/apis/mcgw.io/v1alpha1/namespaces/{NAMESPACE}/failoverpolicies"

    def _apply_policy(self, policy: PolicyMode) -> None:
        cluster = self.clusterset.clusters[self.local]
        with contextlib.suppress(urllib.error.HTTPError):
            cluster.request("DELETE", f"{self._policy_path()}/bench")
        if policy.spec is not None:
            cluster.request("POST", self._policy_path(), {
                "apiVersion": "mcgw.io/v1alpha1", "kind": "FailoverPolicy",
                "metadata": {"name": "bench", "namespace": NAMESPACE},
                "spec": {"targetRefs": [{**SERVICE_IMPORT_REF, "name": self.served.service}], **policy.spec}})

    def _write_slice(self, cluster_name: str, ready: bool) -> None:
        cluster = self.clusterset.clusters[cluster_name]
        service = self.served.service
        path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/{service}-{cluster_name}"
        body = endpoint_slice(cluster_name, self.served.backends[cluster_name], ready, service)
        current = cluster.request("GET", path)
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        cluster.request("PUT", path, body)

    async def prepare(self, policy: PolicyMode) -> str:
        self.served = self.services[policy.protocol]
        for name in self.order:
            await asyncio.to_thread(self._write_slice, name, True)
        await asyncio.to_thread(self._apply_policy, policy)
        node = NodeIdentity(self.local, INFRA, self.served.gateway)
        # mcgw's xDS takes mTLS clients only: the credentials provisioning would give this gateway's Envoy.
        tls = host_envoy_tls(self.controller, node, self.clusterset.workdir)
        self.envoy = await asyncio.to_thread(self.clusterset.start_envoy, self.local, node,
                                             XdsTarget("127.0.0.1", self.xds_port, tls=tls))
        expect = expected_mechanisms(policy)
        deadline = time.monotonic() + 60
        while True:
            self.last_dump = await asyncio.to_thread(self.envoy.config_dump)
            if applied(self.last_dump, expect, policy.protocol):
                break
            if time.monotonic() > deadline:
                cluster = backend_cluster(self.last_dump)
                raise TimeoutError(f"Envoy never got the configuration of policy {policy.key!r} (expected "
                                   f"{expect}); its backend cluster: {json.dumps(cluster)[:2000]}")
            await asyncio.sleep(0.2)
        self.cluster_name = str((backend_cluster(self.last_dump) or {}).get("name", ""))
        url = url_for(self.served.protocol, self.served.port)
        await wait_serving(url, {self.local})
        return url

    async def set_ready(self, cluster: str, ready: bool) -> None:
        await asyncio.to_thread(self._write_slice, cluster, ready)

    async def lose_apiserver(self) -> None:
        await asyncio.to_thread(self.local_apiserver.stop)

    async def restore_apiserver(self) -> None:
        await asyncio.to_thread(self.local_apiserver.start)

    async def finish(self) -> dict[str, Any]:
        envoy, self.envoy = self.envoy, None
        return await stop_envoy(envoy, self.cluster_name)
