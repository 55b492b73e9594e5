"""The admin server over real HTTP: liveness, readiness that follows the initial sync, Prometheus
metrics, and the /api/status document built from a store and a reconciler fed with real manifests."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from mcgw.admin import AdminServer, ControllerMetrics, not_ready_reason, status_document
from mcgw.objects.model import SUPPORTED_KINDS, AnyObject, parse_object
from mcgw.providers.files.manifests import read_clusterset_dir
from mcgw.runtime.reconciler import Reconciler
from mcgw.store import Store
from xdsserver import LISTENER, NodeStatus, Rejection, SnapshotCache, StatusRegistry

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "translate"
GW = "gateway.networking.k8s.io"
MCS = "multicluster.x-k8s.io"

# Beyond the example: kinds that are listed without a computed status, and kinds that are not listed.
EXTRA_EAST = [
    {"apiVersion": f"{GW}/v1beta1", "kind": "ReferenceGrant", "metadata": {"name": "grant", "namespace": "shop"},
     "spec": {"from": [{"group": GW, "kind": "HTTPRoute", "namespace": "infra"}],
              "to": [{"group": "", "kind": "Service"}]}},
    {"apiVersion": f"{MCS}/v1alpha1", "kind": "ServiceExport", "metadata": {"name": "cart", "namespace": "shop"}},
    {"apiVersion": f"{MCS}/v1alpha1", "kind": "ServiceImport", "metadata": {"name": "cart", "namespace": "shop"},
     "spec": {"ports": [{"port": 80}]}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls", "namespace": "infra"}},
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
]


def _objects() -> dict[str, list[AnyObject]]:
    _, objects = read_clusterset_dir(EXAMPLE)
    objects["east"] += [parse_object(item, "test") for item in EXTRA_EAST]
    return objects


def _fill(store: Store, cluster: str, objects: Iterable[AnyObject]) -> None:
    items = list(objects)
    for kind in SUPPORTED_KINDS:
        store.replace_kind(cluster, kind, [o for o in items if o.kind == kind])


def _reconciler(store: Store) -> Reconciler:
    return Reconciler(store, SnapshotCache(), addresses=lambda cluster: {("infra", "public"): ["198.18.1.1"]}
                      if cluster == "east" else {})


Fetch = Callable[[str], Awaitable[tuple[int, str, str]]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _serve(server: AdminServer, http: aiohttp.ClientSession) -> Fetch:
    port = await server.start("127.0.0.1", 0)
    assert port > 0

    async def fetch(path: str) -> tuple[int, str, str]:
        async with http.get(f"http://127.0.0.1:{port}{path}") as response:
            return response.status, response.headers.get("Content-Type", ""), await response.text()

    return fetch


async def test_healthz_answers_while_not_ready_and_readyz_follows_ready(http: aiohttp.ClientSession) -> None:
    ready = False
    server = AdminServer(ready=lambda: ready, status=dict, registry=CollectorRegistry(),
                         not_ready_reason=lambda: "waiting for the initial list of west")
    fetch = await _serve(server, http)
    try:
        assert (await fetch("/healthz"))[0] == 200
        assert (await fetch("/healthz"))[2].strip() == "ok"
        status, _, body = await fetch("/readyz")
        assert status == 503
        assert json.loads(body) == {"ready": False, "reason": "waiting for the initial list of west"}
        ready = True
        status, _, body = await fetch("/readyz")
        assert (status, json.loads(body)) == (200, {"ready": True})
        ready = False
        assert (await fetch("/readyz"))[0] == 503
        assert (await fetch("/nowhere"))[0] == 404
    finally:
        await server.stop()


async def test_stop_closes_the_port(http: aiohttp.ClientSession) -> None:
    server = AdminServer(ready=lambda: True, status=dict, registry=CollectorRegistry())
    fetch = await _serve(server, http)
    assert (await fetch("/healthz"))[0] == 200
    await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch("/healthz")


async def test_readiness_and_status_follow_the_initial_sync(http: aiohttp.ClientSession) -> None:
    objects = _objects()
    store = Store(objects, SUPPORTED_KINDS)
    reconciler = _reconciler(store)
    server = AdminServer(ready=reconciler.ready.is_set, status=lambda: status_document(store, reconciler, None),
                         registry=CollectorRegistry(), not_ready_reason=lambda: not_ready_reason(store, reconciler))
    fetch = await _serve(server, http)
    try:
        _fill(store, "east", objects["east"])
        await reconciler.reconcile()
        status, _, body = await fetch("/readyz")
        assert status == 503
        assert json.loads(body)["reason"] == "waiting for the initial list of west"
        document = json.loads((await fetch("/api/status"))[2])
        assert document["ready"] is False
        assert document["clusters"]["west"]["synced"] is False
        assert document["clusters"]["east"]["lastTranslation"] is None  # nothing translated before the gate

        _fill(store, "west", objects["west"])
        await reconciler.reconcile()
        assert (await fetch("/readyz"))[0] == 200
        document = json.loads((await fetch("/api/status"))[2])
        assert document["ready"] is True
        assert document["clusters"]["west"]["synced"] is True
    finally:
        await server.stop()


async def test_status_document_lists_gateway_api_and_mcs_objects_with_computed_status(
        http: aiohttp.ClientSession) -> None:
    objects = _objects()
    store = Store(objects, SUPPORTED_KINDS)
    reconciler = _reconciler(store)
    for cluster, items in objects.items():
        _fill(store, cluster, items)
    await reconciler.reconcile()
    server = AdminServer(ready=reconciler.ready.is_set, registry=CollectorRegistry(),
                         status=lambda: status_document(store, reconciler, None, {"mode": "test"}))
    fetch = await _serve(server, http)
    try:
        status, content_type, body = await fetch("/api/status")
    finally:
        await server.stop()
    assert status == 200
    assert content_type.startswith("application/json")
    document = json.loads(body)
    assert document["mode"] == "test"
    east = document["clusters"]["east"]
    assert (east["available"], east["synced"], east["reason"]) == (True, True, "")
    assert east["revision"] == store["east"].revision
    assert east["lastTranslation"]["revision"] == store["east"].revision
    assert east["lastTranslation"]["gateways"] == ["infra/public"]
    assert east["lastTranslation"]["errors"] == []
    assert east["since"].endswith("Z")

    listed = east["objects"]
    # No Secrets, Services, EndpointSlices or Namespaces.
    assert sorted(listed) == ["BackendTLSPolicy", "GRPCRoute", "Gateway", "GatewayClass", "HTTPRoute", "ReferenceGrant",
                              "ServiceExport", "ServiceImport", "TCPRoute", "TLSRoute",
                              "UDPRoute"]  # no Secrets, Services, EndpointSlices or Namespaces
    gateway = listed["Gateway"]["infra/public"]["status"]
    assert gateway["addresses"] == [{"type": "IPAddress", "value": "198.18.1.1"}]
    assert {c["type"]: c["status"] for c in gateway["conditions"]} == {"Accepted": "True", "Programmed": "True",
                                                                      "ResolvedRefs": "True"}
    assert gateway["listeners"][0]["attachedRoutes"] == 1
    assert listed["GatewayClass"]["mcgw"]["status"]["conditions"][0]["reason"] == "Accepted"
    route = listed["HTTPRoute"]["shop/shop"]
    assert route["generation"] == 1
    (parent,) = route["status"]["parents"]
    assert parent["parentRef"]["name"] == "public"
    resolved = next(c for c in parent["conditions"] if c["type"] == "ResolvedRefs")
    assert resolved["status"] == "False"  # the example's rule names a missing Service
    assert listed["ReferenceGrant"] == {"shop/grant": {"generation": 0, "status": None}}
    assert listed["ServiceExport"] == {"shop/cart": {"generation": 0, "status": None}}
    assert listed["ServiceImport"] == {"shop/cart": {"generation": 0, "status": None}}
    assert document["clusters"]["west"]["objects"]["Gateway"]["infra/public"]["status"]["addresses"] == []
    assert document["nodes"] == []
    assert document["rejections"] == []


async def test_unavailable_cluster_keeps_its_objects_and_says_why() -> None:
    objects = _objects()
    store = Store(objects, SUPPORTED_KINDS)
    reconciler = _reconciler(store)
    for cluster, items in objects.items():
        _fill(store, cluster, items)
    await reconciler.reconcile()
    store.set_available("west", False, "watch failed: connection refused")
    await reconciler.reconcile()
    west = status_document(store, reconciler, None)["clusters"]["west"]
    assert (west["available"], west["reason"]) == (False, "watch failed: connection refused")
    assert "infra/public" in west["objects"]["Gateway"]


async def test_status_document_is_deterministic_and_rejects_clashing_extra() -> None:
    objects = _objects()
    store = Store(objects, SUPPORTED_KINDS)
    reconciler = _reconciler(store)
    for cluster, items in objects.items():
        _fill(store, cluster, items)
    await reconciler.reconcile()
    first = json.dumps(status_document(store, reconciler, None))
    assert json.dumps(status_document(store, reconciler, None)) == first
    assert list(json.loads(first)["clusters"]) == ["east", "west"]
    with pytest.raises(ValueError, match="clusters"):
        status_document(store, reconciler, None, {"clusters": {}})


async def test_status_document_lists_envoy_nodes_with_ack_and_nack_state() -> None:
    store = Store(["east"], SUPPORTED_KINDS)
    _fill(store, "east", [])
    reconciler = _reconciler(store)
    await reconciler.reconcile()
    registry = StatusRegistry()
    node = NodeStatus("infra/public/pod-1", "east", ("east", "infra/public"), "delta", "ipv4:127.0.0.1:5555")
    listener = node.of_type(LISTENER)
    listener.sent_version, listener.acked_version = "v2", "v1"
    listener.nacked_version, listener.nack_message = "v2", "duplicate listener name"
    listener.last_push, listener.pushes = time.time(), 2
    registry.open(1, node)
    registry.reject(Rejection(time.time(), node.node_id, node.group, LISTENER, "v2", "duplicate listener name"))

    document = status_document(store, reconciler, registry)
    (entry,) = document["nodes"]
    assert (entry["nodeId"], entry["cluster"], entry["mode"]) == ("infra/public/pod-1", "east", "delta")
    assert entry["group"] == {"cluster": "east", "gateway": "infra/public"}
    state = entry["types"]["Listener"]
    assert (state["ackedVersion"], state["nackedVersion"]) == ("v1", "v2")
    assert state["lastNackError"] == "duplicate listener name"
    (rejection,) = document["rejections"]
    assert (rejection["type"], rejection["version"], rejection["nodeId"]) == ("Listener", "v2", "infra/public/pod-1")

    registry.close(1)
    assert status_document(store, reconciler, registry)["nodes"] == []


def _sample(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, rest = series.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if metric == name and got == wanted:
            return float(value)
    return None


async def test_metrics_report_cluster_health_objects_and_reconciles(http: aiohttp.ClientSession) -> None:
    objects = _objects()
    store = Store(objects, SUPPORTED_KINDS)
    reconciler = _reconciler(store)
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    for cluster, items in objects.items():
        _fill(store, cluster, items)
    await reconciler.reconcile()
    server = AdminServer(ready=reconciler.ready.is_set, status=dict, registry=registry,
                         before_scrape=lambda: metrics.refresh(store, reconciler))
    fetch = await _serve(server, http)
    try:
        status, content_type, text = await fetch("/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        assert _sample(text, "mcgw_ready") == 1
        assert _sample(text, "mcgw_cluster_available", cluster="west") == 1
        assert _sample(text, "mcgw_cluster_synced", cluster="east") == 1
        assert _sample(text, "mcgw_cluster_objects", cluster="east", kind="HTTPRoute") == 1
        assert _sample(text, "mcgw_cluster_objects", cluster="east", kind="EndpointSlice") == 1
        assert _sample(text, "mcgw_reconciles_total", cluster="east") == 1
        assert _sample(text, "mcgw_reconcile_seconds_count", cluster="west") == 1

        # A scrape without a new translation counts nothing twice; a lost cluster reads 0.
        store.set_available("west", False, "connection refused")
        store.replace_kind("east", "HTTPRoute", [])
        text = (await fetch("/metrics"))[2]
        assert _sample(text, "mcgw_reconciles_total", cluster="east") == 1
        assert _sample(text, "mcgw_cluster_available", cluster="west") == 0
        assert _sample(text, "mcgw_cluster_objects", cluster="east", kind="HTTPRoute") is None

        await reconciler.reconcile()
        text = (await fetch("/metrics"))[2]
        assert _sample(text, "mcgw_reconciles_total", cluster="east") == 2
    finally:
        await server.stop()


async def test_metrics_default_to_the_global_registry(http: aiohttp.ClientSession) -> None:
    server = AdminServer(ready=lambda: True, status=dict)
    fetch = await _serve(server, http)
    try:
        status, _, text = await fetch("/metrics")
    finally:
        await server.stop()
    assert status == 200
    assert _sample(text, "python_gc_collections_total", generation="0") is not None



async def test_status_document_shows_a_bounded_rejection_summary_without_key_material() -> None:
    store = Store(["east"], SUPPORTED_KINDS)
    _fill(store, "east", [])
    reconciler = _reconciler(store)
    await reconciler.reconcile()
    registry = StatusRegistry()
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC" + "A" * 3000 + "\n-----END PRIVATE KEY-----"
    message = f"Error adding listener l1: {{ tls: {{ private_key: {{ inline_string: '{pem}' }} }} }}" + " x" * 50_000
    for version in ("v2", "v3", "v4"):
        registry.reject(Rejection(time.time(), "infra/public/pod-1", ("east", "infra/public"), LISTENER, version,
                                  message, nonce=f"n-{version}", cluster="east", resource_names=("l1",),
                                  resource_count=1))

    document = status_document(store, reconciler, registry)
    (node,) = document["rejectingNodes"]
    assert (node["cluster"], node["nodeId"], node["count"], node["byType"]) == (
        "east", "infra/public/pod-1", 3, {"Listener": 3})
    last = node["last"]
    assert (last["type"], last["version"], last["nonce"], last["resources"]) == ("Listener", "v4", "n-v4", ["l1"])
    assert last["message"].startswith("Error adding listener l1")
    text = json.dumps(document)
    for fragment in ("BEGIN", "MIIE", "AAAA"):
        assert fragment not in text
    assert all(len(r["message"]) <= 256 for r in document["rejections"])
    assert len(text) < 10_000
