"""The MCS controller loop: readiness gate, lost-cluster deadlines without any store event, unavailable
clusters skipped, failed writes retried, the view's subscribers, the lost-cluster and ready-endpoint metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry

from mcgw.objects.model import SUPPORTED_KINDS, AnyObject
from mcgw.providers.kubernetes.mcs_writer import WriteReport
from mcgw.runtime.mcs_loop import McsController
from mcgw.runtime.mcs_metrics import McsMetrics
from mcgw.semantics.mcs import ClusterMcs, McsResult
from mcgw.store import Store
from tests.mcgw.test_mcs import endpoint_slice, exported_by_east_and_west, not_ready, parsed, ready


class RecordingWriter:
    def __init__(self, failures: int = 0, leading: bool = True) -> None:
        self.writes: list[ClusterMcs] = []
        self.forgotten = 0
        self.failures = failures
        self.leading = leading

    async def write(self, desired: ClusterMcs, observed: Iterable[AnyObject] = ()) -> WriteReport:
        if not self.leading:
            return WriteReport(deferred=True)
        self.writes.append(desired)
        if self.failures:
            self.failures -= 1
            return WriteReport(failed=1)
        return WriteReport()

    def forget(self) -> None:
        self.forgotten += 1


def fill(store: Store, cluster: str, items: list[dict[str, Any]]) -> None:
    objects = parsed({cluster: items})[cluster]
    for kind in SUPPORTED_KINDS:
        store.replace_kind(cluster, kind, [o for o in objects if o.kind == kind])


def filled_store() -> Store:
    clusters = exported_by_east_and_west()
    store = Store(clusters, SUPPORTED_KINDS)
    for name, items in clusters.items():
        fill(store, name, items)
    return store


async def until(predicate: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(controller: McsController) -> AsyncIterator[McsController]:
    task = asyncio.create_task(controller.run())
    try:
        yield controller
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await controller.aclose()


async def test_nothing_is_computed_or_written_before_every_reachable_cluster_has_listed() -> None:
    clusters = exported_by_east_and_west()
    store = Store(clusters, SUPPORTED_KINDS)
    writers = {name: RecordingWriter() for name in clusters}
    controller = McsController(store, writers)
    fill(store, "east", clusters["east"])
    fill(store, "west", clusters["west"])
    assert await controller.reconcile() is None
    await controller.idle()
    assert all(w.writes == [] for w in writers.values())

    fill(store, "central", clusters["central"])
    result = await controller.reconcile()
    await controller.idle()
    assert result is not None
    assert ("shop", "cart") in writers["central"].writes[-1].imports


async def test_an_unavailable_cluster_is_not_written_and_is_checked_afresh_when_back() -> None:
    store = filled_store()
    writers = {name: RecordingWriter() for name in store.clusters}
    controller = McsController(store, writers)
    store.set_available("central", False, "connection refused")
    await controller.reconcile()
    await controller.idle()
    assert writers["central"].writes == []
    assert writers["central"].forgotten == 1
    assert len(writers["east"].writes) == 1

    store.set_available("central", True)
    await controller.reconcile()
    await controller.idle()
    assert len(writers["central"].writes) == 1


async def test_a_lost_clusters_endpoints_are_withdrawn_at_the_deadline_without_any_store_event() -> None:
    store = filled_store()
    controller = McsController(store, {}, lost_cluster_ttl=0.5, debounce=0.01, debounce_cap=0.05)
    async with running(controller):
        await until(lambda: controller.result is not None, "the first result")
        store.set_available("west", False, "connection refused")
        revision = store["west"].revision

        def lost_state() -> tuple[bool, ...]:
            return tuple(lost.withdrawn for lost in controller.result.lost) if controller.result else ()

        await until(lambda: lost_state() == (False,), "west to be lost with its endpoints kept")
        cart = controller.view.services[("shop", "cart")]
        assert cart.clusters == ("east", "west")
        assert cart.endpoints_for(80)[1].lost_since is not None

        await until(lambda: lost_state() == (True,), "west's endpoints to be withdrawn")
        assert controller.view.services[("shop", "cart")].clusters == ("east",)
        assert store["west"].revision == revision  # nothing but the deadline woke the controller


async def test_a_failed_write_is_retried_without_a_store_event() -> None:
    store = filled_store()
    writers = {name: RecordingWriter(failures=1 if name == "east" else 0) for name in store.clusters}
    controller = McsController(store, writers, debounce=0.01, debounce_cap=0.05)
    async with running(controller):
        await until(lambda: len(writers["east"].writes) >= 2, "the failed write to be retried")
    assert len(writers["west"].writes) == 1


async def test_a_cluster_is_written_once_this_replica_leads_it_without_a_store_event() -> None:
    store = filled_store()
    writers = {name: RecordingWriter(leading=name != "west") for name in store.clusters}
    controller = McsController(store, writers, debounce=0.01, debounce_cap=0.05)
    async with running(controller):
        await until(lambda: len(writers["east"].writes) == 1, "the first write into east")
        assert writers["west"].writes == []
        revision = store["west"].revision
        writers["west"].leading = True  # the Lease is won: no object changed
        await until(lambda: len(writers["west"].writes) == 1, "the write into west once leading")
        assert store["west"].revision == revision


async def test_subscribers_hear_of_view_changes_only() -> None:
    store = filled_store()
    controller = McsController(store)
    heard: list[McsResult] = []
    controller.subscribe(heard.append)
    await controller.reconcile()
    await controller.reconcile()
    assert len(heard) == 1
    fill(store, "west", [*exported_by_east_and_west()["west"][:3],
                         endpoint_slice("cart-xyz", endpoints=[ready("10.1.0.1"), ready("10.1.0.2")])])
    await controller.reconcile()
    assert len(heard) == 2
    assert len(heard[-1].view.services[("shop", "cart")].endpoints_for(80)[1].endpoints) == 2


async def test_lost_clusters_are_visible_in_the_metrics() -> None:
    store = filled_store()
    registry = CollectorRegistry()
    controller = McsController(store, metrics=McsMetrics(registry))
    store.set_available("west", False, "connection refused")
    await controller.reconcile()
    assert registry.get_sample_value("mcgw_mcs_lost_clusters", {"state": "kept"}) == 1
    assert registry.get_sample_value("mcgw_mcs_lost_cluster_exports", {"cluster": "west", "state": "kept"}) == 1
    assert registry.get_sample_value("mcgw_mcs_imported_services") == 1
    store.set_available("west", True)
    await controller.reconcile()
    assert registry.get_sample_value("mcgw_mcs_lost_clusters", {"state": "kept"}) == 0
    assert registry.get_sample_value("mcgw_mcs_lost_cluster_exports", {"cluster": "west", "state": "kept"}) is None


async def test_ready_endpoints_per_source_cluster_are_visible_in_the_metrics() -> None:
    store = filled_store()
    registry = CollectorRegistry()
    controller = McsController(store, metrics=McsMetrics(registry))

    def ready_endpoints(source: str) -> float | None:
        return registry.get_sample_value("mcgw_mcs_ready_endpoints", {"service": "shop/cart", "source_cluster": source})

    await controller.reconcile()
    assert (ready_endpoints("east"), ready_endpoints("west")) == (2, 1)  # east's draining and not-ready: not counted
    store.set_available("west", False, "connection refused")
    await controller.reconcile()
    assert ready_endpoints("west") == 1  # kept within the lost-cluster TTL, so still served
    store.set_available("west", True)
    west = exported_by_east_and_west()["west"]
    fill(store, "west", [*west[:3], endpoint_slice("cart-xyz", endpoints=[not_ready("10.1.0.1")])])
    await controller.reconcile()
    assert (ready_endpoints("east"), ready_endpoints("west")) == (2, 0)
    fill(store, "west", west[:2])  # no ServiceExport: west no longer a source
    await controller.reconcile()
    assert (ready_endpoints("east"), ready_endpoints("west")) == (2, None)
