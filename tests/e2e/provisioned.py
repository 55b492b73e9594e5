"""Provisioned Envoys on the test bed, for e2e tests that send traffic through them.

``mcgw run`` runs in-process with provisioning on; each Gateway's Envoys are pods that the member cluster's
pod runner runs as real Envoy processes (each in a network namespace of its own on the bridge), dialling
mcgw over the bridge; the cluster's load balancer gives the generated Service an address on the host and
forwards to the ready pods. No Envoy is started by a test.

- ``run_config``: a config for ``mcgw run`` whose provisioned Envoys reach its xDS server.
- ``Mcgw``: ``mcgw run`` in-process, stoppable (gracefully) and startable again with the same config; on
  exit it deletes what it provisioned for other tests' Gateways (the clusters are shared by the session).
- ``Member``: one cluster's API as these tests use it: namespaces of their own, Gateways, conditions, and
  the objects mcgw generated for a Gateway.
- ``PodEnvoy``: a provisioned Envoy's admin interface, which listens on its pod's loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes.aio import client, config

from mcgw.app.config import load_run_config
from mcgw.app.run import Controller
from mcgw.provisioning import gateway_label_value
from mcgw.provisioning.render import ADMIN_PORT
from mcgw.support.netutil import free_port
from mcgw.support.timestamps import rfc3339
from tests.e2e.testbed import ClusterSet, EchoBackend
from tests.e2e.testbed.network import netns_exists, pod_netns_name

GW = "gateway.networking.k8s.io"
MANAGED = "app.kubernetes.io/managed-by=mcgw"
GATEWAY_NAME = "gateway.networking.k8s.io/gateway-name"
GENERATED = ("ServiceAccount", "Secret", "ConfigMap", "Deployment", "Service")
T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T | None]], within: float, what: str,
                interval: float = 0.2) -> T:
    """Poll ``check`` until it gives something truthy; the limit only stops a broken run."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {within:.0f}s waiting for {what}"
        await asyncio.sleep(interval)


def get_json(url: str, timeout: float = 3) -> dict[str, Any] | None:
    """The echo backend's JSON answer, or None (no answer, not 200, not JSON)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return dict(json.loads(response.read()))
    except (OSError, ValueError):
        return None


def refused(url: str, timeout: float = 2) -> bool:
    """Whether nothing answers at ``url``'s address and port (refused, reset, or no answer at all)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return False
    except urllib.error.HTTPError:
        return False  # something answered
    except OSError:
        return True


def run_config(directory: Path, clusterset: ClusterSet, clusters: Sequence[str], *,
               failover_order: dict[str, list[str]] | None = None, **overrides: Any) -> Path:
    """``mcgw run`` over ``clusters`` with provisioning on: its xDS server listens on the host's bridge address,
    where the provisioned Envoys (in the clusters' network namespaces) dial it, over mTLS with certificates
    from mcgw's CA (the default; ``xds`` adds settings)."""
    path = directory / f"mcgw-{secrets.token_hex(3)}.yaml"
    order = failover_order or {}
    xds = overrides.pop("xds", {})
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": name, "kubeconfig": str(clusterset.clusters[name].kubeconfig), "context": name,
                      **({"failoverOrder": order[name]} if name in order else {})} for name in clusters],
        "xds": {"listen": f"{clusterset.network.host_address}:{free_port()}", **xds},
        "admin": {"listen": "127.0.0.1:0"},
        "leaderElection": {"leaseName": f"mcgw-dataplane-{secrets.token_hex(3)}", "leaseDuration": 4,
                           "renewDeadline": 3, "retryPeriod": 0.5},
        **overrides,
    }))
    return path


class Mcgw:
    """``mcgw run`` in-process over a config; ``mine`` tells the namespaces of the test's own Gateways."""

    def __init__(self, path: Path, mine: Callable[[str], bool]) -> None:
        self.path = path
        self.mine = mine
        self.controller: Controller | None = None
        self._since = ""

    async def start(self) -> Controller:
        assert self.controller is None, "mcgw is running already"
        self._since = self._since or rfc3339()
        controller = Controller(load_run_config(self.path))
        await controller.__aenter__()
        self.controller = controller
        try:
            await asyncio.wait_for(controller.reconciler.ready.wait(), 60)
        except BaseException:
            await self.stop()
            raise
        return controller

    async def stop(self) -> None:
        """The graceful stop of ``mcgw run`` (its Leases released, its xDS streams closed)."""
        controller, self.controller = self.controller, None
        if controller is not None:
            await controller.__aexit__(None, None, None)

    def status(self) -> dict[str, Any]:
        assert self.controller is not None
        return self.controller.status()

    def nodes(self) -> set[tuple[str, str]]:
        """(cluster, node id) of every Envoy connected to the running controller."""
        return {(n["cluster"], n["nodeId"]) for n in self.status()["nodes"]} if self.controller else set()

    async def __aenter__(self) -> Mcgw:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        if self._since:
            await remove_provisioned_elsewhere(self.path, self._since, self.mine)


async def remove_provisioned_elsewhere(path: Path, since: str, mine: Callable[[str], bool]) -> None:
    """Delete what a controller over ``path`` created since ``since`` for Gateways outside ``mine`` (other tests'
    Gateways in the shared clusters); their pods go with their Deployments."""
    for cluster in load_run_config(path).clusters:
        api = await config.new_client_from_config(config_file=str(cluster.kubeconfig), context=cluster.context,
                                                  persist_config=False)
        try:
            core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
            scalers, budgets = client.AutoscalingV2Api(api), client.PolicyV1Api(api)
            kinds: list[tuple[Any, Any]] = [
                (core.list_service_account_for_all_namespaces, core.delete_namespaced_service_account),
                (core.list_secret_for_all_namespaces, core.delete_namespaced_secret),
                (core.list_config_map_for_all_namespaces, core.delete_namespaced_config_map),
                (core.list_service_for_all_namespaces, core.delete_namespaced_service),
                (apps.list_deployment_for_all_namespaces, apps.delete_namespaced_deployment),
                (scalers.list_horizontal_pod_autoscaler_for_all_namespaces,
                 scalers.delete_namespaced_horizontal_pod_autoscaler),
                (budgets.list_pod_disruption_budget_for_all_namespaces,
                 budgets.delete_namespaced_pod_disruption_budget)]
            for listing, delete in kinds:
                for item in (await listing(label_selector=MANAGED)).items:
                    meta = item.metadata
                    if mine(meta.namespace) or rfc3339(meta.creation_timestamp.timestamp()) < since:
                        continue
                    with contextlib.suppress(client.ApiException):
                        await delete(meta.name, meta.namespace)
        finally:
            await api.close()


@dataclass(frozen=True)
class Identity:
    """What tells one object from its replacement, and whether it was written: UID, resourceVersion, generation."""

    uid: str
    resource_version: str
    generation: int | None

    @classmethod
    def of(cls, obj: Any) -> Identity:
        meta = obj.metadata
        return cls(meta.uid, meta.resource_version, meta.generation)


@dataclass(frozen=True)
class PodState:
    uid: str
    restarts: tuple[int, ...]
    ready: bool

    @classmethod
    def of(cls, pod: Any) -> PodState:
        statuses = pod.status.container_statuses or []
        return cls(pod.metadata.uid, tuple(s.restart_count for s in statuses),
                   bool(statuses) and all(s.ready for s in statuses))


class Member:
    """One member cluster's API; what a test creates lives in namespaces of its own, deleted by ``close``."""

    def __init__(self, name: str, api: client.ApiClient) -> None:
        self.name = name
        self.api = api
        self.core, self.apps, self.custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.namespaces: list[str] = []
        self.classes: list[str] = []

    @classmethod
    async def connect(cls, clusterset: ClusterSet, name: str) -> Member:
        api = await config.new_client_from_config(config_file=str(clusterset.clusters[name].kubeconfig),
                                                  context=name, persist_config=False)
        return cls(name, api)

    async def close(self) -> None:
        try:
            for namespace in self.namespaces:  # with whatever pods the test bed runs in them
                with contextlib.suppress(client.ApiException):
                    await self.core.delete_namespace(namespace)
            for name in self.classes:
                with contextlib.suppress(client.ApiException):
                    await self.custom.delete_cluster_custom_object(GW, "v1", "gatewayclasses", name)
        finally:
            await self.api.close()

    async def namespace(self, name: str) -> str:
        await self.core.create_namespace({"metadata": {"name": name}})
        self.namespaces.append(name)
        return name

    async def gateway_class(self, name: str) -> None:
        try:
            await self.custom.create_cluster_custom_object(GW, "v1", "gatewayclasses", {
                "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": name},
                "spec": {"controllerName": "mcgw.io/gateway-controller"}})
            self.classes.append(name)
        except client.ApiException as error:
            if error.status != 409:
                raise

    async def envoy_proxy(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        await self.custom.create_namespaced_custom_object("mcgw.io", "v1alpha1", namespace, "envoyproxies", {
            "apiVersion": "mcgw.io/v1alpha1", "kind": "EnvoyProxy", "metadata": {"name": name}, "spec": spec})

    async def gateway(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.custom.create_namespaced_custom_object(
            GW, "v1", namespace, "gateways", {"apiVersion": f"{GW}/v1", "kind": "Gateway",
                                              "metadata": {"name": name}, "spec": spec})
        return result

    async def patch_gateway(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self.custom.patch_namespaced_custom_object(GW, "v1", namespace, "gateways", name, patch,
                                                         _content_type="application/merge-patch+json")

    async def delete_gateway(self, namespace: str, name: str) -> None:
        await self.custom.delete_namespaced_custom_object(GW, "v1", namespace, "gateways", name)

    async def service(self, namespace: str, name: str, backends: Sequence[EchoBackend]) -> None:
        """A selectorless Service with the EndpointSlice kube would write for ``backends`` (Ready)."""
        port = backends[0].port
        await self.core.create_namespaced_service(namespace, {
            "metadata": {"name": name}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}})
        await self.discovery.create_namespaced_endpoint_slice(namespace, {
            "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [b.address], "conditions": {"ready": True}} for b in backends]})

    async def route(self, namespace: str, name: str, gateway: str, service: str, path: str | None = None) -> None:
        rule: dict[str, Any] = {"backendRefs": [{"name": service, "port": 80}]}
        if path:
            rule["matches"] = [{"path": {"type": "PathPrefix", "value": path}}]
        await self.custom.create_namespaced_custom_object(GW, "v1", namespace, "httproutes", {
            "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": name},
            "spec": {"parentRefs": [{"name": gateway}], "rules": [rule]}})

    async def status(self, namespace: str, gateway: str) -> dict[str, Any]:
        stored = await self.custom.get_namespaced_custom_object_status(GW, "v1", namespace, "gateways", gateway)
        return dict(stored.get("status") or {})

    async def condition(self, namespace: str, gateway: str, kind: str) -> tuple[str, str, str] | None:
        """(status, reason, message) of mcgw's condition (the CRD's defaults carry no observedGeneration)."""
        for condition in (await self.status(namespace, gateway)).get("conditions", []):
            if condition["type"] == kind and condition.get("observedGeneration", 0) > 0:
                return condition["status"], condition["reason"], condition["message"]
        return None

    async def programmed(self, namespace: str, gateway: str) -> str | None:
        """The Gateway's address once it is Programmed True (None before)."""
        found = await self.condition(namespace, gateway, "Programmed")
        addresses = [a["value"] for a in (await self.status(namespace, gateway)).get("addresses", [])]
        return addresses[0] if found is not None and found[0] == "True" and addresses else None

    def _selector(self, gateway: str) -> str:
        return f"{MANAGED},{GATEWAY_NAME}={gateway_label_value(gateway)}"

    async def generated(self, namespace: str, gateway: str) -> dict[str, list[Any]]:
        """The objects mcgw generated for ``gateway``, by kind; ReplicaSet and Pod are the Deployment's."""
        selector = self._selector(gateway)
        return {
            "ServiceAccount": (await self.core.list_namespaced_service_account(
                namespace, label_selector=selector)).items,
            "Secret": (await self.core.list_namespaced_secret(namespace, label_selector=selector)).items,
            "ConfigMap": (await self.core.list_namespaced_config_map(namespace, label_selector=selector)).items,
            "Deployment": (await self.apps.list_namespaced_deployment(namespace, label_selector=selector)).items,
            "Service": (await self.core.list_namespaced_service(namespace, label_selector=selector)).items,
            "ReplicaSet": (await self.apps.list_namespaced_replica_set(namespace, label_selector=selector)).items,
            "Pod": await self.pods(namespace, gateway),
        }

    async def pods(self, namespace: str, gateway: str) -> list[Any]:
        items = (await self.core.list_namespaced_pod(namespace, label_selector=self._selector(gateway))).items
        return sorted(items, key=lambda p: p.metadata.name)

    async def identities(self, namespace: str, gateway: str) -> dict[str, Identity | PodState]:
        """Every generated object's identity (by kind/name) and every pod's state, for before/after comparisons."""
        result: dict[str, Identity | PodState] = {}
        for kind, items in (await self.generated(namespace, gateway)).items():
            for item in items:
                key = f"{kind}/{item.metadata.name}"
                result[key] = PodState.of(item) if kind == "Pod" else Identity.of(item)
        return result


@dataclass(frozen=True)
class PodEnvoy:
    """A provisioned Envoy's admin interface: on its pod's loopback, reached from inside the pod's namespace."""

    pod: str
    netns: str

    @classmethod
    def of(cls, clusterset: ClusterSet, cluster: str, pod: Any) -> PodEnvoy:
        """The Envoy of ``pod`` (a pod of the kubernetes client, or its JSON) that ``cluster``'s pod runner runs."""
        meta = pod["metadata"] if isinstance(pod, dict) else pod.metadata.to_dict()
        runner = clusterset.podrunners[cluster].popen.pid
        netns = pod_netns_name(runner, cluster, meta["namespace"], meta["name"], meta["uid"])
        assert netns_exists(netns), f"pod {meta['namespace']}/{meta['name']} has no network namespace {netns}"
        return cls(meta["name"], netns)

    def admin(self, path: str) -> bytes:
        argv = ["ip", "netns", "exec", self.netns, "curl", "-sS", "--fail", "--max-time", "5",
                f"http://127.0.0.1:{ADMIN_PORT}{path}"]
        result = subprocess.run(argv, capture_output=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"admin {path} of Envoy pod {self.pod}: {result.stderr.decode().strip()}")
        return result.stdout

    def stats(self) -> dict[str, str]:
        values = {}
        for line in self.admin("/stats").decode().splitlines():
            name, _, value = line.partition(": ")
            values[name] = value
        return values


CONFIG_LOSS = ("listener_manager.listener_removed", "cluster_manager.cluster_removed",
               "listener_manager.lds.update_rejected", "cluster_manager.cds.update_rejected")


def config_losses(envoy: PodEnvoy) -> dict[str, int]:
    """How often the Envoy removed a listener or cluster, or refused an update (CONFIG_LOSS)."""
    stats = envoy.stats()
    return {name: int(stats.get(name, "0")) for name in CONFIG_LOSS}
