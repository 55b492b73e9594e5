"""The MCS controller loop: store changes in, :func:`compute_mcs` over the whole ClusterSet, results out to
one writer per member cluster.

Like the reconcile loop it debounces (quiet for ``debounce``, never held longer than ``debounce_cap``) and
writes nothing until every reachable cluster has finished its initial list: an import computed from a
half-listed cluster would delete that cluster's slices everywhere. It also wakes up on its own when a
lost cluster's TTL runs out, and retries a failed write into a cluster with backoff (no store event
would come to retry it). Writes into an unavailable cluster are skipped; its writer re-reads
everything once it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from mcgw.objects.model import AnyObject
from mcgw.runtime.debounce import settle, wait_set
from mcgw.runtime.latest import LatestWins
from mcgw.runtime.mcs_metrics import McsMetrics
from mcgw.semantics.mcs import (
    DEFAULT_LOST_CLUSTER_TTL,
    EMPTY_VIEW,
    ClusterMcs,
    ClusterSetView,
    McsCache,
    McsResult,
    compute_mcs,
)
from mcgw.store import Store

log = logging.getLogger(__name__)

RETRY_MIN, RETRY_MAX = 1.0, 30.0
LEADER_POLL = 1.0  # how often a replica that does not lead a cluster looks again


class WriteOutcome(Protocol):
    @property
    def failed(self) -> int: ...

    @property
    def deferred(self) -> bool: ...  # not the leader of that cluster (yet): nothing was written


class ClusterWriter(Protocol):
    """What the controller needs of a member cluster's writer (``McsWriter`` in the Kubernetes provider)."""

    async def write(self, desired: ClusterMcs, observed: Iterable[AnyObject] = ()) -> WriteOutcome: ...

    def forget(self) -> None: ...


class McsController:
    """Computes the MCS result on every change and hands each cluster its part; one per process."""

    def __init__(self, store: Store, writers: Mapping[str, ClusterWriter] | None = None, *,
                 lost_cluster_ttl: float = DEFAULT_LOST_CLUSTER_TTL, debounce: float = 0.1, debounce_cap: float = 1.0,
                 metrics: McsMetrics | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.writers = dict(writers or {})
        self.lost_cluster_ttl = lost_cluster_ttl
        self.debounce, self.debounce_cap = debounce, debounce_cap
        self.metrics = metrics
        self.clock = clock
        self.result: McsResult | None = None
        self.computes = 0
        self._cache = McsCache()  # only touched by the compute thread, one computation at a time
        self._listeners: list[Callable[[McsResult], None]] = []
        self._wake = asyncio.Event()
        # Per cluster: one write at a time, and only the latest result waits.
        self._writes: LatestWins[str, ClusterMcs] = LatestWins(self._write, task_name=lambda c: f"mcs write {c}")
        self._retry_delay: dict[str, float] = {}
        self._retry_timers: dict[str, asyncio.TimerHandle] = {}
        store.subscribe(lambda _cluster: self._wake.set())

    @property
    def view(self) -> ClusterSetView:
        return self.result.view if self.result is not None else EMPTY_VIEW

    def subscribe(self, on_result: Callable[[McsResult], None]) -> None:
        """Call ``on_result`` after every computation whose view changed (the failover translation follows it)."""
        self._listeners.append(on_result)

    async def run(self) -> None:
        """Compute and write forever: on store changes, at lost-cluster deadlines, and to retry failed writes."""
        self._wake.set()
        while True:
            deadline = self.result.next_deadline if self.result is not None else None
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            await wait_set(self._wake, timeout)  # a timeout: a lost cluster's TTL ran out
            await settle(self._wake, self.debounce, self.debounce_cap)
            await self.reconcile()

    async def reconcile(self) -> McsResult | None:
        """One pass: compute (once the readiness gate is open) and start the writes."""
        if not self.store.all_reachable_synced():
            log.debug("MCS: waiting for every reachable cluster's initial list")
            return None
        objects = {name: member.objects() for name, member in self.store.clusters.items()}
        health = {h.name: h for h in self.store.health()}
        now = self.clock()
        started = time.perf_counter()
        result = await asyncio.to_thread(compute_mcs, objects, health, now, self.lost_cluster_ttl, self._cache)
        seconds = time.perf_counter() - started
        previous, self.result = self.result, result
        self.computes += 1
        if self.metrics is not None:
            self.metrics.observe(result, seconds)
        self._log_lost(previous, result)
        if previous is None or previous.view != result.view:
            for listener in self._listeners:
                listener(result)
        for cluster, desired in result.clusters.items():
            self._start_write(cluster, desired)
        return result

    def _log_lost(self, previous: McsResult | None, result: McsResult) -> None:
        before = {lost.cluster: lost.withdrawn for lost in previous.lost} if previous else {}
        for lost in result.lost:
            if not lost.exports or before.get(lost.cluster) == lost.withdrawn:
                continue
            if lost.withdrawn:
                log.warning("cluster %s lost for %.0fs (the lost-cluster TTL): its endpoints of %d exported "
                            "service(s) are withdrawn", lost.cluster, self.lost_cluster_ttl, len(lost.exports),
                            extra={"cluster": lost.cluster})
            else:
                log.warning("cluster %s lost: its endpoints of %d exported service(s) are kept for %.0fs",
                            lost.cluster, len(lost.exports), lost.deadline - self.clock(),
                            extra={"cluster": lost.cluster})

    def _start_write(self, cluster: str, desired: ClusterMcs) -> None:
        if cluster in self.writers:
            self._writes.submit(cluster, desired)

    async def _write(self, cluster: str, desired: ClusterMcs) -> None:
        writer = self.writers[cluster]
        member = self.store[cluster]
        if not member.available:  # nothing can be written; check everything again once it is back
            writer.forget()
            return
        try:
            outcome = await writer.write(desired, member.objects())
            failed, deferred = outcome.failed, outcome.deferred
        except Exception:
            log.exception("MCS writer failed for cluster %s", cluster, extra={"cluster": cluster})
            failed, deferred = 1, False
        self._schedule_retry(cluster, failed, deferred)

    def _schedule_retry(self, cluster: str, failed: int, deferred: bool) -> None:
        """Failed writes: again after a backoff. Not the leader: ask again soon, since winning the Lease
        later is no store event and would otherwise leave the cluster unwritten until something changes."""
        if (timer := self._retry_timers.pop(cluster, None)) is not None:
            timer.cancel()
        if failed:
            delay = min(self._retry_delay.get(cluster, RETRY_MIN / 2) * 2, RETRY_MAX)
            self._retry_delay[cluster] = delay
            log.info("MCS: %d write(s) into cluster %s failed; trying again in %.0fs", failed, cluster, delay,
                     extra={"cluster": cluster})
        elif deferred:
            delay = LEADER_POLL
        else:
            self._retry_delay.pop(cluster, None)
            return
        self._retry_timers[cluster] = asyncio.get_running_loop().call_later(delay, self._retry, cluster)

    def _retry(self, cluster: str) -> None:
        """Write the latest result into ``cluster`` again (a newer one may already be on its way)."""
        self._retry_timers.pop(cluster, None)
        if self.result is not None and not self._writes.waiting(cluster) and cluster in self.result.clusters:
            self._start_write(cluster, self.result.clusters[cluster])

    async def idle(self) -> None:
        """Until the writes started so far are done (tests and shutdown)."""
        await self._writes.idle()

    async def aclose(self) -> None:
        for timer in self._retry_timers.values():
            timer.cancel()
        await self._writes.aclose()
