"""Applies what provisioning renders for one member cluster's Gateways: their Envoys' objects.

- **Server-side apply**, ``fieldManager=mcgw``, forced: mcgw owns every field it sets on its objects, and
  force is only ever used on objects that carry our managed-by label (or do not exist yet).
- **Diff-only.** The informers show our objects (generated kinds are watched with our managed-by label
  only, Services whole); one with the desired-hash annotation of the desired object, whose fields mcgw
  reads back (a Deployment's replicas, a Service's type, ports, selector and addresses) are as desired,
  costs no call. Anything else (changed, deleted, or edited by someone) is applied again.
- **Only ours.** An object without our label is never changed or deleted. A desired object whose name is
  held by someone else's is left alone, logged once, reported (``foreign``) and looked at again after
  ``FOREIGN_RECHECK`` seconds; none of that Gateway's objects is written meanwhile (its Deployment would
  mount their ConfigMap). The generated kinds other than Services and ConfigMaps are not watched beyond our label, so
  before creating one that the informers do not show, the object is read: it may be someone else's.
- **Deletes** our objects (managed-by and gateway-name labels) that are no longer desired, with the UID
  seen as a precondition (what is deleted is exactly the object that was ours), except those of Gateways
  the caller holds: a Gateway whose parameters cannot be used keeps the Envoys it runs.
- **Only the Lease holder** of the cluster writes; others defer.
- **Errors.** 429/5xx are retried by ``with_retries``; a failure is logged (status and reason, never a
  body: a Secret or bootstrap could be echoed) and counted, and the caller syncs again with backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, cast

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from mcgw.objects.kinds import GENERATED_KINDS
from mcgw.objects.model import DESIRED_HASH_ANNOTATION, AnyObject, Deployment, ManifestError, Service, parse_object
from mcgw.providers.kubernetes.lister import api_json, read_json
from mcgw.providers.kubernetes.mcs_writer import object_path
from mcgw.providers.kubernetes.retry import with_retries
from mcgw.provisioning import GATEWAY_NAME_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from mcgw.support.logs import object_fields

log = logging.getLogger(__name__)

ObjectKey = tuple[str, str, str]  # (kind, namespace, name)
GatewayLabel = tuple[str, str]  # (namespace, gateway-name label value)
FIELD_MANAGER = "mcgw"
APPLY_PATCH = "application/apply-patch+yaml"
FOREIGN_RECHECK = 30.0  # seconds before someone else's object in our way is read again


class ProvisionMetrics(Protocol):
    def written(self, cluster: str, kind: str, op: str) -> None: ...

    def failed(self, cluster: str, kind: str) -> None: ...


class ProvisionApi:
    """The REST calls the provisioner makes, as plain JSON (tests put an in-memory API server behind it)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    async def get(self, path: str) -> dict[str, Any] | None:
        return await read_json(self.api, path)

    async def apply(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        return cast(dict[str, Any], await with_retries(
            partial(api_json, self.api, "PATCH", path, body, query, APPLY_PATCH), f"apply {path}"))

    async def delete(self, path: str, uid: str) -> bool:
        """False when it was already gone (or replaced: another UID holds the name now)."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background",
                "preconditions": {"uid": uid}}
        try:
            await with_retries(partial(api_json, self.api, "DELETE", path, body), f"delete {path}")
            return True
        except ApiException as error:
            if error.status in (404, 409):  # 409: the UID precondition failed, the object is not the one we saw
                return False
            raise


def is_ours(labels: Mapping[str, str]) -> bool:
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY and bool(labels.get(GATEWAY_NAME_LABEL))


def _desired_hash(desired: Mapping[str, Any]) -> str:
    return str(((desired.get("metadata") or {}).get("annotations") or {}).get(DESIRED_HASH_ANNOTATION, ""))


def in_place(desired: AnyObject | None, observed: AnyObject | None, desired_hash: str) -> bool:
    """Whether the informers' copy shows the desired object: ours, same desired hash, and the fields mcgw
    reads back unchanged (an edit that left our annotation alone is still seen)."""
    if desired is None or observed is None or not is_ours(observed.metadata.labels):
        return False
    if getattr(observed.metadata, "desired_hash", "") != desired_hash:
        return False
    if isinstance(desired, Deployment) and isinstance(observed, Deployment):
        return desired.spec.replicas is None or desired.spec.replicas == observed.spec.replicas
    if isinstance(desired, Service) and isinstance(observed, Service):
        wanted, seen = desired.spec, observed.spec
        return (wanted.type, wanted.ports, wanted.selector, wanted.load_balancer_ip, wanted.external_ips) == (
            seen.type, seen.ports, seen.selector, seen.load_balancer_ip, seen.external_ips)
    return True


@dataclass
class SyncReport:
    applied: int = 0  # objects created or changed
    deleted: int = 0
    failed: int = 0  # objects that could not be written; the caller syncs again later
    deferred: bool = False  # not the leader: nothing written
    foreign: list[ObjectKey] = field(default_factory=list)  # desired names held by someone else's objects


class Provisioner:
    """One member cluster's generated objects; calls to :meth:`sync` must not overlap."""

    def __init__(self, api: client.ApiClient | ProvisionApi, cluster: str,
                 is_leader: Callable[[], bool] = lambda: True, *, metrics: ProvisionMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api if isinstance(api, ProvisionApi) else ProvisionApi(api)
        self.cluster = cluster
        self.is_leader = is_leader
        self.metrics = metrics
        self.clock = clock
        self.foreign: dict[ObjectKey, float] = {}  # someone else's object where we want one -> when last read
        self._models: dict[ObjectKey, tuple[str, AnyObject | None]] = {}  # desired hash -> the desired object parsed
        self._was_leader = False

    async def sync(self, desired: Mapping[ObjectKey, dict[str, Any]], held: Iterable[GatewayLabel],
                   observed: Iterable[AnyObject]) -> SyncReport:
        """Bring the cluster's generated objects to ``desired``; ``observed`` is what its informers show,
        ``held`` the Gateways (namespace, gateway-name label) whose objects stay even if not desired."""
        report = SyncReport()
        if not self.is_leader():
            if self._was_leader:
                log.info("not the leader: provisioning stops until this replica leads again",
                         extra={"cluster": self.cluster})
                self.foreign.clear()
            self._was_leader = False
            report.deferred = True
            return report
        self._was_leader = True
        seen = {obj.key: obj for obj in observed if obj.kind in GENERATED_KINDS}
        order = {kind: index for index, kind in enumerate(GENERATED_KINDS)}
        for key in [k for k in self._models if k not in desired]:
            del self._models[key]
        for key in [k for k in self.foreign if k not in desired]:
            del self.foreign[key]
        by_gateway: dict[GatewayLabel, list[ObjectKey]] = {}
        for key, body in desired.items():
            labels = (body.get("metadata") or {}).get("labels") or {}
            by_gateway.setdefault((key[1], str(labels.get(GATEWAY_NAME_LABEL, ""))), []).append(key)
        for _, keys in sorted(by_gateway.items()):
            # Every object of a Gateway is checked before any is written: a Deployment must never mount
            # someone else's ConfigMap, nor a Service of someone else's select our pods.
            to_apply: list[ObjectKey] = []
            blocked = False
            for key in sorted(keys, key=lambda k: (order[k[0]], k[1:])):
                if not self.is_leader():
                    report.deferred = True
                    return report
                try:
                    verdict = await self._check(key, desired[key], seen.get(key))
                except Exception as error:
                    self._failed(key, error, report)
                    blocked = True
                    continue
                if verdict == "foreign":
                    report.foreign.append(key)
                    blocked = True
                elif verdict == "apply":
                    to_apply.append(key)
            if blocked:
                continue
            for key in to_apply:
                if not self.is_leader():
                    report.deferred = True
                    return report
                await self._guard(key, report, self._apply(key, desired[key], report))
        keep = set(held)
        stale = [obj for key, obj in seen.items()
                 if key not in desired and is_ours(obj.metadata.labels)
                 and (obj.metadata.namespace, obj.metadata.labels[GATEWAY_NAME_LABEL]) not in keep]
        for obj in sorted(stale, key=lambda o: (-order[o.kind], o.key)):
            if not self.is_leader():
                report.deferred = True
                return report
            await self._guard(obj.key, report, self._delete(obj, report))
        return report

    def _model(self, key: ObjectKey, body: dict[str, Any], desired_hash: str) -> AnyObject | None:
        cached = self._models.get(key)
        if cached is None or cached[0] != desired_hash:
            try:
                model: AnyObject | None = parse_object(body, f"desired {key[0]} {key[1]}/{key[2]}")
            except ManifestError:  # compared by its hash alone
                model = None
            self._models[key] = cached = (desired_hash, model)
        return cached[1]

    async def _check(self, key: ObjectKey, body: dict[str, Any], observed: AnyObject | None) -> str:
        """"in_place", "foreign" (someone else's object holds the name) or "apply"."""
        kind, namespace, name = key
        desired_hash = _desired_hash(body)
        if in_place(self._model(key, body, desired_hash), observed, desired_hash):
            self.foreign.pop(key, None)
            return "in_place"
        if observed is not None and not is_ours(observed.metadata.labels):
            self._found_foreign(key)
            return "foreign"
        checked = self.foreign.get(key)
        if checked is not None and self.clock() - checked < FOREIGN_RECHECK:
            return "foreign"
        if observed is None and kind != "Service":  # unwatched unless ours: it may be someone else's
            current = await self.api.get(object_path(kind, namespace, name))
            if current is not None and not is_ours((current.get("metadata") or {}).get("labels") or {}):
                self._found_foreign(key)
                return "foreign"
        self.foreign.pop(key, None)
        return "apply"

    async def _apply(self, key: ObjectKey, body: dict[str, Any], report: SyncReport) -> None:
        kind, namespace, name = key
        await self.api.apply(object_path(kind, namespace, name), body)
        report.applied += 1
        self._count(kind, "apply")
        log.info("%s %s/%s applied", kind, namespace, name, extra=object_fields(self.cluster, kind, namespace, name))

    def _found_foreign(self, key: ObjectKey) -> None:
        kind, namespace, name = key
        if key not in self.foreign:
            log.warning("%s %s/%s exists and is not managed by mcgw; leaving it alone, and the Gateway's other "
                        "objects unwritten (rename or delete it to let mcgw provision the Gateway)", kind, namespace,
                        name, extra=object_fields(self.cluster, kind, namespace, name))
        self.foreign[key] = self.clock()

    async def _delete(self, obj: AnyObject, report: SyncReport) -> None:
        kind, namespace, name = obj.key
        if await self.api.delete(object_path(kind, namespace, name), obj.metadata.uid):
            report.deleted += 1
            self._count(kind, "delete")
            log.info("%s %s/%s deleted: no longer desired", kind, namespace, name,
                     extra=object_fields(self.cluster, kind, namespace, name))

    async def _guard(self, key: ObjectKey, report: SyncReport, work: Any) -> None:
        try:
            await work
        except Exception as error:
            self._failed(key, error, report)

    def _failed(self, key: ObjectKey, error: Exception, report: SyncReport) -> None:
        kind, namespace, name = key
        report.failed += 1
        fields = object_fields(self.cluster, kind, namespace, name)
        if isinstance(error, ApiException):
            log.warning("provisioning %s %s/%s failed: API answered %s %s", kind, namespace, name, error.status,
                        error.reason, extra=fields)
        else:
            log.warning("provisioning %s %s/%s failed: %s", kind, namespace, name, type(error).__name__,
                        extra=fields, exc_info=not isinstance(error, OSError))
        if self.metrics is not None:
            self.metrics.failed(self.cluster, kind)

    def _count(self, kind: str, op: str) -> None:
        if self.metrics is not None:
            self.metrics.written(self.cluster, kind, op)
