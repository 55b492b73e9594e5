"""``mcgw run`` provisions each Gateway's Envoys in its member cluster, against real API servers.

- Applying a Gateway creates its ServiceAccount, ConfigMap, Deployment and Service, owned by the Gateway,
  with our labels and the Gateway's infrastructure labels and annotations, shaped by its EnvoyProxy.
- Changing its listeners changes the Service's ports and nothing of the Deployment (no rollout).
- Deleting it removes every generated object; objects without our label stay.
- A bad parametersRef is InvalidParameters, and nothing is provisioned for it.
- A replica that does not hold a cluster's Lease writes nothing there.
- mcgw works with exactly the permissions in deploy/rbac/mcgw.yaml.

- With the test bed's pod runner, the provisioned Envoy pods run: the Gateway is Programmed and serves
  traffic, and a new listener is served without a restart.

Elsewhere the load balancer and pods may or may not be there: Programmed must then say what is missing.
The clusters are shared by the whole session: every test has namespaces of its own, and what this
module's controllers provision for other tests' Gateways is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes.aio import client, config

from mcgw.app.config import load_run_config
from mcgw.app.run import Controller
from mcgw.support.netutil import free_port
from mcgw.support.timestamps import rfc3339
from tests.e2e.testbed import ClusterSet

GW = "gateway.networking.k8s.io"
CLASS = "mcgw-provisioning"
MANAGED = "app.kubernetes.io/managed-by=mcgw"
REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


async def _until(check: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {within:.0f}s waiting for {what}"
        await asyncio.sleep(0.2)


async def _api(kubeconfig: Path, context: str | None = "east") -> client.ApiClient:
    return await config.new_client_from_config(config_file=str(kubeconfig), context=context, persist_config=False)


def _write_config(directory: Path, clusterset: ClusterSet, **overrides: Any) -> Path:
    path = directory / f"mcgw-{secrets.token_hex(3)}.yaml"
    east = clusterset.clusters["east"]
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "east", "kubeconfig": str(east.kubeconfig), "context": "east"}],
        # On the test bed's bridge: where provisioned Envoys, in the cluster's network namespace, reach mcgw.
        "xds": {"listen": f"{clusterset.network.host_address}:{free_port()}"},
        "admin": {"listen": "127.0.0.1:0"},
        "reconcile": {"debounce": 0.05, "debounceCap": 0.3},
        "leaderElection": {"leaseName": f"mcgw-provisioning-{secrets.token_hex(3)}", "leaseDuration": 4,
                           "renewDeadline": 3, "retryPeriod": 0.5},
        **overrides,
    }))
    return path


@contextlib.asynccontextmanager
async def _controller(path: Path) -> AsyncIterator[Controller]:
    started = rfc3339()
    async with Controller(load_run_config(path)) as controller:
        await asyncio.wait_for(controller.reconciler.ready.wait(), 60)
        try:
            yield controller
        finally:
            await _remove_provisioned_elsewhere(path, started)


async def _remove_provisioned_elsewhere(path: Path, since: str) -> None:
    """What this controller provisioned for Gateways of other tests (the clusters are shared): deleted."""
    run = load_run_config(path)
    api = await _api(run.clusters[0].kubeconfig, run.clusters[0].context)
    try:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        listings = [(await core.list_service_account_for_all_namespaces(label_selector=MANAGED)).items,
                    (await core.list_secret_for_all_namespaces(label_selector=MANAGED)).items,
                    (await core.list_config_map_for_all_namespaces(label_selector=MANAGED)).items,
                    (await core.list_service_for_all_namespaces(label_selector=MANAGED)).items,
                    (await apps.list_deployment_for_all_namespaces(label_selector=MANAGED)).items]
        for items in listings:
            for item in items:
                meta = item.metadata
                if meta.namespace.startswith("prov-") or rfc3339(meta.creation_timestamp.timestamp()) < since:
                    continue
                delete = {"V1ServiceAccount": core.delete_namespaced_service_account,
                          "V1Secret": core.delete_namespaced_secret,
                          "V1ConfigMap": core.delete_namespaced_config_map,
                          "V1Service": core.delete_namespaced_service,
                          "V1Deployment": apps.delete_namespaced_deployment}[type(item).__name__]
                with contextlib.suppress(client.ApiException):
                    await delete(meta.name, meta.namespace)
    finally:
        await api.close()


class Cluster:
    """The east cluster's API, as the tests use it."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core, self.apps, self.custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
        self.namespaces: list[str] = []

    async def namespace(self, tag: str) -> str:
        name = f"prov-{tag}-{secrets.token_hex(3)}"
        await self.core.create_namespace({"metadata": {"name": name}})
        self.namespaces.append(name)
        return name

    async def gateway_class(self, parameters: dict[str, Any] | None = None, name: str = CLASS) -> None:
        body = {"apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": name},
                "spec": {"controllerName": "mcgw.io/gateway-controller",
                         **({"parametersRef": parameters} if parameters else {})}}
        try:
            await self.custom.create_cluster_custom_object(GW, "v1", "gatewayclasses", body)
        except client.ApiException as error:
            if error.status != 409:
                raise
            current = await self.custom.get_cluster_custom_object(GW, "v1", "gatewayclasses", name)
            await self.custom.replace_cluster_custom_object(GW, "v1", "gatewayclasses", name, {
                **body, "metadata": {**body["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}})

    async def envoy_proxy(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        await self.custom.create_namespaced_custom_object("mcgw.io", "v1alpha1", namespace, "envoyproxies", {
            "apiVersion": "mcgw.io/v1alpha1", "kind": "EnvoyProxy", "metadata": {"name": name}, "spec": spec})

    async def gateway(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.custom.create_namespaced_custom_object(
            GW, "v1", namespace, "gateways", {"apiVersion": f"{GW}/v1", "kind": "Gateway",
                                              "metadata": {"name": name},
                                              "spec": {"gatewayClassName": CLASS, **spec}})
        return result

    async def patch_gateway(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self.custom.patch_namespaced_custom_object(GW, "v1", namespace, "gateways", name, patch,
                                                         _content_type="application/merge-patch+json")

    async def status(self, namespace: str, name: str) -> dict[str, Any]:
        stored = await self.custom.get_namespaced_custom_object_status(GW, "v1", namespace, "gateways", name)
        return dict(stored.get("status") or {})

    async def condition(self, namespace: str, name: str, kind: str) -> tuple[str, str, str] | None:
        """(status, reason, message) of mcgw's condition (the CRD's default ones carry no observedGeneration)."""
        for condition in (await self.status(namespace, name)).get("conditions", []):
            if condition["type"] == kind and condition.get("observedGeneration", 0) > 0:
                return condition["status"], condition["reason"], condition["message"]
        return None

    async def generated(self, namespace: str, optional: bool = False) -> dict[str, Any]:
        """Every object of ours in ``namespace``, by kind (with ``optional``, the autoscaler and budget too)."""
        accounts = await self.core.list_namespaced_service_account(namespace, label_selector=MANAGED)
        objects = {
            "ServiceAccount": accounts.items,
            "Secret": (await self.core.list_namespaced_secret(namespace, label_selector=MANAGED)).items,
            "ConfigMap": (await self.core.list_namespaced_config_map(namespace, label_selector=MANAGED)).items,
            "Deployment": (await self.apps.list_namespaced_deployment(namespace, label_selector=MANAGED)).items,
            "Service": (await self.core.list_namespaced_service(namespace, label_selector=MANAGED)).items,
        }
        if optional:
            scalers = await client.AutoscalingV2Api(self.api).list_namespaced_horizontal_pod_autoscaler(
                namespace, label_selector=MANAGED)
            budgets = await client.PolicyV1Api(self.api).list_namespaced_pod_disruption_budget(
                namespace, label_selector=MANAGED)
            objects |= {"HorizontalPodAutoscaler": scalers.items, "PodDisruptionBudget": budgets.items}
        return objects


async def _programmed_as_observed(east: Cluster, namespace: str, gateway: str) -> bool:
    """Whether the Gateway's addresses and Programmed agree with its Service and Deployment right now."""
    programmed = await east.condition(namespace, gateway, "Programmed")
    service = await east.core.read_namespaced_service(f"mcgw-{gateway}", namespace)
    ingress = [i.ip or i.hostname for i in (service.status.load_balancer.ingress or [])]
    addresses = [a["value"] for a in (await east.status(namespace, gateway)).get("addresses", [])]
    if not ingress:
        return programmed == ("False", "AddressNotAssigned", "waiting for the load balancer to assign an address to "
                                                             f"Service {namespace}/mcgw-{gateway}") and addresses == []
    if addresses != ingress or programmed is None:
        return False
    deployment = await east.apps.read_namespaced_deployment(f"mcgw-{gateway}", namespace)
    if not deployment.status.ready_replicas:
        return programmed[:2] == ("False", "Pending") and programmed[2].startswith(
            f"waiting for an Envoy pod of Deployment {namespace}/mcgw-{gateway} to be ready")
    return programmed[1] in ("Pending", "Programmed")


@pytest.fixture
async def east(clusterset: ClusterSet) -> AsyncIterator[Cluster]:
    api = await _api(clusterset.clusters["east"].kubeconfig)
    cluster = Cluster(api)
    try:
        yield cluster
    finally:
        for namespace in cluster.namespaces:  # with whatever Envoy pods the test bed runs for them
            with contextlib.suppress(client.ApiException):
                await cluster.core.delete_namespace(namespace)
        await api.close()


def _applied(meta: Any) -> list[tuple[Any, Any]]:
    """When and what mcgw last server-side applied to an object (its field manager's entries)."""
    return [(f.time, f.fields_v1) for f in meta.managed_fields if f.manager == "mcgw" and f.operation == "Apply"]


async def test_a_gateway_gets_its_envoys_and_keeps_them_through_listener_changes_until_deleted(
        clusterset: ClusterSet, east: Cluster, tmp_path: Path) -> None:
    namespace = await east.namespace("life")
    await east.gateway_class()
    await east.envoy_proxy(namespace, "two", {"replicas": 2, "logLevel": "debug",
                                              "service": {"annotations": {"lb.example/kind": "internal"}}})
    # Someone's objects that must never be touched: one with the gateway-name label but not ours.
    await east.core.create_namespaced_config_map(namespace, {"metadata": {
        "name": "notes", "labels": {"gateway.networking.k8s.io/gateway-name": "edge"}}, "data": {"mine": "yes"}})
    gateway = await east.gateway(namespace, "edge", {
        "infrastructure": {"labels": {"team": "shop"}, "annotations": {"example.com/owner": "shop-team"},
                           "parametersRef": {"group": "mcgw.io", "kind": "EnvoyProxy", "name": "two"}},
        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})
    uid = gateway["metadata"]["uid"]

    async with _controller(_write_config(tmp_path, clusterset)):
        async def provisioned() -> dict[str, Any] | None:
            objects = await east.generated(namespace)
            return objects if all(len(items) == 1 for items in objects.values()) else None

        objects = await _until(provisioned, 30, "the Gateway's ServiceAccount, xDS credentials Secret, ConfigMap, "
                                                "Deployment and Service")
        for kind, (obj,) in objects.items():
            meta = obj.metadata
            assert meta.name == ("mcgw-edge-xds" if kind == "Secret" else "mcgw-edge"), kind
            assert meta.labels["app.kubernetes.io/managed-by"] == "mcgw"
            assert meta.labels["gateway.networking.k8s.io/gateway-name"] == "edge"
            assert meta.labels["team"] == "shop", kind  # spec.infrastructure.labels
            assert meta.annotations["example.com/owner"] == "shop-team", kind
            (owner,) = meta.owner_references
            assert (owner.kind, owner.name, owner.uid, owner.controller, owner.block_owner_deletion) == (
                "Gateway", "edge", uid, True, True)
            assert [f.manager for f in meta.managed_fields if f.operation == "Apply"] == ["mcgw"]
        (deployment,) = objects["Deployment"]
        assert deployment.spec.replicas == 2
        template = deployment.spec.template
        assert template.metadata.labels["team"] == "shop"
        assert template.metadata.annotations["example.com/owner"] == "shop-team"
        (container,) = template.spec.containers
        assert container.args[container.args.index("--log-level") + 1] == "debug"
        assert container.args[container.args.index("--service-node") + 1] == f"{namespace}/edge/$(POD_NAME)"
        assert container.readiness_probe.http_get.path == "/ready"
        (service,) = objects["Service"]
        assert service.spec.type == "LoadBalancer"
        assert service.metadata.annotations["lb.example/kind"] == "internal"
        assert [(p.name, p.port, p.target_port, p.protocol) for p in service.spec.ports] == [("tcp-80", 80, 80, "TCP")]
        (config_map,) = objects["ConfigMap"]
        bootstrap = yaml.safe_load(config_map.data["bootstrap.yaml"])
        assert bootstrap["node"]["cluster"] == "east"
        xds = next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "mcgw-xds")
        assert xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"][
            "address"] == clusterset.network.host_address
        # The Gateway is accepted, and Programmed only says what it is waiting for (the test bed may or may
        # not run a load balancer and pods; what the status says must match what is there).
        assert await _until(lambda: east.condition(namespace, "edge", "Accepted"), 30, "Accepted") == (
            "True", "Accepted", "all listeners are valid")
        await _until(lambda: _programmed_as_observed(east, namespace, "edge"), 30,
                     "Programmed to say what the Gateway waits for")

        # A second listener: the Service gets its port, the Deployment is not touched by mcgw (no new
        # generation, so no rollout, and no apply: its field manager's entry is as it was; the Deployment's
        # status may move meanwhile, as its pods come up).
        before = (await east.apps.read_namespaced_deployment("mcgw-edge", namespace)).metadata
        await east.patch_gateway(namespace, "edge", {"spec": {"listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"}, {"name": "alt", "port": 8080, "protocol": "HTTP"}]}})

        async def two_ports() -> bool:
            current = await east.core.read_namespaced_service("mcgw-edge", namespace)
            return [p.port for p in current.spec.ports] == [80, 8080]

        await _until(two_ports, 30, "the Service to get port 8080")
        await asyncio.sleep(1)  # a reconcile pass or two later, still
        after = (await east.apps.read_namespaced_deployment("mcgw-edge", namespace)).metadata
        assert (after.generation, _applied(after)) == (before.generation, _applied(before))

        # Deleted: every generated object goes (the test bed may or may not run a garbage collector:
        # mcgw deletes them itself), and what is not ours stays.
        await east.custom.delete_namespaced_custom_object(GW, "v1", namespace, "gateways", "edge")

        async def gone() -> bool:
            return not any((await east.generated(namespace)).values())

        await _until(gone, 30, "every generated object to be deleted")
        notes = await east.core.read_namespaced_config_map("notes", namespace)
        assert notes.data == {"mine": "yes"}


async def test_provisioned_envoys_serve_and_take_a_new_listener_without_a_restart(
        clusterset: ClusterSet, east: Cluster, tmp_path: Path) -> None:
    """With the test bed's pod runner the provisioned pods run real Envoy: it dials mcgw over the bridge, is
    Ready once it has its configuration, the Gateway is Programmed, and a new listener is served by the same
    process (LDS, no rollout)."""
    namespace = await east.namespace("serve")
    await east.gateway_class()
    # No load balancer on the test bed: a ClusterIP Service gives the Gateway its address.
    await east.envoy_proxy(namespace, "internal", {"service": {"type": "ClusterIP"}})
    backend = clusterset.start_echo("east", namespace=namespace, pod="cart-0")
    await east.core.create_namespaced_service(namespace, {
        "metadata": {"name": "cart"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": backend.port}]}})
    await client.DiscoveryV1Api(east.api).create_namespaced_endpoint_slice(namespace, {
        "metadata": {"name": "cart-1", "labels": {"kubernetes.io/service-name": "cart"}}, "addressType": "IPv4",
        "ports": [{"name": "http", "port": backend.port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [backend.address], "conditions": {"ready": True}}]})
    await east.gateway(namespace, "edge", {
        "infrastructure": {"parametersRef": {"group": "mcgw.io", "kind": "EnvoyProxy", "name": "internal"}},
        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})
    await east.custom.create_namespaced_custom_object(GW, "v1", namespace, "httproutes", {
        "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": "cart"},
        "spec": {"parentRefs": [{"name": "edge"}], "rules": [{"backendRefs": [{"name": "cart", "port": 80}]}]}})

    async with _controller(_write_config(tmp_path, clusterset)):
        programmed = await _until(lambda: _when(east.condition(namespace, "edge", "Programmed"),
                                                lambda found: found[0] == "True"), 60, "Programmed")
        service = await east.core.read_namespaced_service("mcgw-edge", namespace)
        assert programmed == ("True", "Programmed", f"programmed at {service.spec.cluster_ip}")
        assert [a["value"] for a in (await east.status(namespace, "edge"))["addresses"]] == [service.spec.cluster_ip]
        (pod,) = (await east.core.list_namespaced_pod(
            namespace, label_selector="gateway.networking.k8s.io/gateway-name=edge")).items
        assert pod.status.container_statuses[0].ready
        answer = await _until(lambda: _get_json(f"http://{pod.status.pod_ip}:80/"), 30, "an answer through Envoy")
        assert answer["pod"] == "cart-0"

        await east.patch_gateway(namespace, "edge", {"spec": {"listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"}, {"name": "alt", "port": 8080, "protocol": "HTTP"}]}})
        answer = await _until(lambda: _get_json(f"http://{pod.status.pod_ip}:8080/"), 30, "an answer on 8080")
        assert answer["pod"] == "cart-0"
        (same,) = (await east.core.list_namespaced_pod(
            namespace, label_selector="gateway.networking.k8s.io/gateway-name=edge")).items
        assert (same.metadata.uid, same.status.container_statuses[0].restart_count) == (pod.metadata.uid, 0)
        ports = (await east.core.read_namespaced_service("mcgw-edge", namespace)).spec.ports
        assert [p.port for p in ports] == [80, 8080]


async def _when(value: Awaitable[T | None], accept: Callable[[T], bool]) -> T | None:
    result = await value
    return result if result is not None and accept(result) else None


async def _get_json(url: str) -> dict[str, Any] | None:
    def get() -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return dict(json.loads(response.read()))
        except (OSError, ValueError):
            return None

    return await asyncio.to_thread(get)


async def test_static_addresses_are_honoured_or_reported_as_the_conformance_suite_checks(
        clusterset: ClusterSet, east: Cluster, tmp_path: Path) -> None:
    """GatewayStaticAddresses' sequence: an unsupported type is not accepted; then an address mcgw may not ask
    for is AddressNotUsable; with the usable one alone the Service carries it and the Gateway reports it."""
    namespace = await east.namespace("static")
    await east.gateway_class()
    await east.envoy_proxy(namespace, "internal", {"service": {"type": "ClusterIP"}})
    usable, unusable = "198.19.250.10", "198.19.251.1"
    addresses = [{"type": "Hostname", "value": "gw.example.com"}, {"type": "IPAddress", "value": unusable},
                 {"type": "IPAddress", "value": usable}]
    await east.gateway(namespace, "static", {
        "addresses": addresses,
        "infrastructure": {"parametersRef": {"group": "mcgw.io", "kind": "EnvoyProxy", "name": "internal"}},
        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})
    path = _write_config(tmp_path, clusterset, provisioning={"addressPools": ["198.19.250.0/24"]})

    async def condition(kind: str, reason: str) -> tuple[str, str, str] | None:
        found = await east.condition(namespace, "static", kind)
        return found if found and found[1] == reason else None

    async with _controller(path):
        status, _, message = await _until(lambda: condition("Accepted", "UnsupportedAddress"), 30,
                                          "UnsupportedAddress")
        assert status == "False"
        assert "type Hostname ('gw.example.com') is not supported" in message
        await east.patch_gateway(namespace, "static", {"spec": {"addresses": addresses[1:]}})
        status, _, message = await _until(lambda: condition("Programmed", "AddressNotUsable"), 30, "AddressNotUsable")
        assert status == "False"
        assert f"{unusable}: outside the address pools this mcgw may use (198.19.250.0/24)" in message
        assert (await east.condition(namespace, "static", "Accepted"))[:2] == ("True", "Accepted")
        async def service_with_external_ips() -> Any:
            # The status is computed before the provisioner's write lands: wait for the Service itself.
            try:
                service = await east.core.read_namespaced_service("mcgw-static", namespace)
            except client.ApiException as error:
                if error.status == 404:
                    return None
                raise
            return service if service.spec.external_ips else None

        service = await _until(service_with_external_ips, 30, "the provisioned Service with its external IPs")
        assert service.spec.external_ips == [usable]  # the usable one is asked for meanwhile
        await east.patch_gateway(namespace, "static", {"spec": {"addresses": addresses[2:]}})

        async def reported() -> bool:
            # No longer an address problem: what is left is the Envoys (pods, xDS), or nothing.
            programmed = await east.condition(namespace, "static", "Programmed")
            addresses = [a["value"] for a in (await east.status(namespace, "static")).get("addresses", [])]
            return programmed is not None and programmed[1] in ("Pending", "Programmed") and addresses == [usable]

        await _until(reported, 30, f"status.addresses to be {usable}, with no address problem")


async def test_bad_parameters_are_invalid_and_nothing_is_provisioned(clusterset: ClusterSet, east: Cluster,
                                                                     tmp_path: Path) -> None:
    namespace = await east.namespace("params")
    await east.gateway_class()
    # The schema refuses what mcgw could never use.
    with pytest.raises(client.ApiException) as refused:
        await east.envoy_proxy(namespace, "both", {"replicas": 2, "autoscaling": {"maxReplicas": 3}})
    assert refused.value.status == 422
    assert "set replicas or autoscaling, not both" in refused.value.body
    await east.envoy_proxy(namespace, "admin", {"bootstrap": {"admin": {"address": {}}}})
    await east.gateway(namespace, "missing", {
        "infrastructure": {"parametersRef": {"group": "mcgw.io", "kind": "EnvoyProxy", "name": "absent"}},
        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})
    await east.gateway(namespace, "reserved", {
        "infrastructure": {"parametersRef": {"group": "mcgw.io", "kind": "EnvoyProxy", "name": "admin"}},
        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})
    await east.gateway(namespace, "configmap", {
        "infrastructure": {"parametersRef": {"group": "", "kind": "ConfigMap", "name": "envoy"}},
        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})
    bad_class = f"{CLASS}-bad-{secrets.token_hex(2)}"
    await east.gateway_class({"group": "mcgw.io", "kind": "EnvoyProxy", "name": "absent"}, name=bad_class)

    async with _controller(_write_config(tmp_path, clusterset)):
        expected = {
            "missing": f"spec.infrastructure.parametersRef: EnvoyProxy {namespace}/absent does not exist",
            "reserved": "spec.bootstrap.admin is rendered by mcgw and cannot be replaced",
            "configmap": "names core/ConfigMap envoy; mcgw takes its parameters from an mcgw.io EnvoyProxy",
        }
        for name, message in expected.items():
            async def invalid(name: str = name) -> tuple[str, str, str] | None:
                found = await east.condition(namespace, name, "Accepted")
                return found if found and found[1] == "InvalidParameters" else None

            status, _, text = await _until(invalid, 30, f"{name} to be InvalidParameters")
            assert status == "False"
            assert message in text

        async def class_invalid() -> dict[str, Any] | None:
            stored = await east.custom.get_cluster_custom_object_status(GW, "v1", "gatewayclasses", bad_class)
            accepted = {c["type"]: c for c in (stored.get("status") or {}).get("conditions", [])}.get("Accepted")
            return accepted if accepted and accepted["reason"] == "InvalidParameters" else None

        accepted = await _until(class_invalid, 30, "the GatewayClass to be InvalidParameters")
        assert "has no namespace; an EnvoyProxy is namespaced: set spec.parametersRef.namespace" in accepted["message"]
        assert accepted["status"] == "False"
        await asyncio.sleep(1)
        assert not any((await east.generated(namespace)).values())
    await east.custom.delete_cluster_custom_object(GW, "v1", "gatewayclasses", bad_class)


async def test_a_replica_without_the_lease_provisions_nothing(clusterset: ClusterSet, east: Cluster,
                                                              tmp_path: Path) -> None:
    namespace = await east.namespace("standby")
    await east.gateway_class()
    await east.gateway(namespace, "edge", {"listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})
    lease_name = f"mcgw-provisioning-held-{secrets.token_hex(3)}"
    coordination = client.CoordinationV1Api(east.api)
    # Another replica holds the Lease, and renews it.
    lease = await coordination.create_namespaced_lease("kube-system", {
        "metadata": {"name": lease_name},
        "spec": {"holderIdentity": "another-replica", "leaseDurationSeconds": 4,
                 "acquireTime": rfc3339(fraction=6), "renewTime": rfc3339(fraction=6)}})
    path = _write_config(tmp_path, clusterset, leaderElection={"leaseName": lease_name, "leaseDuration": 4,
                                                               "renewDeadline": 3, "retryPeriod": 0.5})

    async def renew() -> None:
        while True:
            await asyncio.sleep(1)
            current = await coordination.read_namespaced_lease(lease_name, "kube-system")
            current.spec.renew_time = rfc3339(fraction=6)
            await coordination.replace_namespaced_lease(lease_name, "kube-system", current)

    renewing = asyncio.create_task(renew())
    try:
        async with _controller(path) as controller:
            await asyncio.sleep(6)  # longer than the Lease lasts without renewal
            assert not controller.electors["east"].is_leader_now()
            assert not any((await east.generated(namespace)).values())
            assert controller.status()["provisioning"]["east"]["deferred"] is True
            # The other replica goes away: this one takes over and provisions.
            renewing.cancel()

            async def provisioned() -> bool:
                return bool((await east.generated(namespace))["Deployment"])

            await _until(provisioned, 30, "the new leader to provision")
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
    await coordination.delete_namespaced_lease(lease.metadata.name, "kube-system")


async def _report(controller: Controller, cluster: str) -> dict[str, Any] | None:
    provisioning = controller.status()["provisioning"]
    return provisioning.get(cluster) if isinstance(provisioning, dict) else None


async def test_the_documented_rbac_is_enough(clusterset: ClusterSet, east: Cluster, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """mcgw as a ServiceAccount bound by deploy/rbac/mcgw.yaml (and nothing else) provisions and writes status."""
    namespace = await east.namespace("rbac")
    await east.gateway_class()
    identity = f"mcgw-rbac-{secrets.token_hex(2)}"
    with contextlib.suppress(client.ApiException):
        await east.core.create_namespace({"metadata": {"name": "mcgw-system"}})
    await east.core.create_namespaced_service_account("mcgw-system", {"metadata": {"name": identity}})
    rbac = client.RbacAuthorizationV1Api(east.api)
    documents = list(yaml.safe_load_all((REPO / "deploy" / "rbac" / "mcgw.yaml").read_text()))
    for document in documents:
        document["metadata"]["name"] = identity
        if "subjects" in document:
            document["subjects"] = [{"kind": "ServiceAccount", "name": identity, "namespace": "mcgw-system"}]
            document["roleRef"]["name"] = identity
        create = {"ClusterRole": rbac.create_cluster_role, "ClusterRoleBinding": rbac.create_cluster_role_binding}
        if document["kind"] in create:
            await create[document["kind"]](document)
        elif document["kind"] == "Role":
            await rbac.create_namespaced_role("kube-system", document)
        else:
            await rbac.create_namespaced_role_binding("kube-system", document)
    token = (await east.core.create_namespaced_service_account_token(
        identity, "mcgw-system", {"spec": {"expirationSeconds": 3600}})).status.token
    admin = yaml.safe_load(clusterset.clusters["east"].kubeconfig.read_text())
    kubeconfig = tmp_path / "sa.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
        "users": [{"name": identity, "user": {"token": token}}],
        "contexts": [{"name": "east", "context": {"cluster": admin["clusters"][0]["name"], "user": identity}}],
        "current-context": "east"}))
    # Every generated kind, the optional ones too.
    await east.envoy_proxy(namespace, "scaled", {"autoscaling": {"minReplicas": 1, "maxReplicas": 2},
                                                 "podDisruptionBudget": {"maxUnavailable": 1}})
    await east.gateway(namespace, "edge", {
        "infrastructure": {"labels": {"team": "rbac"},
                           "parametersRef": {"group": "mcgw.io", "kind": "EnvoyProxy", "name": "scaled"}},
        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})
    path = _write_config(tmp_path, clusterset)
    document = yaml.safe_load(path.read_text())
    document["clusters"][0]["kubeconfig"] = str(kubeconfig)
    path.write_text(yaml.safe_dump(document))
    authorization = client.AuthorizationV1Api(east.api)

    async def bound() -> bool:
        # The API server's authorizer learns new bindings through a watch: wait until it has these, so a 403
        # below means the documented rules lack a permission, not that they had not arrived yet.
        review = await authorization.create_subject_access_review({"spec": {
            "user": f"system:serviceaccount:mcgw-system:{identity}",
            "resourceAttributes": {"namespace": namespace, "verb": "create", "resource": "configmaps"}}})
        return bool(review.status.allowed)

    await _until(bound, 30, "the documented RBAC to take effect")
    try:
        async with _controller(path) as controller:
            assert controller.store["east"].available, controller.store["east"].health().reason

            async def provisioned() -> bool:
                objects = await east.generated(namespace, optional=True)
                return all(len(items) == 1 for items in objects.values())

            await _until(provisioned, 30, "provisioning with the documented permissions")
            assert await _until(lambda: east.condition(namespace, "edge", "Accepted"), 30, "status written")
            # The sync report follows the writes it counts.
            report = await _until(lambda: _report(controller, "east"), 30, "east's provisioning report")
            assert report["failed"] == 0, report
            # And deletes with them too.
            await east.custom.delete_namespaced_custom_object(GW, "v1", namespace, "gateways", "edge")

            async def gone() -> bool:
                return not any((await east.generated(namespace, optional=True)).values())

            await _until(gone, 30, "the generated objects to be deleted with the documented permissions")
        assert "403" not in caplog.text
    finally:
        await rbac.delete_cluster_role_binding(identity)
        await rbac.delete_cluster_role(identity)
        await rbac.delete_namespaced_role(identity, "kube-system")
        await rbac.delete_namespaced_role_binding(identity, "kube-system")
