"""The objects of every member cluster as the providers last saw them, and each cluster's health.

Providers (Kubernetes informers, the file watcher) write here; the reconcile loop reads. A cluster
that becomes unavailable keeps its last known objects: losing an API server must never withdraw
routes that other clusters' gateways serve. Everything runs on one event loop, so there are no locks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mcgw.objects.model import AnyObject

ObjectKey = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True)
class ClusterHealth:
    """What /api/status and the metrics report about one member cluster."""

    name: str
    synced: bool  # every watched kind has finished its initial list at least once
    available: bool
    reason: str  # why the cluster is unavailable (or the last error), empty when healthy
    since: float  # wall-clock time of the last availability change


class ClusterStore:
    """One member cluster's objects, with a revision that changes whenever they do."""

    def __init__(self, name: str, kinds: Iterable[str]) -> None:
        self.name = name
        self.revision = 0
        self._objects: dict[ObjectKey, AnyObject] = {}
        self._pending_kinds = set(kinds)
        self._synced = not self._pending_kinds
        self._available = True
        self._reason = ""
        self._since = time.time()
        self._snapshot: tuple[AnyObject, ...] | None = ()

    # -- writes (providers) -----------------------------------------------------------------------

    def replace_kind(self, kind: str, objects: Iterable[AnyObject]) -> bool:
        """A complete (re)list of one kind: objects missing from it were deleted meanwhile."""
        fresh = {o.key: o for o in objects}
        stale = [k for k in self._objects if k[0] == kind and k not in fresh]
        changed = bool(stale) or any(self._objects.get(k) != o for k, o in fresh.items())
        for key in stale:
            del self._objects[key]
        self._objects.update(fresh)
        self._pending_kinds.discard(kind)
        if not self._pending_kinds:
            self._synced = True
        if changed:
            self._touch()
        return changed

    def upsert(self, obj: AnyObject) -> bool:
        if self._objects.get(obj.key) == obj:
            return False
        self._objects[obj.key] = obj
        self._touch()
        return True

    def delete(self, key: ObjectKey) -> bool:
        if self._objects.pop(key, None) is None:
            return False
        self._touch()
        return True

    def set_available(self, available: bool, reason: str = "") -> bool:
        """Record reachability; objects are kept either way. True if the availability flipped."""
        flipped = available != self._available
        if flipped:
            self._since = time.time()
        self._available, self._reason = available, reason
        return flipped

    def _touch(self) -> None:
        self.revision += 1
        self._snapshot = None

    # -- reads (reconcile loop) -------------------------------------------------------------------

    def objects(self) -> tuple[AnyObject, ...]:
        """Every object, in a stable order; the same tuple until something changes."""
        if self._snapshot is None:
            self._snapshot = tuple(self._objects[k] for k in sorted(self._objects))
        return self._snapshot

    def get(self, key: ObjectKey) -> AnyObject | None:
        return self._objects.get(key)

    @property
    def synced(self) -> bool:
        return self._synced

    @property
    def available(self) -> bool:
        return self._available

    def health(self) -> ClusterHealth:
        return ClusterHealth(self.name, self._synced, self._available, self._reason, self._since)


class Store:
    """Every member cluster's :class:`ClusterStore`; tells every subscriber after any write that matters."""

    def __init__(self, clusters: Iterable[str], kinds: Iterable[str]) -> None:
        watched = tuple(kinds)
        self.clusters = {name: ClusterStore(name, watched) for name in clusters}
        self._subscribers: list[Callable[[str], None]] = []

    def subscribe(self, on_change: Callable[[str], None]) -> None:
        """Call ``on_change(cluster)`` after each change (the reconcile loop, the MCS controller, ...)."""
        self._subscribers.append(on_change)

    def __getitem__(self, cluster: str) -> ClusterStore:
        return self.clusters[cluster]

    def replace_kind(self, cluster: str, kind: str, objects: Iterable[AnyObject]) -> None:
        store = self.clusters[cluster]
        was_synced = store.synced
        if store.replace_kind(kind, objects) or store.synced != was_synced:
            self._changed(cluster)

    def upsert(self, cluster: str, obj: AnyObject) -> None:
        if self.clusters[cluster].upsert(obj):
            self._changed(cluster)

    def delete(self, cluster: str, key: ObjectKey) -> None:
        if self.clusters[cluster].delete(key):
            self._changed(cluster)

    def set_available(self, cluster: str, available: bool, reason: str = "") -> None:
        if self.clusters[cluster].set_available(available, reason):
            self._changed(cluster)

    def all_reachable_synced(self) -> bool:
        """The readiness gate: every cluster has listed everything, or is unreachable and never listed.

        A cluster that was listed once and then dropped out counts as synced (its objects are kept).
        """
        return all(c.synced or not c.available for c in self.clusters.values())

    def health(self) -> list[ClusterHealth]:
        return [c.health() for c in self.clusters.values()]

    def _changed(self, cluster: str) -> None:
        for subscriber in self._subscribers:
            subscriber(cluster)
