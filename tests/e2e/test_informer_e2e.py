"""Informers against real kube-apiservers: list + watch into the Store, API server restarts, 410 relists.

The tests that stop an API server use an extra kube-apiserver on the member cluster's etcd
(``MemberCluster.add_apiserver``), stopped and started again on the same port and certificates; the
cluster's own API server, shared with the rest of the session, keeps serving and is where the
tests make changes while the informer's server is down.

Two flavours of that extra server, because they take different paths after a disconnect:

- default flags (watch cache on): a restarted server's watch cache starts at the current etcd
  revision, so a watch from an older resourceVersion is answered 410 and the informer relists;
- ``--watch-cache=false``: watches are served by etcd itself, which replays its history, so the
  informer resumes from its last resourceVersion without a relist, unless that history was
  compacted (etcd compaction through its v3 JSON gateway), which gives 410 and a relist.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from kubernetes.aio import client

from mcgw.objects.kinds import BY_NAME
from mcgw.objects.model import SUPPORTED_KINDS, Secret, Service
from mcgw.providers.kubernetes.cluster import MemberCluster, api_client_from_kubeconfig
from mcgw.providers.kubernetes.informer import Informer, InformerSettings
from mcgw.store import Store
from tests.e2e.eventually import eventually
from tests.e2e.testbed import ClusterSet
from tests.e2e.testbed.cluster import ApiServer
from tests.e2e.testbed.cluster import MemberCluster as BedCluster

GW = "gateway.networking.k8s.io"
MCS = "multicluster.x-k8s.io"
# Short backoff cap and grace period: the tests wait for reconnections, not for production timings.
FAST = InformerSettings(backoff_cap=1.0)


def _service(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"ports": [{"port": 80}]}}


@pytest.fixture
def member(clusterset: ClusterSet) -> BedCluster:
    """The last cluster of the set: the other e2e tests mostly use the first one."""
    return list(clusterset.clusters.values())[-1]


@pytest.fixture
async def admin(member: BedCluster) -> AsyncIterator[client.ApiClient]:
    """A client of the member's own API server (always up): how tests change things."""
    api = await api_client_from_kubeconfig(member.kubeconfig, member.name)
    yield api
    await api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
async def namespace(admin: client.ApiClient) -> str:
    name = f"inf-{secrets.token_hex(3)}"
    await client.CoreV1Api(admin).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture(scope="module")
def restartable(clusterset: ClusterSet) -> Iterator[ApiServer]:
    """An extra kube-apiserver with default flags (watch cache on) on the last cluster's etcd."""
    server = list(clusterset.clusters.values())[-1].add_apiserver("restartable")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def etcd_served(clusterset: ClusterSet) -> Iterator[ApiServer]:
    """An extra kube-apiserver whose watches are served by etcd (``--watch-cache=false``)."""
    server = list(clusterset.clusters.values())[-1].add_apiserver("etcd-served", ["--watch-cache=false"])
    yield server
    server.stop()


async def _service_informer(server: ApiServer, cluster: str, store: Store) -> tuple[Informer, asyncio.Task[None],
                                                                                       client.ApiClient]:
    api = await api_client_from_kubeconfig(server.kubeconfig, cluster)
    informer = Informer(api, cluster, BY_NAME["Service"], store, FAST)
    return informer, asyncio.create_task(informer.run()), api


async def _stop_informer(task: asyncio.Task[None], api: client.ApiClient) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await api.close()  # type: ignore[no-untyped-call]


async def test_initial_list_then_changes_are_seen(member: BedCluster, admin: client.ApiClient, namespace: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    core, custom = client.CoreV1Api(admin), client.CustomObjectsApi(admin)
    ns = namespace
    for i in range(5):  # more than one page (page_size=2 below)
        await core.create_namespaced_service(ns, _service(f"svc-{i}"))
    await core.create_namespaced_secret(ns, {"metadata": {"name": "cert"}, "type": "kubernetes.io/tls",
                                             "data": {"tls.crt": "", "tls.key": ""}})
    await core.create_namespaced_secret(ns, {"metadata": {"name": "opaque"}, "data": {"password": "aHVudGVyMg=="}})
    await custom.create_namespaced_custom_object(MCS, "v1beta1", ns, "serviceexports", {
        "apiVersion": f"{MCS}/v1beta1", "kind": "ServiceExport", "metadata": {"name": "svc-0"}})
    await custom.create_namespaced_custom_object(GW, "v1", ns, "httproutes", {
        "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": "route"},
        "spec": {"parentRefs": [{"name": "gw"}]}})
    # The CRD accepts any operator string; mcgw's model does not: this Gateway must be left out, loudly.
    bad_gateway = {"apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "bad"},
                   "spec": {"gatewayClassName": "none", "listeners": [{
                       "name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {
                           "from": "Selector",
                           "selector": {"matchExpressions": [{"key": "k", "operator": "Bogus"}]}}}}]}}
    await custom.create_namespaced_custom_object(GW, "v1", ns, "gateways", bad_gateway)

    store = Store([member.name], SUPPORTED_KINDS)
    cluster = await MemberCluster.from_kubeconfig(member.name, store, member.kubeconfig, member.name,
                                                  settings=InformerSettings(page_size=2, backoff_cap=1.0))
    caplog.set_level(logging.WARNING, logger="mcgw.providers.kubernetes")
    await cluster.start()
    try:
        view = store[member.name]
        await eventually(lambda: view.synced and cluster.available, "the initial list of every kind")
        assert {f"svc-{i}" for i in range(5)} <= {k[2] for k in _keys(view, "Service", ns)}
        assert _keys(view, "Secret", ns) == {("Secret", ns, "cert")}, "only TLS secrets are watched"
        assert view.get(("ServiceExport", ns, "svc-0")) is not None
        assert view.get(("HTTPRoute", ns, "route")) is not None
        assert view.get(("Gateway", ns, "bad")) is None
        assert view.get(("Namespace", "", ns)) is not None
        bad = [r for r in caplog.records if getattr(r, "object", None) == f"{ns}/bad"]
        assert bad, "the invalid Gateway is reported"
        assert (bad[0].cluster, bad[0].kind) == (member.name, "Gateway")  # type: ignore[attr-defined]
        assert f"{ns}/bad" in bad[0].getMessage()
        assert member.name in bad[0].getMessage()

        # Watch: create, update, delete.
        await core.create_namespaced_service(ns, _service("late"))
        await eventually(lambda: view.get(("Service", ns, "late")) is not None, "a created Service")
        await core.patch_namespaced_service("svc-1", ns, {"metadata": {"labels": {"tier": "gold"}}})
        await eventually(lambda: _labels(view.get(("Service", ns, "svc-1"))).get("tier") == "gold",
                         "an updated Service")
        await custom.delete_namespaced_custom_object(GW, "v1", ns, "httproutes", "route")
        await eventually(lambda: view.get(("HTTPRoute", ns, "route")) is None, "a deleted HTTPRoute")

        # An invalid object that is fixed appears; broken again, it disappears (as a relist would show).
        operator = "/spec/listeners/0/allowedRoutes/namespaces/selector/matchExpressions/0/operator"
        await _json_patch(custom, ns, "bad", [{"op": "replace", "path": operator, "value": "Exists"}])
        await eventually(lambda: view.get(("Gateway", ns, "bad")) is not None, "a Gateway that became valid")
        await _json_patch(custom, ns, "bad", [{"op": "replace", "path": operator, "value": "Bogus"}])
        await eventually(lambda: view.get(("Gateway", ns, "bad")) is None, "a Gateway that became invalid")

        # Nothing above needed more than the initial list.
        assert all(i.stats.lists == 1 for i in cluster.informers.values())
        assert isinstance(view.get(("Secret", ns, "cert")), Secret)
    finally:
        await cluster.stop()
        # Other tests list this cluster: no invalid Gateway, and no export for the MCS controller to import.
        await custom.delete_namespaced_custom_object(GW, "v1", ns, "gateways", "bad")
        await custom.delete_namespaced_custom_object(MCS, "v1beta1", ns, "serviceexports", "svc-0")


async def _json_patch(custom: client.CustomObjectsApi, ns: str, name: str, patch: list[dict[str, Any]]) -> None:
    await custom.patch_namespaced_custom_object(GW, "v1", ns, "gateways", name, patch,
                                                _content_type="application/json-patch+json")


def _keys(view: Any, kind: str, ns: str) -> set[tuple[str, str, str]]:
    return {o.key for o in view.objects() if o.kind == kind and o.metadata.namespace == ns}


def _labels(obj: Any) -> dict[str, str]:
    return dict(obj.metadata.labels) if obj is not None else {}


async def test_restarted_apiserver_is_resumed_and_availability_follows(
        member: BedCluster, restartable: ApiServer, admin: client.ApiClient, namespace: str) -> None:
    core, ns = client.CoreV1Api(admin), namespace
    for name in ("keep", "doomed"):
        await core.create_namespaced_service(ns, _service(name))
    store = Store([member.name], SUPPORTED_KINDS)
    cluster = await MemberCluster.from_kubeconfig(member.name, store, restartable.kubeconfig, member.name,
                                                  settings=FAST, unavailable_after=2.0)
    await cluster.start()
    view = store[member.name]
    try:
        await eventually(lambda: view.synced and view.get(("Service", ns, "doomed")) is not None, "the initial list")
        assert view.available

        loop = asyncio.get_running_loop()
        stopping = loop.time()
        await asyncio.to_thread(restartable.stop)
        await eventually(lambda: not view.available, "the cluster to be marked Unavailable")
        down = loop.time() - stopping
        assert view.health().reason, "Unavailable says why"
        assert view.get(("Service", ns, "keep")) is not None, "last known objects are kept"

        # Changes while the informers' API server is down, through the cluster's other API server.
        await core.delete_namespaced_service("doomed", ns)
        await core.create_namespaced_service(ns, _service("born-while-down"))
        await core.patch_namespaced_service("keep", ns, {"metadata": {"labels": {"seen": "after"}}})

        await asyncio.to_thread(restartable.start)
        up = await eventually(lambda: view.available, "the cluster to be Available again")
        await eventually(lambda: view.get(("Service", ns, "doomed")) is None, "the deletion made while down")
        await eventually(lambda: view.get(("Service", ns, "born-while-down")) is not None, "the creation while down")
        await eventually(lambda: _labels(view.get(("Service", ns, "keep"))).get("seen") == "after",
                         "the update made while down")

        # And changes made through the restarted server itself.
        restarted = await api_client_from_kubeconfig(restartable.kubeconfig, member.name)
        try:
            await client.CoreV1Api(restarted).create_namespaced_service(ns, _service("after-restart"))
        finally:
            await restarted.close()  # type: ignore[no-untyped-call]
        await eventually(lambda: view.get(("Service", ns, "after-restart")) is not None, "a change after the restart")
        assert cluster.available
        assert view.available

        stats = {i.kind: i.stats for i in cluster.informers.values()}
        print(f"\n[informer] restart: Unavailable {down:.1f}s after SIGTERM (grace 2s), Available {up:.1f}s after the "
              f"server was ready; relists {sum(s.relists for s in stats.values())}, resumed watches "
              f"{sum(s.restarts for s in stats.values())}, errors {sum(s.errors for s in stats.values())} "
              f"over {len(stats)} kinds")
    finally:
        if not restartable.running():
            await asyncio.to_thread(restartable.start)
        await cluster.stop()


async def test_unreachable_at_startup_is_unavailable_at_once(member: BedCluster, restartable: ApiServer) -> None:
    await asyncio.to_thread(restartable.stop)
    store = Store([member.name], SUPPORTED_KINDS)
    # A grace period far longer than the test: only the "cannot connect at startup" rule can fire.
    cluster = await MemberCluster.from_kubeconfig(member.name, store, restartable.kubeconfig, member.name,
                                                  settings=FAST, unavailable_after=3600)
    await cluster.start()
    view = store[member.name]
    try:
        await eventually(lambda: not view.available, "an unreachable cluster to be marked Unavailable")
        assert not view.synced
        assert store.all_reachable_synced(), "the readiness gate does not wait for an unreachable cluster"
        assert "connect" in view.health().reason.lower()

        await asyncio.to_thread(restartable.start)
        await eventually(lambda: view.synced and view.available, "the cluster to sync once it is reachable")
    finally:
        if not restartable.running():
            await asyncio.to_thread(restartable.start)
        await cluster.stop()


async def test_deletions_during_a_disconnect_are_replayed_without_a_relist(
        member: BedCluster, etcd_served: ApiServer, admin: client.ApiClient, namespace: str) -> None:
    core, ns = client.CoreV1Api(admin), namespace
    for name in ("a", "b"):
        await core.create_namespaced_service(ns, _service(name))
    store = Store([member.name], ["Service"])
    informer, task, api = await _service_informer(etcd_served, member.name, store)
    view = store[member.name]
    try:
        await eventually(lambda: view.get(("Service", ns, "b")) is not None, "the initial list")
        await asyncio.to_thread(etcd_served.stop)
        await eventually(lambda: informer.failing_since is not None, "the informer to notice the disconnect")
        await core.delete_namespaced_service("a", ns)
        await core.create_namespaced_service(ns, _service("c"))
        await asyncio.to_thread(etcd_served.start)

        await eventually(lambda: view.get(("Service", ns, "a")) is None, "the deletion made during the disconnect")
        await eventually(lambda: view.get(("Service", ns, "c")) is not None, "the creation during the disconnect")
        assert informer.stats.expired == 0, "etcd replayed the missed events"
        assert informer.stats.relists == 0, "resumed from the last resourceVersion"
        assert informer.stats.restarts >= 1
    finally:
        if not etcd_served.running():
            await asyncio.to_thread(etcd_served.start)
        await _stop_informer(task, api)


async def test_compacted_history_gives_410_and_a_relist(
        member: BedCluster, etcd_served: ApiServer, admin: client.ApiClient, namespace: str) -> None:
    core, ns = client.CoreV1Api(admin), namespace
    for name in ("a", "b"):
        await core.create_namespaced_service(ns, _service(name))
    store = Store([member.name], ["Service"])
    informer, task, api = await _service_informer(etcd_served, member.name, store)
    view = store[member.name]
    try:
        await eventually(lambda: view.get(("Service", ns, "b")) is not None, "the initial list")
        held = int(informer.resource_version)
        await asyncio.to_thread(etcd_served.stop)
        await core.delete_namespaced_service("a", ns)
        await core.create_namespaced_service(ns, _service("c"))
        compacted = await asyncio.to_thread(member.compact_etcd)
        assert compacted > held + 1, "the informer's resourceVersion is now compacted away"
        await asyncio.to_thread(etcd_served.start)

        await eventually(lambda: informer.stats.relists >= 1, "a relist after 410")
        assert informer.stats.expired >= 1
        await eventually(lambda: view.get(("Service", ns, "a")) is None, "the deletion, seen by the relist")
        await eventually(lambda: view.get(("Service", ns, "c")) is not None, "the creation, seen by the relist")
        assert isinstance(view.get(("Service", ns, "b")), Service)
        # Watching again after the relist: a new change arrives as an event.
        await core.create_namespaced_service(ns, _service("d"))
        await eventually(lambda: view.get(("Service", ns, "d")) is not None, "a change after the relist")
        print(f"\n[informer] compaction at revision {compacted} (informer held {held}): "
              f"410 answers {informer.stats.expired}, relists {informer.stats.relists}")
    finally:
        if not etcd_served.running():
            await asyncio.to_thread(etcd_served.start)
        await _stop_informer(task, api)
