"""Multi-Cluster Services end to end: ``mcgw run`` against three real API servers.

- A service exported from east and west is imported into all three clusters (central has the namespace
  too): ServiceImport type, ports and status.clusters, one EndpointSlice per source cluster with the MCS
  labels and the source's ready/serving/terminating conditions, and Valid/Ready/Conflict on each export.
  An endpoint change in a source cluster reaches every imported slice.
- A conflict (a port name with another number, a port number with another protocol, headless against
  ClusterSetIP) sets Conflict True with every reason on every export; the oldest export wins and the
  ports are the union.
- Unexporting in one cluster removes that cluster's slices; deleting the last export removes the
  ServiceImport and its slices everywhere.

The clusters are shared by every e2e test, so each test works in namespaces of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.error
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import yaml

from mcgw.app.config import load_run_config
from mcgw.app.run import Controller
from mcgw.support.netutil import free_port
from tests.e2e.testbed import ClusterSet

MCS = "/apis/multicluster.x-k8s.io/v1beta1"
SLICES = "/apis/discovery.k8s.io/v1"
CLUSTERS = ("east", "west", "central")
SERVICE_NAME = "multicluster.kubernetes.io/service-name"
SOURCE_CLUSTER = "multicluster.kubernetes.io/source-cluster"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"


def _write_config(directory: Path, clusterset: ClusterSet, kubeconfigs: dict[str, Path] | None = None) -> Path:
    path = directory / "mcgw.yaml"
    kubeconfigs = {name: clusterset.clusters[name].kubeconfig for name in CLUSTERS} | (kubeconfigs or {})
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": name, "kubeconfig": str(kubeconfigs[name]), "context": name} for name in CLUSTERS],
        "xds": {"listen": f"127.0.0.1:{free_port()}"},
        "admin": {"listen": "127.0.0.1:0"},
        "reconcile": {"debounce": 0.05, "debounceCap": 0.5},
        "leaderElection": {"leaseDuration": 4, "renewDeadline": 3, "retryPeriod": 0.5},
        "provisioning": {"enabled": False},  # about MCS objects; tests/e2e/test_provisioning_e2e.py provisions
    }))
    return path


@contextlib.asynccontextmanager
async def _controller(clusterset: ClusterSet, tmp_path: Path, kubeconfigs: dict[str, Path] | None = None,
                      **options: Any) -> AsyncIterator[Controller]:
    async with Controller(load_run_config(_write_config(tmp_path, clusterset, kubeconfigs)), **options) as controller:
        await asyncio.wait_for(controller.reconciler.ready.wait(), 60)
        yield controller


class Api:
    """Blocking admin requests to one member cluster, run off the event loop."""

    def __init__(self, clusterset: ClusterSet, cluster: str) -> None:
        self.member = clusterset.clusters[cluster]

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        return await asyncio.to_thread(self.member.request, method, path, body)

    async def get(self, path: str) -> Any:
        try:
            return await self.call("GET", path)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    async def create(self, path: str, body: dict[str, Any]) -> Any:
        return await self.call("POST", path, body)

    async def delete(self, path: str) -> None:
        await self.call("DELETE", path)

    async def service_import(self, namespace: str, name: str = "cart") -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.get(f"{MCS}/namespaces/{namespace}/serviceimports/{name}")
        return found

    async def imported_slices(self, namespace: str, name: str = "cart") -> dict[str, dict[str, Any]]:
        """This cluster's imported slices of ``name``, by source cluster."""
        listing = await self.call("GET", f"{SLICES}/namespaces/{namespace}/endpointslices"
                                         f"?labelSelector={SERVICE_NAME}%3D{name}")
        return {item["metadata"]["labels"][SOURCE_CLUSTER]: item for item in listing["items"]}

    async def export_conditions(self, namespace: str, name: str = "cart") -> dict[str, dict[str, Any]]:
        export = await self.get(f"{MCS}/namespaces/{namespace}/serviceexports/{name}")
        return {c["type"]: c for c in ((export or {}).get("status") or {}).get("conditions", [])}


async def _setup_namespace(apis: dict[str, Api], namespace: str) -> None:
    for api in apis.values():
        await api.create("/api/v1/namespaces", {"metadata": {"name": namespace}})


async def _service(api: Api, namespace: str, ports: list[dict[str, Any]], headless: bool = False) -> None:
    spec: dict[str, Any] = {"ports": ports}
    if headless:
        spec["clusterIP"] = "None"
    await api.create(f"/api/v1/namespaces/{namespace}/services", {"metadata": {"name": "cart"}, "spec": spec})


async def _slice(api: Api, namespace: str, name: str, ports: list[dict[str, Any]],
                 endpoints: list[dict[str, Any]]) -> None:
    await api.create(f"{SLICES}/namespaces/{namespace}/endpointslices", {
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "cart"}},
        "addressType": "IPv4", "ports": ports, "endpoints": endpoints})


async def _export(api: Api, namespace: str) -> None:
    await api.create(f"{MCS}/namespaces/{namespace}/serviceexports", {
        "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport", "metadata": {"name": "cart"}})


def _endpoint(address: str, ready: bool, serving: bool, terminating: bool) -> dict[str, Any]:
    return {"addresses": [address], "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}


async def _until(check: Callable[[], Any], within: float, what: str) -> float:
    """Await ``check()`` until it is truthy; returns how long that took (for the printed figures)."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def _clusters(service_import: dict[str, Any] | None) -> list[str]:
    return [c["cluster"] for c in ((service_import or {}).get("status") or {}).get("clusters", [])]


def _statuses(conditions: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {kind: (c["status"], c["reason"]) for kind, c in conditions.items()}


async def test_a_service_exported_from_two_clusters_is_imported_into_all_three(clusterset: ClusterSet,
                                                                              tmp_path: Path) -> None:
    namespace = "mcs-import"
    apis = {name: Api(clusterset, name) for name in CLUSTERS}
    await _setup_namespace(apis, namespace)
    http = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    for name in ("east", "west"):
        await _service(apis[name], namespace, [{"name": "http", "port": 80, "targetPort": 8080}])
    await _slice(apis["east"], namespace, "cart-abcde", http, [
        _endpoint("10.10.1.1", True, True, False), _endpoint("10.10.1.2", False, True, True),
        _endpoint("10.10.1.3", False, False, False)])
    await _slice(apis["west"], namespace, "cart-fghij", http, [_endpoint("10.10.2.1", True, True, False)])

    async with _controller(clusterset, tmp_path):
        exported_at = time.monotonic()
        await _export(apis["east"], namespace)
        await _export(apis["west"], namespace)

        async def imported_everywhere() -> bool:
            for api in apis.values():
                if _clusters(await api.service_import(namespace)) != ["east", "west"]:
                    return False
                if sorted(await api.imported_slices(namespace)) != ["east", "west"]:
                    return False
            return True

        await _until(imported_everywhere, 30, "the ServiceImport and both slices in every cluster")
        visible = time.monotonic() - exported_at

        for name, api in apis.items():
            service_import = await api.service_import(namespace)
            assert service_import is not None
            assert service_import["spec"]["type"] == "ClusterSetIP", name
            assert service_import["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80}]
            ready = {c["type"]: c for c in service_import["status"]["conditions"]}["Ready"]
            assert (ready["status"], ready["reason"]) == ("True", "Ready")
            slices = await api.imported_slices(namespace)
            for source, imported in slices.items():
                labels = imported["metadata"]["labels"]
                assert labels[SERVICE_NAME] == "cart"
                assert labels[SOURCE_CLUSTER] == source
                assert labels[MANAGED_BY] == "mcs-controller.mcgw.io"
                assert "kubernetes.io/service-name" not in labels
                assert imported["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
            assert [(e["addresses"], e["conditions"]) for e in slices["east"]["endpoints"]] == [
                (["10.10.1.1"], {"ready": True, "serving": True, "terminating": False}),
                (["10.10.1.2"], {"ready": False, "serving": True, "terminating": True}),
                (["10.10.1.3"], {"ready": False, "serving": False, "terminating": False})]
            assert [e["addresses"] for e in slices["west"]["endpoints"]] == [["10.10.2.1"]]
        for name in ("east", "west"):
            await _until(lambda name=name: _has_export_status(apis[name], namespace), 10, f"{name}'s export status")
            conditions = await apis[name].export_conditions(namespace)
            assert _statuses(conditions) == {"Valid": ("True", "Valid"), "Ready": ("True", "Exported"),
                                             "Conflict": ("False", "NoConflicts")}
            assert all(c["lastTransitionTime"] and c["observedGeneration"] == 1 for c in conditions.values())
        assert await apis["central"].export_conditions(namespace) == {}

        # An endpoint change in west reaches the imported slices of every cluster.
        changed_at = time.monotonic()
        await apis["west"].create(f"{SLICES}/namespaces/{namespace}/endpointslices", {
            "metadata": {"name": "cart-klmno", "labels": {"kubernetes.io/service-name": "cart"}},
            "addressType": "IPv4", "ports": http, "endpoints": [_endpoint("10.10.2.2", True, True, False)]})
        await apis["west"].delete(f"{SLICES}/namespaces/{namespace}/endpointslices/cart-fghij")

        async def moved() -> bool:
            for api in apis.values():
                west = (await api.imported_slices(namespace)).get("west")
                if west is None or [e["addresses"] for e in west["endpoints"]] != [["10.10.2.2"]]:
                    return False
            return True

        await _until(moved, 30, "west's new endpoint in every imported slice")
        propagated = time.monotonic() - changed_at
    print(f"\nMCS: export → import and slices visible in all 3 clusters in {visible:.2f}s; "
          f"an endpoint change in {propagated:.2f}s")


async def _has_export_status(api: Api, namespace: str) -> bool:
    return len(await api.export_conditions(namespace)) == 3


async def test_a_conflict_is_reported_on_every_export_and_the_ports_are_the_union(clusterset: ClusterSet,
                                                                                 tmp_path: Path) -> None:
    namespace = "mcs-conflict"
    apis = {name: Api(clusterset, name) for name in CLUSTERS}
    await _setup_namespace(apis, namespace)
    # west exports first (the oldest wins): ClusterSetIP, http 80.
    await _service(apis["west"], namespace, [{"name": "http", "port": 80, "targetPort": 8080}])
    await _slice(apis["west"], namespace, "cart-w", [{"name": "http", "port": 8080}],
                 [_endpoint("10.20.2.1", True, True, False)])
    # east: headless, http on another number, and metrics 9090/TCP.
    await _service(apis["east"], namespace, [{"name": "http", "port": 81, "targetPort": 8081},
                                              {"name": "metrics", "port": 9090}], headless=True)
    await _slice(apis["east"], namespace, "cart-e", [{"name": "http", "port": 8081}, {"name": "metrics", "port": 9090}],
                 [_endpoint("10.20.1.1", True, True, False)])
    # central: 9090 with another protocol.
    await _service(apis["central"], namespace, [{"name": "stats", "port": 9090, "protocol": "UDP"}])
    await _slice(apis["central"], namespace, "cart-c", [{"name": "stats", "port": 9090, "protocol": "UDP"}],
                 [_endpoint("10.20.3.1", True, True, False)])

    async with _controller(clusterset, tmp_path):
        # creationTimestamp has one-second resolution: west is the oldest export, then east, then central.
        await _export(apis["west"], namespace)
        await asyncio.sleep(1.1)
        await _export(apis["east"], namespace)
        await asyncio.sleep(1.1)
        await _export(apis["central"], namespace)

        async def conflicted() -> bool:
            for api in apis.values():
                conflict = (await api.export_conditions(namespace)).get("Conflict")
                if conflict is None or conflict["status"] != "True":
                    return False
            return True

        await _until(conflicted, 30, "Conflict True on every export")
        for name, api in apis.items():
            conflict = (await api.export_conditions(namespace))["Conflict"]
            assert conflict["reason"] == "PortConflict,TypeConflict", name
            assert "west" in conflict["message"]
        await _until(lambda: _import_lists(apis, namespace, ["central", "east", "west"]), 30, "every exporter listed")
        for api in apis.values():
            service_import = await api.service_import(namespace)
            assert service_import is not None
            assert service_import["spec"]["type"] == "ClusterSetIP"  # west's
            assert service_import["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80},
                                                       {"name": "metrics", "protocol": "TCP", "port": 9090}]
            slices = await api.imported_slices(namespace)
            # 80 comes only from west, 9090/TCP only from east; central's 9090/UDP is in no import port.
            assert sorted(slices) == ["east", "west"]
            assert slices["west"]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
            assert slices["east"]["ports"] == [{"name": "metrics", "port": 9090, "protocol": "TCP"}]

        # Resolving the conflict clears it, keeping the exports.
        await apis["east"].delete(f"{MCS}/namespaces/{namespace}/serviceexports/cart")
        await apis["central"].delete(f"{MCS}/namespaces/{namespace}/serviceexports/cart")

        async def resolved() -> bool:
            return (await apis["west"].export_conditions(namespace)).get("Conflict", {}).get("status") == "False"

        await _until(resolved, 30, "the conflict to clear on west's export")
        assert (await apis["west"].export_conditions(namespace))["Conflict"]["reason"] == "NoConflicts"
        await _until(lambda: _import_lists(apis, namespace, ["west"]), 30, "west alone in every import")
        for api in apis.values():
            service_import = await api.service_import(namespace)
            assert service_import is not None
            assert service_import["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80}]


async def _import_lists(apis: dict[str, Api], namespace: str, clusters: list[str]) -> bool:
    for api in apis.values():
        if _clusters(await api.service_import(namespace)) != clusters:
            return False
    return True


async def test_unexport_and_deleting_the_last_export_clean_up_everywhere(clusterset: ClusterSet,
                                                                          tmp_path: Path) -> None:
    namespace = "mcs-unexport"
    apis = {name: Api(clusterset, name) for name in CLUSTERS}
    await _setup_namespace(apis, namespace)
    for name, address in (("east", "10.30.1.1"), ("west", "10.30.2.1")):
        await _service(apis[name], namespace, [{"name": "http", "port": 80, "targetPort": 8080}])
        await _slice(apis[name], namespace, f"cart-{name}", [{"name": "http", "port": 8080}],
                     [_endpoint(address, True, True, False)])
        await _export(apis[name], namespace)

    async def slices_everywhere(expected: list[str]) -> bool:
        for api in apis.values():
            if sorted(await api.imported_slices(namespace)) != expected:
                return False
        return True

    async with _controller(clusterset, tmp_path):
        await _until(lambda: slices_everywhere(["east", "west"]), 30, "both sources imported everywhere")

        await apis["west"].delete(f"{MCS}/namespaces/{namespace}/serviceexports/cart")
        await _until(lambda: slices_everywhere(["east"]), 30, "west's slices to go from every cluster")
        await _until(lambda: _import_lists(apis, namespace, ["east"]), 30, "west to leave status.clusters")

        deleted_at = time.monotonic()
        await apis["east"].delete(f"{MCS}/namespaces/{namespace}/serviceexports/cart")

        async def gone() -> bool:
            for api in apis.values():
                if await api.service_import(namespace) is not None or await api.imported_slices(namespace):
                    return False
            return True

        await _until(gone, 30, "the ServiceImport and its slices to go from every cluster")
        cleaned = time.monotonic() - deleted_at
        # The sources' own slices are untouched.
        for name in ("east", "west"):
            assert await apis[name].get(f"{SLICES}/namespaces/{namespace}/endpointslices/cart-{name}") is not None
    print(f"\nMCS: last export deleted → ServiceImport and slices gone from all 3 clusters in {cleaned:.2f}s")


async def test_a_lost_cluster_is_kept_for_the_ttl_then_withdrawn_and_comes_back(clusterset: ClusterSet,
                                                                                tmp_path: Path) -> None:
    namespace = "mcs-lost"
    ttl = 6.0
    apis = {name: Api(clusterset, name) for name in CLUSTERS}
    await _setup_namespace(apis, namespace)
    for name, address in (("east", "10.40.1.1"), ("west", "10.40.2.1")):
        await _service(apis[name], namespace, [{"name": "http", "port": 80, "targetPort": 8080}])
        await _slice(apis[name], namespace, f"cart-{name}", [{"name": "http", "port": 8080}],
                     [_endpoint(address, True, True, False)])
        await _export(apis[name], namespace)
    west_apiserver = clusterset.clusters["west"].add_apiserver("mcs-lost")  # the shared one stays up for others
    survivors = {name: apis[name] for name in ("east", "central")}

    async def west_imported(present: bool) -> bool:
        for api in survivors.values():
            if ("west" in await api.imported_slices(namespace)) != present:
                return False
        return True

    def lost_state(controller: Controller) -> str | None:
        result = controller.mcs.result
        lost = {entry.cluster: entry for entry in (result.lost if result else ())}
        return None if "west" not in lost else ("withdrawn" if lost["west"].withdrawn else "kept")

    async with _controller(clusterset, tmp_path, {"west": west_apiserver.kubeconfig},
                           lost_cluster_ttl=ttl) as controller:
        await _until(lambda: west_imported(True), 30, "west's endpoints imported into east and central")
        await asyncio.to_thread(west_apiserver.stop)
        stopped = time.monotonic()

        async def kept_and_visible() -> bool:
            """West is lost but still imported; read between two looks at the state, so the slices read belong
            to the kept period even if the TTL ends meanwhile."""
            if lost_state(controller) != "kept":
                return False
            present = await west_imported(True)
            service_import = await apis["central"].service_import(namespace)
            if lost_state(controller) != "kept":
                return False
            assert present, "west's slices went away within the TTL"
            ready = {c["type"]: c for c in (service_import or {}).get("status", {}).get("conditions", [])}["Ready"]
            return bool(ready["reason"] == "SourceClusterLost" and ready["status"] == "True"
                        and _clusters(service_import) == ["east", "west"])

        await _until(kept_and_visible, 30, "west to be lost, its endpoints kept, the ServiceImport saying so")
        noticed = time.monotonic() - stopped
        metrics = controller.registry.get_sample_value("mcgw_mcs_lost_clusters", {"state": "kept"})
        assert metrics == 1
        status = await asyncio.to_thread(controller.status)
        lost = status["multiClusterServices"]["lostClusters"]
        assert [entry["cluster"] for entry in lost] == ["west"]
        assert f"{namespace}/cart" in lost[0]["exports"]  # other tests' exports may be listed too

        await _until(lambda: west_imported(False), ttl + 30, "west's endpoints to be withdrawn after the TTL")
        withdrawn = time.monotonic() - stopped
        assert lost_state(controller) == "withdrawn"
        await _until(lambda: _import_lists(survivors, namespace, ["east"]), 10, "west to leave status.clusters")
        assert controller.registry.get_sample_value("mcgw_mcs_lost_clusters", {"state": "withdrawn"}) == 1

        await asyncio.to_thread(west_apiserver.start)
        await _until(lambda: _available(controller, "west"), 60, "west to be available again")
        available = time.monotonic()
        await _until(lambda: west_imported(True), 30, "west's endpoints back once west is")
        back = time.monotonic() - available
        await _until(lambda: _import_lists(apis, namespace, ["east", "west"]), 30, "west back in every import")
        ready = {c["type"]: c for c in (await apis["east"].service_import(namespace) or {})["status"]["conditions"]}
        assert ready["Ready"]["reason"] == "Ready"
    print(f"\nMCS lost cluster: west's API server stopped → lost with endpoints kept after {noticed:.1f}s, "
          f"withdrawn after {withdrawn:.1f}s (TTL {ttl:.0f}s from the moment it was lost); "
          f"imported again {back:.2f}s after west was available again")


async def _available(controller: Controller, cluster: str) -> bool:
    return controller.store[cluster].available
