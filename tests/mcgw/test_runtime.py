"""The reconcile loop: readiness gate, publishing per gateway, debounce, and what a lost cluster keeps."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mcgw.objects.model import SUPPORTED_KINDS, AnyObject, Gateway
from mcgw.providers.files.manifests import read_clusterset_dir
from mcgw.runtime.pipeline import ClusterOutput, ClusterTranslator
from mcgw.runtime.reconciler import ReconcileOptions, Reconciler, node_group
from mcgw.store import Store
from xdsserver import LISTENER, SnapshotCache

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "translate"


def _objects() -> dict[str, list[AnyObject]]:
    _, objects = read_clusterset_dir(EXAMPLE)
    return objects


def _fill(store: Store, cluster: str, objects: Iterable[AnyObject]) -> None:
    items = list(objects)
    for kind in SUPPORTED_KINDS:
        store.replace_kind(cluster, kind, [o for o in items if o.kind == kind])


def _gateway_key(objects: list[AnyObject]) -> tuple[str, str]:
    gateway = next(o for o in objects if isinstance(o, Gateway))
    return gateway.metadata.namespace, gateway.metadata.name


async def test_nothing_is_published_until_every_reachable_cluster_has_listed() -> None:
    objects = _objects()
    store, cache = Store(objects, SUPPORTED_KINDS), SnapshotCache()
    reconciler = Reconciler(store, cache)
    _fill(store, "east", objects["east"])
    await reconciler.reconcile()
    assert cache.groups() == []
    assert not reconciler.ready.is_set()

    _fill(store, "west", objects["west"])
    await reconciler.reconcile()
    assert reconciler.ready.is_set()
    assert node_group("east", _gateway_key(objects["east"])) in cache.groups()
    assert node_group("west", _gateway_key(objects["west"])) in cache.groups()


async def test_a_cluster_unreachable_since_start_does_not_hold_the_others_back() -> None:
    objects = _objects()
    store, cache = Store(objects, SUPPORTED_KINDS), SnapshotCache()
    reconciler = Reconciler(store, cache)
    _fill(store, "east", objects["east"])
    store.set_available("west", False, "connection refused")
    await reconciler.reconcile()
    assert reconciler.ready.is_set()
    assert [g[0] for g in cache.groups()] == ["east"]


async def test_a_cluster_that_drops_out_keeps_serving_its_last_known_config() -> None:
    objects = _objects()
    store, cache = Store(objects, SUPPORTED_KINDS), SnapshotCache()
    reconciler = Reconciler(store, cache)
    for cluster, items in objects.items():
        _fill(store, cluster, items)
    await reconciler.reconcile()
    group = node_group("west", _gateway_key(objects["west"]))
    before = cache.get(group)
    store.set_available("west", False, "watch failed: connection refused")
    await reconciler.reconcile()
    assert cache.get(group) is not None
    assert cache.get(group) == before
    assert store["west"].objects()
    assert not store["west"].available


async def test_a_deleted_gateway_is_withdrawn_and_others_stay() -> None:
    objects = _objects()
    store, cache = Store(objects, SUPPORTED_KINDS), SnapshotCache()
    reconciler = Reconciler(store, cache)
    for cluster, items in objects.items():
        _fill(store, cluster, items)
    await reconciler.reconcile()
    east = node_group("east", _gateway_key(objects["east"]))
    store.delete("east", ("Gateway", *_gateway_key(objects["east"])))
    await reconciler.reconcile()
    assert east not in cache.groups()
    assert node_group("west", _gateway_key(objects["west"])) in cache.groups()


async def test_changes_are_debounced_into_one_translation() -> None:
    objects = _objects()
    store, cache = Store(objects, SUPPORTED_KINDS), SnapshotCache()
    seen: list[str] = []

    async def sink(cluster: str, output: ClusterOutput) -> None:
        seen.append(cluster)

    reconciler = Reconciler(store, cache, ReconcileOptions(debounce=0.2, debounce_cap=5.0), sinks=[sink])
    for cluster, items in objects.items():
        _fill(store, cluster, items)
    task = asyncio.create_task(reconciler.run())
    try:
        await asyncio.wait_for(reconciler.ready.wait(), 10)
        passes = reconciler.reconciles
        gateway = next(o for o in objects["east"] if isinstance(o, Gateway))
        for port in range(9000, 9010):  # ten quick edits of one listener port
            listener = replace(gateway.spec.listeners[0], port=port)
            store.upsert("east", replace(gateway, spec=replace(gateway.spec, listeners=(listener,))))
            await asyncio.sleep(0.01)
        for _ in range(100):
            if reconciler.reconciles > passes:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert reconciler.reconciles == passes + 1
        snapshot = cache.get(node_group("east", _gateway_key(objects["east"])))
        assert snapshot is not None
        assert [name for name in snapshot.of_type(LISTENER)] == ["infra/public/9009"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await reconciler.aclose()


async def test_translation_passes_run_with_the_collector_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = _objects()
    store, cache = Store(objects, SUPPORTED_KINDS), SnapshotCache()
    collector_enabled_while_translating: list[bool] = []
    translate = ClusterTranslator.translate

    def recording(self: ClusterTranslator, *args: Any, **kwargs: Any) -> ClusterOutput:
        collector_enabled_while_translating.append(gc.isenabled())
        return translate(self, *args, **kwargs)

    monkeypatch.setattr(ClusterTranslator, "translate", recording)
    reconciler = Reconciler(store, cache, ReconcileOptions(debounce=0.01))
    for cluster, items in objects.items():
        _fill(store, cluster, items)
    gc.enable()
    task = asyncio.create_task(reconciler.run())
    try:
        await asyncio.wait_for(reconciler.ready.wait(), 10)
        assert collector_enabled_while_translating == [False] * len(objects)
        assert gc.isenabled()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await reconciler.aclose()
