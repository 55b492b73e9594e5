"""Write computed status through the status subresource: read, merge, write only if changed.

Conflicts (another writer got there first) are retried with a fresh read; a stored status that
already describes a newer generation is left alone. :class:`StatusWriter` adds memory on top, so a
reconcile that changes one route touches one object, not every object of the cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol, cast

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from mcgw.objects.kinds import RECONCILER_STATUS_KINDS, Statuses
from mcgw.providers.kubernetes.conflicts import update_status
from mcgw.providers.kubernetes.retry import with_retries
from mcgw.providers.kubernetes.status_merge import MERGES
from mcgw.support.logs import object_fields

log = logging.getLogger(__name__)
# Every kind whose status the reconcile loop computes: its registry entry and how its status merges.
_WRITTEN = {kind.name: (kind, MERGES[kind.status]) for kind in RECONCILER_STATUS_KINDS if kind.status}


class StatusMetrics(Protocol):
    """What the writer counts (``ControllerMetrics`` in the admin server implements it)."""

    def status_written(self, cluster: str, kind: str) -> None: ...

    def status_conflict(self, cluster: str, kind: str) -> None: ...

    def status_failed(self, cluster: str, kind: str) -> None: ...


async def _write_one(custom: client.CustomObjectsApi, kind_name: str, namespace: str, name: str, ours: dict[str, Any],
                     generation: int, *, cluster: str = "", on_conflict: Callable[[], None] | None = None) -> bool:
    """True if the status was written, False if it was already up to date (or newer)."""
    kind, merge = _WRITTEN[kind_name]
    group, version, plural = kind.group, kind.version, kind.plural
    what = f"{kind_name} {namespace}/{name}"

    async def read() -> dict[str, Any]:
        if namespace:
            fetched = await with_retries(partial(custom.get_namespaced_custom_object_status, group, version,
                                                 namespace, plural, name), f"read {kind_name} {namespace}/{name}")
        else:
            fetched = await with_retries(partial(custom.get_cluster_custom_object_status, group, version,
                                                 plural, name), f"read {kind_name} {name}")
        return cast(dict[str, Any], fetched)

    async def replace(body: dict[str, Any]) -> None:
        if namespace:
            await with_retries(partial(custom.replace_namespaced_custom_object_status, group, version,
                                       namespace, plural, name, body), f"write {kind_name} {namespace}/{name}")
        else:
            await with_retries(partial(custom.replace_cluster_custom_object_status, group, version,
                                       plural, name, body), f"write {kind_name} {name}")

    def conflicted() -> None:
        if on_conflict is not None:
            on_conflict()
        log.info("status conflict, retrying with a fresh read",
                 extra=object_fields(cluster, kind_name, namespace, name))

    outcome = await update_status(read, replace, lambda stored, now: merge(stored, ours, now), generation, what,
                                  on_conflict=conflicted)
    return outcome == "written"


def _generation(status: dict[str, Any]) -> int:
    """The generation a computed status describes (every condition carries it as observedGeneration)."""
    conditions = status.get("conditions", []) + [c for p in status.get("parents", []) for c in p["conditions"]]
    conditions += [c for a in status.get("ancestors", []) for c in a["conditions"]]
    return max((c["observedGeneration"] for c in conditions), default=0)


def _split(key: str) -> tuple[str, str]:
    namespace, _, name = key.rpartition("/")
    return namespace, name


async def write_statuses(api: client.ApiClient, statuses: Statuses, cluster: str = "") -> int:
    """Write every status in ``statuses`` (read, merge, write if different); returns how many objects changed.

    ``cluster`` only names the cluster in log lines.
    """
    custom = client.CustomObjectsApi(api)
    written = 0
    for kind, by_name in statuses.items():
        for key, status in by_name.items():
            namespace, name = _split(key)
            if await _write_one(custom, kind, namespace, name, status, _generation(status), cluster=cluster):
                written += 1
    return written


StatusKey = tuple[str, str, str]  # (kind, namespace, name)


class StatusWriter:
    """Writes one member cluster's computed statuses, and only those that changed since it last wrote.

    It remembers the computed status it last wrote (or found already stored) per object, and the UID
    ``identity`` gives for it, so an unchanged object costs no API call while one deleted and created again
    under the same name (within one debounce window the computed status can be identical) is written.
    An object seen for the first time is read and written only if the merge differs from what is stored.
    Only the leader writes: while ``is_leader()`` is false nothing is written and the memory is dropped,
    so a new term checks every object again (another replica may have written meanwhile). An object
    deleted before its write (404) is skipped.

    It can be called like a reconciler sink, with every cluster's statuses, and it acts only on its own
    cluster's. Calls must not overlap (the runtime runs one at a time per sink and cluster).
    """

    def __init__(self, api: client.ApiClient, cluster: str, is_leader: Callable[[], bool] = lambda: True, *,
                 metrics: StatusMetrics | None = None, identity: Callable[[StatusKey], str] = lambda _key: "") -> None:
        self.api = api
        self.cluster = cluster
        self.is_leader = is_leader
        self.metrics = metrics
        self.identity = identity  # the object's UID as the store has it ("" when unknown)
        self._custom = client.CustomObjectsApi(api)
        self._written: dict[StatusKey, tuple[str, dict[str, Any]]] = {}

    async def __call__(self, cluster: str, statuses: Statuses) -> None:
        if cluster == self.cluster:
            await self.write(statuses)

    def forget(self) -> None:
        """Check every object against the API server on the next write (for example after a resync)."""
        self._written.clear()

    def _lost_leadership(self) -> bool:
        if self.is_leader():
            return False
        if self._written:
            log.info("not the leader: status writes stop until this replica leads again",
                     extra={"cluster": self.cluster})
            self._written.clear()
        return True

    async def write(self, statuses: Statuses) -> int:
        """Write the statuses (kind -> "namespace/name" -> status) that changed; returns how many were written."""
        if self._lost_leadership():
            return 0
        current = {(kind, *_split(key)) for kind, by_name in statuses.items() for key in by_name}
        for gone in set(self._written) - current:
            del self._written[gone]  # deleted or no longer ours; if it comes back, it is checked afresh
        written = 0
        for kind, by_name in statuses.items():
            for key, status in by_name.items():
                namespace, name = _split(key)
                object_key = (kind, namespace, name)
                if self._written.get(object_key) == (self.identity(object_key), status):
                    continue
                if self._lost_leadership():
                    return written
                if await self._write(kind, namespace, name, status):
                    written += 1
        return written

    async def _write(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
        fields = object_fields(self.cluster, kind, namespace, name)
        metrics = self.metrics
        on_conflict = (lambda: metrics.status_conflict(self.cluster, kind)) if metrics is not None else None
        try:
            changed = await _write_one(self._custom, kind, namespace, name, status, _generation(status),
                                       cluster=self.cluster, on_conflict=on_conflict)
        except ApiException as error:
            self._written.pop((kind, namespace, name), None)
            if error.status == 404:
                log.debug("object deleted before its status was written; skipped", extra=fields)
                return False
            log.warning("writing status failed: API answered %s %s", error.status, error.reason, extra=fields)
            if metrics is not None:
                metrics.status_failed(self.cluster, kind)
            return False
        except Exception:
            self._written.pop((kind, namespace, name), None)
            log.exception("writing status failed", extra=fields)
            if metrics is not None:
                metrics.status_failed(self.cluster, kind)
            return False
        self._written[(kind, namespace, name)] = (self.identity((kind, namespace, name)), status)
        if changed:
            log.debug("status written", extra=fields)
            if metrics is not None:
                metrics.status_written(self.cluster, kind)
        return changed
