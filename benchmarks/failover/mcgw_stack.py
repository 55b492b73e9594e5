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
from mcgw.semantics.policy.failover import priority_levels
from mcgw.support.netutil import free_port
from mcgw.translate.clusters import overprovisioning_factor
from tests.e2e.testbed.cluster import ApiServer, MemberCluster
from tests.e2e.testbed.clusterset import ClusterSet, EchoBackend
from tests.e2e.xds_credentials import host_envoy_tls

from .scenario import PolicyMode
from .stacks import (
    SERVICE_IMPORT_REF,
    backend_cluster,
    cluster_properties,
    load_assignment,
    settings_for,
    stop_envoy,
    url_for,
    wait_serving,
)

NAMESPACE, INFRA, GATEWAY, SERVICE = "bench-failover", "bench-infra", "gw", "cart"
GRPC_GATEWAY, GRPC_SERVICE = "gw-grpc", "rpc"
TCP_GATEWAY, TCP_SERVICE = "gw-tcp", "db"
ROUTE_KINDS = {"http": ("HTTPRoute", "httproutes", "HTTP"), "grpc": ("GRPCRoute", "grpcroutes", "HTTP"),
               "tcp": ("TCPRoute", "tcproutes", "TCP")}
GW = "gateway.networking.k8s.io"
MCS = "multicluster.x-k8s.io"
POLICY_VERSION = "v1alpha2"  # the version mcgw watches; the rows' v1alpha1 fields read the same in it


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


def endpoint_slice(cluster: str, backends: list[EchoBackend], ready: bool, service: str = SERVICE,
                   not_ready: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The slice kube's controllers would write; an endpoint whose address is in ``not_ready`` is not ready (its pod's
    readiness probe failed) whatever ``ready`` says for the others."""
    def conditions(backend: EchoBackend) -> dict[str, bool]:
        up = ready and backend.address not in not_ready
        return {"ready": up, "serving": up, "terminating": False}

    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-{cluster}", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [b.address], "conditions": conditions(b)} for b in backends]}


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
        self.in_slice: dict[tuple[str, str], list[EchoBackend]] = {}  # (service, cluster): see use_backends
        self.not_ready: dict[str, frozenset[str]] = {}  # per cluster, the addresses the kubelet reported not ready
        self._slice_lock = asyncio.Lock()

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
        return f"/apis/mcgw.io/{POLICY_VERSION}/namespaces/{NAMESPACE}/failoverpolicies"

    def _apply_policy(self, policy: PolicyMode) -> None:
        cluster = self.clusterset.clusters[self.local]
        with contextlib.suppress(urllib.error.HTTPError):
            cluster.request("DELETE", f"{self._policy_path()}/bench")
        if policy.spec is not None:
            cluster.request("POST", self._policy_path(), {
                "apiVersion": f"mcgw.io/{POLICY_VERSION}", "kind": "FailoverPolicy",
                "metadata": {"name": "bench", "namespace": NAMESPACE},
                "spec": {"targetRefs": [{**SERVICE_IMPORT_REF, "name": self.served.service}], **policy.spec}})

    def members(self, cluster_name: str) -> list[EchoBackend]:
        """The current service's endpoints in ``cluster_name``'s EndpointSlice."""
        return self.in_slice.get((self.served.service, cluster_name), self.served.backends[cluster_name])

    def use_backends(self, cluster_name: str, backends: list[EchoBackend] | None, protocol: str = "http") -> None:
        """From the next ``prepare`` on, only ``backends`` of ``cluster_name`` are endpoints of ``protocol``'s
        service (None: every backend started for it); the others keep running, outside the slice."""
        key = (self.services[protocol].service, cluster_name)
        if backends is None:
            self.in_slice.pop(key, None)
        else:
            self.in_slice[key] = list(backends)

    def _write_slice(self, cluster_name: str, ready: bool) -> None:
        cluster = self.clusterset.clusters[cluster_name]
        service = self.served.service
        path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/{service}-{cluster_name}"
        body = endpoint_slice(cluster_name, self.members(cluster_name), ready, service,
                              self.not_ready.get(cluster_name, frozenset()))
        current = cluster.request("GET", path)
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        cluster.request("PUT", path, body)

    def _endpoints_seen(self, policy: PolicyMode) -> tuple[dict[str, Any], dict[str, Any]]:
        """What Envoy holds for the backend cluster (each cluster's priority, the overprovisioning factor), and what
        the policy makes of it by mcgw's own level plan (an excluded cluster at no priority)."""
        dump = json.loads(self.envoy.admin("/config_dump?include_eds")) if self.envoy is not None else {}
        assignment = load_assignment(dump, str((backend_cluster(self.last_dump) or {}).get("name", ""))) or {}
        settings = settings_for(policy, self.local, self.order)
        want = {name: priority for priority, level in enumerate(
            priority_levels(self.local, self.order, cluster_properties(self.local, self.order), settings=settings))
            for name in level}
        seen = {str(e.get("locality", {}).get("sub_zone", "")): int(e.get("priority", 0))
                for e in assignment.get("endpoints", []) if e.get("lb_endpoints")}
        factor = assignment.get("policy", {}).get("overprovisioning_factor", 140) if assignment else None
        return ({"priorities": seen, "overprovisioning_factor": factor},
                {"priorities": want, "overprovisioning_factor": overprovisioning_factor(settings)})

    def _eds_applied(self, policy: PolicyMode) -> bool:
        seen, want = self._endpoints_seen(policy)
        return seen == want

    async def _policy_observed(self, within: float = 30.0) -> None:
        """Wait until mcgw has written the policy's Accepted condition for its current generation: it was translated
        and published, so a row's fresh Envoy starts with the policy's endpoints, never the previous row's."""
        cluster = self.clusterset.clusters[self.local]
        deadline = time.monotonic() + within
        while True:
            current = await asyncio.to_thread(cluster.request, "GET", f"{self._policy_path()}/bench")
            generation = current["metadata"].get("generation")
            if any(c.get("type") == "Accepted" and c.get("observedGeneration") == generation
                   for c in (current.get("status") or {}).get("conditions", [])):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"mcgw never reported the FailoverPolicy's generation {generation}: "
                                   f"{json.dumps(current.get('status'))}")
            await asyncio.sleep(0.1)

    async def apply_policy(self, policy: PolicyMode) -> None:
        """Apply ``policy`` to the running Envoy's ServiceImport (no fresh Envoy), and wait until mcgw reports it."""
        await asyncio.to_thread(self._apply_policy, policy)
        if policy.spec is not None:
            await self._policy_observed()

    def _policy_status(self) -> Any:
        with contextlib.suppress(urllib.error.HTTPError):
            return self.clusterset.clusters[self.local].request("GET", f"{self._policy_path()}/bench").get("status")
        return None

    async def prepare(self, policy: PolicyMode) -> str:
        self.served = self.services[policy.protocol]
        self.not_ready = {}
        for name in self.order:
            await asyncio.to_thread(self._write_slice, name, True)
        await self.apply_policy(policy)
        node = NodeIdentity(self.local, INFRA, self.served.gateway)
        # mcgw's xDS takes mTLS clients only: the credentials provisioning would give this gateway's Envoy.
        tls = host_envoy_tls(self.controller, node, self.clusterset.workdir)
        self.envoy = await asyncio.to_thread(self.clusterset.start_envoy, self.local, node,
                                             XdsTarget("127.0.0.1", self.xds_port, tls=tls))
        expect = expected_mechanisms(policy)
        deadline = time.monotonic() + 60
        while True:
            self.last_dump = await asyncio.to_thread(self.envoy.config_dump)
            if applied(self.last_dump, expect, policy.protocol) and await asyncio.to_thread(self._eds_applied, policy):
                break
            if time.monotonic() > deadline:
                cluster = backend_cluster(self.last_dump)
                seen, want = await asyncio.to_thread(self._endpoints_seen, policy)
                status = await asyncio.to_thread(self._policy_status) if policy.spec is not None else None
                raise TimeoutError(f"Envoy never got the configuration of policy {policy.key!r} (expected "
                                   f"{expect}, endpoints {want}; endpoints seen {seen}; the policy's status "
                                   f"{json.dumps(status)}); its backend cluster: {json.dumps(cluster)[:2000]}")
            await asyncio.sleep(0.2)
        self.cluster_name = str((backend_cluster(self.last_dump) or {}).get("name", ""))
        url = url_for(self.served.protocol, self.served.port)
        await wait_serving(url, {self.local})
        return url

    async def set_ready(self, cluster: str, ready: bool) -> None:
        async with self._slice_lock:
            self.not_ready.pop(cluster, None)
            await asyncio.to_thread(self._write_slice, cluster, ready)

    async def set_backends_ready(self, cluster: str, backends: list[EchoBackend], ready: bool) -> None:
        """The kubelet's report for some pods of ``cluster``: their endpoints (not) ready, the others unchanged."""
        async with self._slice_lock:
            addresses = {b.address for b in backends}
            current = self.not_ready.get(cluster, frozenset())
            self.not_ready[cluster] = current - addresses if ready else current | addresses
            await asyncio.to_thread(self._write_slice, cluster, True)

    async def lose_apiserver(self) -> None:
        await asyncio.to_thread(self.local_apiserver.stop)

    async def restore_apiserver(self) -> None:
        await asyncio.to_thread(self.local_apiserver.start)

    async def finish(self) -> dict[str, Any]:
        envoy, self.envoy = self.envoy, None
        return await stop_envoy(envoy, self.cluster_name)
