"""The reconcile loop: store changes in, snapshots and statuses out.

Events are debounced (quiet for ``debounce`` seconds, but never held longer than ``debounce_cap``
after the first one), then every changed cluster is translated and its gateways' snapshots are
published. Nothing is published until every reachable cluster has finished its initial list, so an
Envoy that reconnects to a restarted controller never receives an empty or partial configuration.

Translation is CPU-bound; it runs in a worker thread on immutable inputs so the xDS streams on the
event loop keep moving. Publishing happens back on the loop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from mcgw.objects.clusterset import ClusterProperties
from mcgw.objects.model import AnyObject
from mcgw.runtime.debounce import settle
from mcgw.runtime.incremental import McsInput
from mcgw.runtime.latest import LatestWins
from mcgw.runtime.pipeline import ClusterOutput, ClusterTranslator
from mcgw.semantics.gateway.dataplane import Dataplane
from mcgw.semantics.mcs import DEFAULT_LOST_CLUSTER_TTL, EMPTY_VIEW, ClusterSetView, McsCache, compute_mcs
from mcgw.store import Store
from mcgw.support import collector
from xdsserver import InconsistentSnapshotError, NodeGroup, Snapshot, SnapshotCache

log = logging.getLogger(__name__)

GatewayKey = tuple[str, str]  # (namespace, name)
AddressesFor = Callable[[str], Mapping[GatewayKey, list[str]]]
BindAddressesFor = Callable[[str], Mapping[GatewayKey, str]]
DataplaneFor = Callable[[str], Mapping[GatewayKey, Dataplane]]
OutputSink = Callable[[str, ClusterOutput], Awaitable[None]]


@dataclass(frozen=True)
class ReconcileOptions:
    debounce: float = 0.1
    debounce_cap: float = 1.0


@dataclass
class ClusterReport:
    """What the last reconcile of one cluster did, for /api/status and the logs."""

    revision: int = -1
    translated_at: float = 0.0
    seconds: float = 0.0
    gateways: tuple[GatewayKey, ...] = ()
    errors: list[str] = field(default_factory=list)


def node_group(cluster: str, gateway: GatewayKey) -> NodeGroup:
    """The xDS node group of one gateway: ``(member cluster, "<namespace>/<gateway>")``."""
    return cluster, f"{gateway[0]}/{gateway[1]}"


class Reconciler:
    """Drives translation from the store into the snapshot cache; one instance per controller."""

    def __init__(self, store: Store, cache: SnapshotCache, options: ReconcileOptions | None = None, *,
                 addresses: AddressesFor | None = None, bind_addresses: BindAddressesFor | None = None,
                 dataplane: DataplaneFor | None = None,
                 sinks: list[OutputSink] | None = None,
                 on_report: Callable[[str, ClusterReport], None] | None = None,
                 clusters: Mapping[str, ClusterProperties] | None = None,
                 lost_cluster_ttl: float = DEFAULT_LOST_CLUSTER_TTL) -> None:
        self.store = store
        self.cache = cache
        self.options = options or ReconcileOptions()
        self.addresses = addresses
        self.bind_addresses = bind_addresses
        self.dataplane = dataplane
        self.sinks = list(sinks or [])
        self.on_report = on_report
        # The ClusterSet's imports, computed from every cluster's exports on each pass: ServiceImport
        # backends of every cluster's gateways read them, so a change re-translates every cluster.
        self.clusters = dict(clusters) if clusters is not None else {name: ClusterProperties(name=name)
                                                                       for name in store.clusters}
        self.lost_cluster_ttl = lost_cluster_ttl
        self.view: ClusterSetView = EMPTY_VIEW
        # Capacity decisions per member cluster (mcgw.runtime.capacity): shares sent past a first level.
        self.overflow: dict[str, Mapping[tuple[str, str, int], float]] = {}
        self._mcs_cache = McsCache()  # only used by one computation at a time (reconcile passes are serial)
        self._deadline: asyncio.TimerHandle | None = None
        self.ready = asyncio.Event()
        self.outputs: dict[str, ClusterOutput] = {}
        self.reports: dict[str, ClusterReport] = {name: ClusterReport() for name in store.clusters}
        self.reconciles = 0
        self._translators = {name: ClusterTranslator(name) for name in store.clusters}
        self._published: dict[str, set[GatewayKey]] = {name: set() for name in store.clusters}
        self._dirty: set[str] = set(store.clusters)
        self._wake = asyncio.Event()
        # Per sink and cluster: one call at a time, and only the latest output waits.
        self._to_sinks: LatestWins[tuple[OutputSink, str], ClusterOutput] = LatestWins(self._hand_to_sink)
        store.subscribe(self.mark_dirty)

    def set_overflow(self, cluster: str, overflow: Mapping[tuple[str, str, int], float]) -> None:
        """New capacity decisions for ``cluster``'s gateways: translate it again if they differ."""
        if dict(overflow) != dict(self.overflow.get(cluster, {})):
            self.overflow[cluster] = dict(overflow)
            self.mark_dirty(cluster)

    def mark_dirty(self, cluster: str) -> None:
        """Something about ``cluster`` changed (objects, health, or its gateways' addresses)."""
        self._dirty.add(cluster)
        self._wake.set()

    async def run(self) -> None:
        """Reconcile forever: wait for a change, debounce, translate, publish."""
        self._wake.set()  # the first pass runs as soon as the gate allows
        while True:
            await self._wake.wait()
            await settle(self._wake, self.options.debounce, self.options.debounce_cap)
            await self.reconcile()

    async def reconcile(self) -> None:
        """Translate every changed, synced cluster and publish its gateways' snapshots."""
        if not self.store.all_reachable_synced():
            waiting = sorted(c.name for c in self.store.clusters.values() if c.available and not c.synced)
            log.info("waiting for the initial list of %s before publishing anything", ", ".join(waiting))
            return
        await self._update_view()
        mcs = McsInput(self.view.services, self.clusters)
        for cluster in sorted(self._dirty):
            member = self.store[cluster]
            if not member.synced:
                continue  # unreachable since start: nothing known, nothing to publish
            self._dirty.discard(cluster)
            objects, revision = member.objects(), member.revision
            addresses = self.addresses(cluster) if self.addresses else None
            binds = self.bind_addresses(cluster) if self.bind_addresses else None
            observed = self.dataplane(cluster) if self.dataplane else None
            started = time.perf_counter()
            try:
                output, snapshots = await asyncio.to_thread(
                    self._translate, cluster, objects, addresses, binds,
                    mcs._replace(overflow=self.overflow.get(cluster, {})), observed)
            except Exception as error:  # a translator bug must not stop the controller
                log.exception("translating cluster %s failed; its gateways keep their last configuration",
                              cluster, extra={"cluster": cluster})
                self.reports[cluster].errors = [f"translation failed: {error}"]
                continue
            self._publish(cluster, output, snapshots)
            self.reports[cluster] = ClusterReport(revision, time.time(), time.perf_counter() - started,
                                                  tuple(sorted(snapshots)), [])
            if self.on_report is not None:
                self.on_report(cluster, self.reports[cluster])
            for sink in self.sinks:
                self._to_sinks.submit((sink, cluster), output)
        self.reconciles += 1
        if not self.ready.is_set():
            log.info("initial sync complete; serving configuration")
            self.ready.set()
            # The initial objects live as long as the process: move them out of the collector's reach, so a
            # full collection triggered by a later translation does not scan hundreds of thousands of them
            # (0.4-1 s at 1,000 routes per cluster on a 2-core machine; benchmarks/translate_scale.py).
            gc.freeze()

    async def _update_view(self) -> None:
        """Recompute the ClusterSet's imports (in the worker thread, reusing every service whose objects did
        not change); if they changed, every cluster is translated again."""
        members = self.store.clusters.values()
        result = await asyncio.to_thread(
            compute_mcs, {c.name: c.objects() for c in members}, {c.name: c.health() for c in members},
            time.time(), self.lost_cluster_ttl, self._mcs_cache)
        if result.view != self.view:
            self.view = result.view
            self._dirty |= set(self.store.clusters)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if result.next_deadline is not None:  # a lost cluster's endpoints expire then: look again
            delay = max(0.0, result.next_deadline - time.time())
            self._deadline = asyncio.get_running_loop().call_later(delay, self._wake.set)

    def _translate(self, cluster: str, objects: tuple[AnyObject, ...],
                   addresses: Mapping[GatewayKey, list[str]] | None, binds: Mapping[GatewayKey, str] | None,
                   mcs: McsInput,
                   observed: Mapping[GatewayKey, Dataplane] | None = None) -> tuple[ClusterOutput,
                                                                                dict[GatewayKey, Snapshot]]:
        """Worker-thread half: pure translation and serialisation, no shared state written."""
        with collector.paused():  # the pass allocates only what it returns: nothing to collect
            output = self._translators[cluster].translate(objects, addresses, binds, mcs, observed)
            snapshots: dict[GatewayKey, Snapshot] = {}
            for gateway in output.resources:
                previous = self.cache.get(node_group(cluster, gateway))
                try:  # from the bytes serialised during translation; unchanged resources reuse previous ones
                    snapshots[gateway] = output.snapshot(gateway, previous)
                except InconsistentSnapshotError:
                    log.exception("inconsistent snapshot for gateway %s/%s in cluster %s; not published",
                                  *gateway, cluster, extra={"cluster": cluster, "kind": "Gateway",
                                                            "object": f"{gateway[0]}/{gateway[1]}"})
            return output, snapshots

    def _publish(self, cluster: str, output: ClusterOutput, snapshots: Mapping[GatewayKey, Snapshot]) -> None:
        self.outputs[cluster] = output
        for gateway, snapshot in snapshots.items():
            self.cache.set_snapshot(node_group(cluster, gateway), snapshot)
        # A gateway that no longer exists stops being served to new connections; connected Envoys keep
        # their last configuration until they are shut down (an empty config would drop live traffic).
        for gone in self._published[cluster] - set(output.resources):
            self.cache.remove(node_group(cluster, gone))
            log.info("gateway %s/%s in cluster %s is gone; its snapshot is withdrawn", *gone, cluster,
                     extra={"cluster": cluster, "kind": "Gateway", "object": f"{gone[0]}/{gone[1]}"})
        self._published[cluster] = set(output.resources)

    def resend(self, cluster: str, sink: OutputSink | None = None) -> None:
        """Hand the latest output of ``cluster`` to every sink (or to ``sink`` alone) again: this replica just
        became leader, or a sink wants to try again what failed."""
        output = self.outputs.get(cluster)
        if output is not None:
            for each in self.sinks if sink is None else [sink]:
                self._to_sinks.submit((each, cluster), output)

    @staticmethod
    async def _hand_to_sink(key: tuple[OutputSink, str], output: ClusterOutput) -> None:
        sink, cluster = key
        try:
            await sink(cluster, output)
        except Exception:
            log.exception("status sink failed for cluster %s", cluster, extra={"cluster": cluster})

    async def aclose(self) -> None:
        """Cancel status writes still in flight."""
        await self._to_sinks.aclose()
