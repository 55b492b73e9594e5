"""Writes the MCS controller's result into one member cluster: ServiceExport status, ServiceImports and
imported EndpointSlices.

- **Diff-only.** The writer remembers what it last wrote (or found already in place); an unchanged object
  costs no API call. At the start of every leadership term it lists the objects carrying our managed-by
  label, so objects a previous run left behind are updated or deleted, never forgotten.
- **Only ours.** ServiceImports and EndpointSlices without our managed-by label belong to someone else:
  they are never changed or deleted (a warning says so once). ServiceExport status is merged: conditions
  of other controllers are kept, and ``lastTransitionTime`` only moves when a condition's status does.
- **Drift.** The caller passes what the cluster's informers last saw; an object of ours that is missing
  there, or differs from what we wrote, is read again and repaired.
- **Errors.** 429/5xx are retried by ``with_retries``; 409 means someone wrote meanwhile: read and try
  again; 404 on delete means it is already gone. Anything else is counted, logged, and reported to the
  caller, which tries again later.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from mcgw.objects.kinds import BY_NAME
from mcgw.objects.model import AnyObject, EndpointSlice, ManifestError, ServiceImport, parse_object
from mcgw.providers.kubernetes.conflicts import retry_conflicts, update_status
from mcgw.providers.kubernetes.lister import api_json, list_pages, read_json
from mcgw.providers.kubernetes.retry import with_retries
from mcgw.providers.kubernetes.status_merge import merge_conditions
from mcgw.semantics.mcs import IMPORT_MANAGED_BY, MANAGER, SLICE_MANAGED_BY, ClusterMcs
from mcgw.support.logs import object_fields
from mcgw.support.timestamps import rfc3339

log = logging.getLogger(__name__)

ObjectKey = tuple[str, str, str]  # (kind, namespace, name)
_OWNED = {  # kind -> label that marks ours
    "ServiceImport": IMPORT_MANAGED_BY,
    "EndpointSlice": SLICE_MANAGED_BY,
}


class McsWriteMetrics(Protocol):
    """What the writer counts (``McsMetrics`` of the MCS loop implements it)."""

    def written(self, cluster: str, kind: str, op: str) -> None: ...

    def conflict(self, cluster: str, kind: str) -> None: ...

    def failed(self, cluster: str, kind: str) -> None: ...


def collection_path(kind: str, namespace: str) -> str:
    return BY_NAME[kind].namespaced_path(namespace)


def object_path(kind: str, namespace: str, name: str) -> str:
    return f"{collection_path(kind, namespace)}/{name}"


class ObjectApi:
    """The few REST calls the writer makes, as plain JSON (tests put an in-memory API server behind it)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    async def get(self, path: str) -> dict[str, Any] | None:
        return await read_json(self.api, path)

    async def create(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        return cast(dict[str, Any], await with_retries(partial(api_json, self.api, "POST", collection, body),
                                                       f"create in {collection}"))

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return cast(dict[str, Any], await with_retries(partial(api_json, self.api, "PUT", path, body),
                                                       f"write {path}"))

    async def delete(self, path: str) -> bool:
        """False when it was already gone."""
        try:
            await with_retries(partial(api_json, self.api, "DELETE", path), f"delete {path}")
            return True
        except ApiException as error:
            if error.status == 404:
                return False
            raise

    async def list(self, collection: str, label_selector: str) -> list[dict[str, Any]]:
        return [item async for page in list_pages(self.api, collection, [("labelSelector", label_selector)],
                                                  retry_as=f"list {collection}")
                for item in page.items]


# -- comparing what is stored with what we want (pure) ---------------------------------------------------

def _pruned(value: Any) -> Any:
    """Drop empty and null fields: the API server omits them, so they must not count as differences."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def projection(kind: str, obj: Mapping[str, Any]) -> Any:
    """The part of an object that the writer owns (status aside)."""
    metadata = obj.get("metadata") or {}
    if kind == "ServiceImport":
        return _pruned({"labels": metadata.get("labels"), "annotations": metadata.get("annotations"),
                        "spec": obj.get("spec")})
    return _pruned({"labels": metadata.get("labels"), "addressType": obj.get("addressType"),
                    "ports": obj.get("ports"), "endpoints": obj.get("endpoints")})


def is_ours(kind: str, obj: Mapping[str, Any]) -> bool:
    label = IMPORT_MANAGED_BY if kind == "ServiceImport" else SLICE_MANAGED_BY
    return bool(((obj.get("metadata") or {}).get("labels") or {}).get(label) == MANAGER)


def desired_model(desired: Mapping[str, Any]) -> AnyObject | None:
    try:
        return parse_object(dict(desired), "desired")
    except ManifestError:
        return None


def observed_matches(wanted: AnyObject | None, observed: AnyObject | None) -> bool:
    """Whether the informers' copy already shows the desired object (both as parsed models)."""
    if wanted is None or observed is None:
        return False
    if isinstance(wanted, ServiceImport) and isinstance(observed, ServiceImport):
        return (wanted.metadata.labels, wanted.spec, wanted.status.clusters) == (
            observed.metadata.labels, observed.spec, observed.status.clusters)
    if isinstance(wanted, EndpointSlice) and isinstance(observed, EndpointSlice):
        return (wanted.metadata.labels, wanted.address_type, wanted.ports, wanted.endpoints) == (
            observed.metadata.labels, observed.address_type, observed.ports, observed.endpoints)
    return False


def merged_status(stored: Mapping[str, Any], ours: Mapping[str, Any], generation: int | None,
                  now: str) -> dict[str, Any]:
    """``ours`` over ``stored``: our conditions replace theirs by type (transition time kept when the status
    is unchanged), foreign conditions stay, and every other field we set replaces the stored one."""
    conditions = [{**c, "observedGeneration": generation} if generation is not None and "observedGeneration" not in c
                  else c for c in ours.get("conditions", [])]
    merged = {**stored, **{k: v for k, v in ours.items() if k != "conditions"}}
    merged["conditions"] = merge_conditions(list(stored.get("conditions") or []), conditions, now)
    return merged


# -- the writer ------------------------------------------------------------------------------------------

@dataclass
class WriteReport:
    written: int = 0  # objects created, changed or deleted
    failed: int = 0  # objects that could not be written; the caller tries again later
    deferred: bool = False  # not the leader: nothing written; the caller asks again later (it may lead by then)


class McsWriter:
    """One member cluster's MCS objects; calls must not overlap (the MCS controller runs one at a time)."""

    def __init__(self, api: client.ApiClient | ObjectApi, cluster: str, is_leader: Callable[[], bool] = lambda: True,
                 *, metrics: McsWriteMetrics | None = None) -> None:
        self.api = api if isinstance(api, ObjectApi) else ObjectApi(api)
        self.cluster = cluster
        self.is_leader = is_leader
        self.metrics = metrics
        self._written: dict[ObjectKey, dict[str, Any]] = {}  # desired objects known to be in place
        # The last (desired, observed) pair found in step, so an unchanged object costs two identity checks:
        # the MCS cache hands out the same desired dicts and the store the same observed objects.
        self._verified: dict[ObjectKey, tuple[dict[str, Any], AnyObject]] = {}
        self._found: dict[ObjectKey, dict[str, Any]] = {}  # ours, listed at the start of the term, not yet handled
        self._foreign: dict[ObjectKey, dict[str, Any]] = {}  # someone else's object where we want one
        self._exports: dict[tuple[str, str], dict[str, Any]] = {}
        self._listed = False

    def forget(self) -> None:
        """Check everything against the API server on the next write (new term, or the cluster came back)."""
        self._written.clear()
        self._verified.clear()
        self._found.clear()
        self._foreign.clear()
        self._exports.clear()
        self._listed = False

    def _leading(self) -> bool:
        if self.is_leader():
            return True
        if self._listed:
            log.info("not the leader: MCS writes stop until this replica leads again", extra={"cluster": self.cluster})
            self.forget()
        return False

    def _count(self, kind: str, op: str) -> None:
        if self.metrics is not None:
            self.metrics.written(self.cluster, kind, op)

    async def write(self, desired: ClusterMcs, observed: Iterable[AnyObject] = ()) -> WriteReport:
        """Bring the cluster to ``desired``; ``observed`` is the cluster's objects as the informers last saw them."""
        report = WriteReport()
        if not self._leading():
            report.deferred = True
            return report
        if not self._listed:
            try:
                await self._list_owned()
            except Exception as error:
                self._failed("list", "", "", error, report)
                return report
        seen = {obj.key: obj for obj in observed if obj.kind in ("ServiceImport", "EndpointSlice")}
        wanted: dict[ObjectKey, dict[str, Any]] = {}
        for (namespace, name), obj in desired.imports.items():
            wanted[("ServiceImport", namespace, name)] = obj
        for (namespace, name), obj in desired.slices.items():
            wanted[("EndpointSlice", namespace, name)] = obj

        for export_key, status in sorted(desired.exports.items()):
            if self._exports.get(export_key) != status and self._leading():
                await self._guard("ServiceExport", export_key, report, self._write_export_status(export_key, status))
        for export_key in set(self._exports) - set(desired.exports):
            del self._exports[export_key]
        for kind in ("ServiceImport", "EndpointSlice"):  # an import exists before its slices
            for key, obj in sorted((k, v) for k, v in wanted.items() if k[0] == kind):
                if self._foreign.get(key) == obj and key in seen:
                    continue
                if self._in_place(key, obj, seen.get(key)):
                    continue
                if not self._leading():
                    report.deferred = True
                    return report
                await self._guard(kind, (key[1], key[2]), report, self._ensure(key, obj))
        for kind in ("EndpointSlice", "ServiceImport"):  # slices go before their import
            for key in sorted(k for k in {*self._written, *self._found} if k[0] == kind and k not in wanted):
                if not self._leading():
                    report.deferred = True
                    return report
                await self._guard(kind, (key[1], key[2]), report, self._delete(key))
        for key in [k for k in self._foreign if k not in wanted]:
            del self._foreign[key]
        return report

    def _in_place(self, key: ObjectKey, desired: dict[str, Any], observed: AnyObject | None) -> bool:
        """Written by us, and the informers show it as we wrote it (else: someone changed or deleted it)."""
        verified = self._verified.get(key)
        if verified is not None and verified[0] is desired and verified[1] is observed:
            return True
        written = self._written.get(key)
        if observed is None or (written is not desired and written != desired):
            return False
        if not observed_matches(desired_model(desired), observed):
            return False
        self._verified[key] = (desired, observed)
        return True

    async def _guard(self, kind: str, key: tuple[str, str], report: WriteReport, work: Awaitable[bool]) -> None:
        try:
            if await work:
                report.written += 1
        except Exception as error:
            self._failed(kind, *key, error, report)

    def _failed(self, kind: str, namespace: str, name: str, error: Exception, report: WriteReport) -> None:
        report.failed += 1
        if kind == "ServiceExport":
            self._exports.pop((namespace, name), None)
        fields = object_fields(self.cluster, kind, namespace, name)
        if isinstance(error, ApiException):
            log.warning("MCS write failed: API answered %s %s", error.status, error.reason, extra=fields)
        else:
            log.warning("MCS write failed: %s", error, extra=fields, exc_info=not isinstance(error, OSError))
        if self.metrics is not None:
            self.metrics.failed(self.cluster, kind)

    async def _list_owned(self) -> None:
        found: dict[ObjectKey, dict[str, Any]] = {}
        for kind, label in _OWNED.items():
            for item in await self.api.list(BY_NAME[kind].path, f"{label}={MANAGER}"):
                metadata = item.get("metadata") or {}
                found[(kind, metadata.get("namespace", ""), metadata.get("name", ""))] = item
        self._found = found
        self._listed = True

    # -- ServiceExport status -----------------------------------------------------------------------------

    async def _write_export_status(self, key: tuple[str, str], status: dict[str, Any]) -> bool:
        namespace, name = key
        path = f"{object_path('ServiceExport', namespace, name)}/status"
        generation = max((c.get("observedGeneration", 0) for c in status.get("conditions", [])), default=0)

        async def replace(body: dict[str, Any]) -> None:
            await self.api.replace(path, body)

        outcome = await update_status(partial(self.api.get, path), replace,
                                      lambda stored, now: merged_status(stored, status, None, now), generation,
                                      f"ServiceExport {namespace}/{name}",
                                      on_conflict=lambda: self._conflict("ServiceExport"))
        if outcome in ("written", "unchanged"):
            self._exports[key] = status
        if outcome == "written":
            self._count("ServiceExport", "status")
        return outcome == "written"

    def _conflict(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.conflict(self.cluster, kind)

    # -- ServiceImports and EndpointSlices ----------------------------------------------------------------

    async def _ensure(self, key: ObjectKey, desired: dict[str, Any]) -> bool:
        """Create or repair one object of ours (and a ServiceImport's status); someone else's is left alone."""
        kind, namespace, name = key
        self._written.pop(key, None)  # until it is confirmed in place
        self._verified.pop(key, None)
        path = object_path(kind, namespace, name)
        body = {k: v for k, v in desired.items() if k != "status"}
        changed = False
        found = self._found.pop(key, None)

        async def attempt(number: int) -> bool:
            nonlocal changed
            current = found if found is not None and number == 0 else await self.api.get(path)
            if current is None:
                current = await self.api.create(collection_path(kind, namespace), body)
                self._count(kind, "create")
                changed = True
            elif not is_ours(kind, current):
                if key not in self._foreign:
                    log.warning("%s %s/%s exists and is not managed by mcgw; leaving it alone", kind, namespace,
                                name, extra=object_fields(self.cluster, kind, namespace, name))
                self._foreign[key] = desired
                self._written.pop(key, None)
                return False
            elif projection(kind, current) != projection(kind, body):
                if kind == "EndpointSlice" and current.get("addressType") != body.get("addressType"):
                    await self.api.delete(path)  # addressType is immutable
                    current = await self.api.create(collection_path(kind, namespace), body)
                    self._count(kind, "create")
                else:
                    current = await self.api.replace(path, {**body, "metadata": {
                        **current["metadata"], "labels": body["metadata"].get("labels", {}),
                        "annotations": body["metadata"].get("annotations", {})}})
                    self._count(kind, "update")
                changed = True
            if "status" in desired:
                changed = await self._write_import_status(path, current, desired["status"]) or changed
            self._foreign.pop(key, None)
            self._written[key] = desired
            return changed

        return await retry_conflicts(attempt, f"writing {kind} {namespace}/{name}", lambda: self._conflict(kind))

    async def _write_import_status(self, path: str, current: dict[str, Any], status: dict[str, Any]) -> bool:
        stored = current.get("status") or {}
        generation = (current.get("metadata") or {}).get("generation")
        merged = merged_status(stored, status, generation, rfc3339())
        if _pruned(merged) == _pruned(stored):
            return False
        await self.api.replace(f"{path}/status", {**current, "status": merged})
        self._count("ServiceImport", "status")
        return True

    async def _delete(self, key: ObjectKey) -> bool:
        """Delete one of ours; on failure it stays remembered, so the next write tries again."""
        kind, namespace, name = key
        gone = await self.api.delete(object_path(kind, namespace, name))
        self._written.pop(key, None)
        self._verified.pop(key, None)
        self._found.pop(key, None)
        if gone:
            self._count(kind, "delete")
            log.info("%s %s/%s deleted: no longer exported", kind, namespace, name,
                     extra=object_fields(self.cluster, kind, namespace, name))
        return gone
