"""mcgw itself under test: ``mcgw run`` in-process over the three member clusters, the MCS controller
importing the exported service everywhere, and east's gateway routing to the ServiceImport.

Each run applies its policy row as a FailoverPolicy on the ServiceImport (none for the defaults) and
starts a fresh Envoy for east's gateway, so no health or ejection state carries over between runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
from collections.abc import AsyncIterator
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

from .scenario import PolicyMode
from .stacks import SERVICE_IMPORT_REF, backend_cluster, stop_envoy, wait_serving

NAMESPACE, INFRA, GATEWAY, SERVICE = "bench-failover", "bench-infra", "gw", "cart"
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


def endpoint_slice(cluster: str, backends: list[EchoBackend], ready: bool) -> dict[str, Any]:
    conditions = {"ready": ready, "serving": ready, "terminating": False}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{SERVICE}-{cluster}", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": SERVICE}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [b.address], "conditions": conditions} for b in backends]}


def export_service(cluster: MemberCluster, backends: list[EchoBackend]) -> None:
    """A Service with its EndpointSlice (what kube's controllers would write) and a ServiceExport."""
    _create(cluster, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    _create(cluster, f"/api/v1/namespaces/{NAMESPACE}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": NAMESPACE},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
    _create(cluster, f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices",
            endpoint_slice(cluster.name, backends, True))
    _create(cluster, f"/apis/{MCS}/v1beta1/namespaces/{NAMESPACE}/serviceexports", {
        "apiVersion": f"{MCS}/v1beta1", "kind": "ServiceExport", "metadata": {"name": SERVICE, "namespace": NAMESPACE}})


def route_to_import(cluster: MemberCluster, port: int) -> None:
    """East's Gateway on loopback and an HTTPRoute whose backend is the ServiceImport."""
    _create(cluster, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INFRA}})
    with contextlib.suppress(urllib.error.HTTPError):  # shared by every user of the test bed
        cluster.request("POST", f"/apis/{GW}/v1/gatewayclasses", {
            "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
            "spec": {"controllerName": "mcgw.io/gateway-controller"}})
    _create(cluster, f"/apis/{GW}/v1/namespaces/{INFRA}/gateways", {
        "apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": GATEWAY, "namespace": INFRA},
        "spec": {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                 "listeners": [{"name": "http", "port": port, "protocol": "HTTP",
                                "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    _create(cluster, f"/apis/{GW}/v1/namespaces/{NAMESPACE}/httproutes", {
        "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": SERVICE, "namespace": NAMESPACE},
        "spec": {"parentRefs": [{"name": GATEWAY, "namespace": INFRA}],
                 "rules": [{"backendRefs": [{"group": MCS, "kind": "ServiceImport", "name": SERVICE, "port": 80}]}]}})


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


def applied(dump: dict[str, Any], expect: dict[str, bool]) -> bool:
    """Whether Envoy's configuration has exactly the mechanisms the policy row asks for."""
    cluster = backend_cluster(dump)
    if cluster is None:
        return False
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

    def __init__(self, clusterset: ClusterSet, backends: dict[str, list[EchoBackend]], local: str,
                 order: list[str], controller: Controller, local_apiserver: ApiServer, listen_port: int,
                 xds_port: int) -> None:
        self.clusterset = clusterset
        self.backends = backends
        self.local = local
        self.order = order
        self.controller = controller
        self.local_apiserver = local_apiserver
        self.listen_port = listen_port
        self.xds_port = xds_port
        self.node = NodeIdentity(local, INFRA, GATEWAY)
        self.envoy: EnvoyProcess | None = None
        self.cluster_name = ""
        self.last_dump: dict[str, Any] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, clusterset: ClusterSet, backends: dict[str, list[EchoBackend]], local: str,
                      order: list[str]) -> AsyncIterator[McgwStack]:
        listen_port, xds_port = free_port(), free_port()
        # The controller reads the local cluster through an API server of its own, which the
        # "local API server lost" fault stops; the benchmark's kubelet writes through the main one.
        local_apiserver = await asyncio.to_thread(clusterset.clusters[local].add_apiserver, "bench-failover")
        for name in order:
            await asyncio.to_thread(export_service, clusterset.clusters[name], backends[name])
        await asyncio.to_thread(route_to_import, clusterset.clusters[local], listen_port)
        kubeconfigs = {name: local_apiserver.kubeconfig if name == local else clusterset.clusters[name].kubeconfig
                       for name in order}
        config_path = write_run_config(clusterset.workdir, kubeconfigs, order, xds_port)
        async with Controller(load_run_config(config_path)) as controller:
            await asyncio.wait_for(controller.reconciler.ready.wait(), 120)
            yield cls(clusterset, backends, local, order, controller, local_apiserver, listen_port, xds_port)

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
                "spec": {"targetRefs": [SERVICE_IMPORT_REF], **policy.spec}})

    def _write_slice(self, cluster_name: str, ready: bool) -> None:
        cluster = self.clusterset.clusters[cluster_name]
        path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/{SERVICE}-{cluster_name}"
        body = endpoint_slice(cluster_name, self.backends[cluster_name], ready)
        current = cluster.request("GET", path)
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        cluster.request("PUT", path, body)

    async def prepare(self, policy: PolicyMode) -> str:
        for name in self.order:
            await asyncio.to_thread(self._write_slice, name, True)
        await asyncio.to_thread(self._apply_policy, policy)
        self.envoy = await asyncio.to_thread(self.clusterset.start_envoy, self.local, self.node,
                                             XdsTarget("127.0.0.1", self.xds_port))
        expect = expected_mechanisms(policy)
        deadline = time.monotonic() + 60
        while True:
            self.last_dump = await asyncio.to_thread(self.envoy.config_dump)
            if applied(self.last_dump, expect):
                break
            if time.monotonic() > deadline:
                cluster = backend_cluster(self.last_dump)
                raise TimeoutError(f"Envoy never got the configuration of policy {policy.key!r} (expected "
                                   f"{expect}); its backend cluster: {json.dumps(cluster)[:2000]}")
            await asyncio.sleep(0.2)
        self.cluster_name = str((backend_cluster(self.last_dump) or {}).get("name", ""))
        url = f"http://127.0.0.1:{self.listen_port}/cart"
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
