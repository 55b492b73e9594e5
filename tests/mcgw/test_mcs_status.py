"""/api/status shows the MCS controller's computation: export conditions, our imports' status (also those
not written anywhere, as in standalone mode, where MCS runs without writers), and which clusters are lost
and until when."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mcgw.admin import status_document
from mcgw.app.standalone import Standalone, StandaloneOptions
from mcgw.objects.model import parse_object
from mcgw.runtime.mcs_loop import McsController
from mcgw.runtime.reconciler import Reconciler
from mcgw.store import Store
from tests.mcgw.test_mcs import exported_by_east_and_west
from tests.mcgw.test_mcs_controller import filled_store, until
from xdsserver import SnapshotCache


async def _document(store: Store) -> dict[str, Any]:
    controller = McsController(store)
    await controller.reconcile()
    return status_document(store, Reconciler(store, SnapshotCache()), None, None, controller.result)


async def test_export_and_import_statuses_are_filled_in() -> None:
    store = filled_store()
    store.upsert("west", parse_object({
        "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
        "metadata": {"name": "cart", "namespace": "shop", "labels": {"app.kubernetes.io/managed-by":
                                                                    "mcs-controller.mcgw.io"}}}, "test"))
    store.upsert("central", parse_object({
        "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
        "metadata": {"name": "cart", "namespace": "shop"}}, "test"))
    document = await _document(store)
    east = document["clusters"]["east"]["objects"]
    assert [c["reason"] for c in east["ServiceExport"]["shop/cart"]["status"]["conditions"]] == [
        "Valid", "Exported", "NoConflicts"]
    assert east["ServiceImport"]["shop/cart"]["generation"] is None  # computed, not in the cluster (yet)
    assert east["ServiceImport"]["shop/cart"]["status"]["clusters"] == [{"cluster": "east"}, {"cluster": "west"}]
    west = document["clusters"]["west"]["objects"]
    assert west["ServiceImport"]["shop/cart"]["status"]["conditions"][0]["reason"] == "Ready"
    # Someone else's ServiceImport: mcgw computes nothing for it.
    assert document["clusters"]["central"]["objects"]["ServiceImport"]["shop/cart"]["status"] is None
    assert document["multiClusterServices"]["importedServices"] == [
        {"service": "shop/cart", "type": "ClusterSetIP", "clusters": ["east", "west"],
         "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
         # east: two ready, one terminating but serving (DRAINING), one not ready (not routed to, not counted).
         "endpoints": [{"port": 80, "clusters": [
             {"cluster": "east", "healthy": 2, "draining": 1, "lost": False},
             {"cluster": "west", "healthy": 1, "draining": 0, "lost": False}]}]}]


async def test_a_lost_cluster_is_listed_with_its_deadline() -> None:
    store = filled_store()
    store.set_available("west", False, "connection refused")
    mcs = (await _document(store))["multiClusterServices"]
    assert [(lost["cluster"], lost["endpoints"], lost["reason"], lost["exports"]) for lost in mcs["lostClusters"]] == [
        ("west", "kept", "connection refused", ["shop/cart"])]
    assert mcs["nextDeadline"] == mcs["lostClusters"][0]["until"]


async def test_without_a_result_nothing_is_claimed() -> None:
    store = filled_store()
    document = status_document(store, Reconciler(store, SnapshotCache()), None)
    assert document["clusters"]["east"]["objects"]["ServiceExport"]["shop/cart"]["status"] is None
    assert document["multiClusterServices"]["computed"] is False


async def test_standalone_mode_computes_imports_and_shows_them(tmp_path: Path) -> None:
    (tmp_path / "clusterset.yaml").write_text("clusters: [{name: east}, {name: west}]\n")
    for cluster, items in exported_by_east_and_west().items():
        if cluster == "central":
            continue
        (tmp_path / cluster).mkdir()
        (tmp_path / cluster / "objects.yaml").write_text(yaml.safe_dump_all(items))
    options = StandaloneOptions(tmp_path, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0", with_envoy=False)
    async with Standalone(options) as standalone:
        await until(lambda: standalone.mcs.result is not None, "the first MCS result")
        document = standalone.status()
    west = document["clusters"]["west"]["objects"]
    assert west["ServiceImport"]["shop/cart"]["status"]["clusters"] == [{"cluster": "east"}, {"cluster": "west"}]
    assert [c["reason"] for c in west["ServiceExport"]["shop/cart"]["status"]["conditions"]] == [
        "Valid", "Exported", "NoConflicts"]
