"""The load balancer's API side: list + watch Services and EndpointSlices, reconcile, write status and Events.

One reconcile task owns every change: the watches only update their caches and wake it, so addresses,
listeners and status are never changed by two passes at once. Each pass recomputes the whole plan
(``plan.py``) and applies the difference, so a missed or repeated event costs nothing but a pass.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import aiohttp
from kubernetes.aio import client

from .host import AddressLink
from .plan import (
    FORWARDED_PROTOCOLS,
    LB_CLASS,
    SERVICE_NAME_LABEL,
    TESTBED_NETWORKS,
    Allocation,
    Key,
    Pool,
    ServiceView,
    SliceView,
    desired_ingress,
    is_ours,
    parse_service,
    parse_slice,
    plan_allocations,
    plan_listeners,
    seeded_holdings,
    stale_ingress,
    status_patch,
)
from .proxy import Proxy

log = logging.getLogger(__name__)

COMPONENT = "mcgw-testbed-loadbalancer"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
RETRY_SECONDS = 1.0  # a pass that could not finish everything runs again this soon
RESYNC_SECONDS = 30.0  # and every pass runs at least this often
T = TypeVar("T", ServiceView, SliceView)


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        try:
            message = str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            message = body
        super().__init__(f"API answered {status}: {message[:300]}")
        self.status = status


async def request(api: client.ApiClient, method: str, path: str, query: Sequence[tuple[str, str]] = (),
                  body: Any = None, content_type: str = "application/json",
                  client_timeout: aiohttp.ClientTimeout = REQUEST_TIMEOUT) -> aiohttp.ClientResponse:
    """``method path`` with ``api``'s server, TLS and credentials; the body is left to the caller, who must
    release the response. Anything but 2xx raises ``ApiError``."""
    method, url, headers, data, _ = await api.param_serialize(
        method, path, query_params=list(query), body=body, auth_settings=["BearerToken"],
        header_params={"Accept": "application/json", "Content-Type": content_type})
    answer = await api.call_api(method, url, headers, data, _request_timeout=client_timeout)
    response: aiohttp.ClientResponse = answer.response
    if not 200 <= response.status < 300:
        try:
            text = await response.text(errors="replace")
        finally:
            response.release()
        raise ApiError(response.status, text)
    return response


async def request_json(api: client.ApiClient, method: str, path: str, body: Any = None,
                       content_type: str = "application/json", query: Sequence[tuple[str, str]] = ()) -> Any:
    response = await request(api, method, path, query, body, content_type)
    try:
        return json.loads(await response.read())
    finally:
        response.release()


class _Expired(Exception):
    """410 Gone: our resourceVersion is too old; only a relist recovers."""


class Watch(Generic[T]):
    """One collection kept in ``items`` by list + watch; ``on_change`` after every change.

    A 410 (HTTP or a watch ERROR event) relists; any other failure backs off (full jitter, capped at
    5 s) and resumes from the last resourceVersion. Bookmarks keep that resourceVersion fresh, and a
    watch silent for longer than bookmarks allow is resumed, as it may be a dead connection.
    """

    def __init__(self, api: client.ApiClient, what: str, path: str, selectors: Sequence[tuple[str, str]],
                 parse: Callable[[dict[str, Any]], T], on_change: Callable[[], None]) -> None:
        self.api, self.what, self.path, self.selectors = api, what, path, list(selectors)
        self.parse: Callable[[dict[str, Any]], T] = parse
        self.on_change: Callable[[], None] = on_change
        self.items: dict[Key, T] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.relists = 0

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                if not self.resource_version:
                    await self._list()
                if await self._watch():
                    attempt = 0
            except _Expired:
                log.info("%s: resourceVersion %s expired; relisting", self.what, self.resource_version)
                self.resource_version = ""
            except Exception as error:  # every failure is retried: a dead watch would freeze the load balancer
                delay = random.random() * min(5.0, 0.2 * 2 ** attempt)
                attempt = min(attempt + 1, 10)
                log.warning("%s: %s; retrying in %.1fs", self.what, error, delay)
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        items: dict[Key, T] = {}
        token: str = ""
        version: str = ""
        while True:
            query = [("limit", "500"), *self.selectors, *([("continue", token)] if token else [])]
            try:
                page = await request_json(self.api, "GET", self.path, query=query)
            except ApiError as error:
                if error.status == 410 and token:  # the continue token expired: start over
                    items, token = {}, ""
                    continue
                raise
            for obj in page.get("items") or []:
                parsed = self.parse(obj)
                items[parsed.key] = parsed
            token = (page.get("metadata") or {}).get("continue") or ""
            version = (page.get("metadata") or {}).get("resourceVersion") or ""
            if not token:
                break
        if self.synced.is_set():
            self.relists += 1
        self.items, self.resource_version = items, version
        self.synced.set()
        self.on_change()

    async def _watch(self) -> bool:
        """One watch until the server ends it; returns whether it delivered anything."""
        query = [*self.selectors, ("watch", "true"), ("allowWatchBookmarks", "true"),
                 ("resourceVersion", self.resource_version),
                 ("timeoutSeconds", str(random.randint(240, 300)))]
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=150)
        try:
            response = await request(self.api, "GET", self.path, query, client_timeout=timeout)
        except ApiError as error:
            if error.status == 410:
                raise _Expired() from error
            raise
        delivered = False
        buffer = bytearray()
        try:
            # Chunks, not readline(): one event is one line, and a large object's line has no length limit.
            while chunk := await response.content.readany():
                buffer += chunk
                *lines, rest = buffer.split(b"\n")
                buffer = bytearray(rest)
                for line in lines:
                    if line.strip():
                        delivered = True
                        self._event(json.loads(line))
        finally:
            response.close()
        return delivered

    def _event(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Expired()
            raise ApiError(int(obj.get("code") or 500), json.dumps(obj))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            parsed = self.parse(obj)
            if kind == "DELETED":
                self.items.pop(parsed.key, None)
            else:
                self.items[parsed.key] = parsed
            self.on_change()
        if version:
            self.resource_version = str(version)

    def put(self, obj: dict[str, Any]) -> None:
        """Take a newer version of an object we just wrote, before its watch event arrives."""
        parsed = self.parse(obj)
        self.items[parsed.key] = parsed


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LoadBalancer:
    """Allocates addresses to the cluster's LoadBalancer Services, binds and forwards them, and reports."""

    def __init__(self, api: client.ApiClient, cluster: str, pool: Pool, link: AddressLink, proxy: Proxy,
                 lb_class: str = LB_CLASS,
                 endpoint_networks: Sequence[ipaddress.IPv4Network] = TESTBED_NETWORKS) -> None:
        self.api, self.cluster, self.pool, self.link, self.proxy = api, cluster, pool, link, proxy
        self.lb_class, self.endpoint_networks = lb_class, tuple(endpoint_networks)
        self._wake = asyncio.Event()
        self.services: Watch[ServiceView] = Watch(api, "Services", "/api/v1/services", [], parse_service,
                                                  self._wake.set)
        self.slices: Watch[SliceView] = Watch(api, "EndpointSlices", "/apis/discovery.k8s.io/v1/endpointslices",
                                              [("labelSelector", SERVICE_NAME_LABEL)], parse_slice, self._wake.set)
        self.bound: dict[Key, str] = {}  # Service -> the address bound on the link for it
        self._reported: dict[str, str] = {}  # Service uid -> the last Event message sent about it
        self._background: set[asyncio.Task[None]] = set()
        self.passes = 0

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        tasks = [asyncio.create_task(self.services.run(), name="watch services"),
                 asyncio.create_task(self.slices.run(), name="watch endpointslices")]
        try:
            await self.services.synced.wait()
            await self.slices.synced.wait()
            ready = on_ready
            while True:
                self._wake.clear()
                try:
                    complete = await self.reconcile()
                except Exception:
                    log.exception("reconcile pass failed; retrying")
                    complete = False
                if ready is not None:
                    ready()
                    ready = None
                try:
                    async with asyncio.timeout(RESYNC_SECONDS if complete else RETRY_SECONDS):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def reconcile(self) -> bool:
        """One pass; returns False when something must be retried (an address, a listener, a status write)."""
        self.passes += 1
        complete = True
        services = dict(self.services.items)
        by_service: dict[Key, list[SliceView]] = {}
        for endpoint_slice in self.slices.items.values():
            by_service.setdefault(endpoint_slice.service_key, []).append(endpoint_slice)
        allocations = plan_allocations(services.values(), seeded_holdings(services.values(), self.bound, self.pool),
                                       self.pool, self.lb_class)
        for key, address in list(self.bound.items()):
            if allocations.get(key, Allocation(None)).ip != address:
                await self._release(key, address)
        for key, allocation in allocations.items():
            service = services[key]
            if allocation.ip is None:
                self._report(service, "Warning", "AllocationFailed", allocation.failure)
                continue
            if key not in self.bound:
                try:
                    await self.link.add(allocation.ip)
                except RuntimeError as error:
                    self._report(service, "Warning", "AllocationFailed", f"cannot bind {allocation.ip}: {error}")
                    complete = False
                    continue
                self.bound[key] = allocation.ip
                log.info("Service %s/%s: %s", *key, allocation.ip)
                self._report(service, "Normal", "IPAllocated", f"Assigned IP {allocation.ip} from pool {self.pool}")
            ports = {(p.protocol, p.port) for p in service.ports if p.protocol in FORWARDED_PROTOCOLS}
            plan = plan_listeners(service, by_service.get(key, ()), self.endpoint_networks)
            errors = await self.proxy.sync(allocation.ip, ports, plan)
            for problem in errors:
                log.warning("Service %s/%s: cannot listen on %s", *key, problem)
                complete = False
        for key, service in services.items():
            if is_ours(service, self.lb_class):
                desired = desired_ingress(Allocation(self.bound.get(key)))
            elif stale_ingress(service, self.pool):
                desired = ()
            else:
                continue
            if service.ingress != desired and not await self._write_status(service, desired):
                complete = False
        live = {s.uid for s in services.values()}
        self._reported = {uid: message for uid, message in self._reported.items() if uid in live}
        return complete

    async def _release(self, key: Key, address: str) -> None:
        self.proxy.release(address)
        await self.link.remove(address)
        del self.bound[key]
        log.info("Service %s/%s: released %s", *key, address)

    async def _write_status(self, service: ServiceView, ingress: tuple[tuple[str, str | None], ...]) -> bool:
        path = f"/api/v1/namespaces/{service.namespace}/services/{service.name}/status"
        try:
            updated = await request_json(self.api, "PATCH", path, status_patch(ingress),
                                         content_type="application/merge-patch+json")
        except ApiError as error:
            if error.status == 404:
                return True
            log.warning("Service %s/%s: status not written: %s", service.namespace, service.name, error)
            return False
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            log.warning("Service %s/%s: status not written: %s", service.namespace, service.name, error)
            return False
        self.services.put(updated)
        return True

    def _report(self, service: ServiceView, type_: str, reason: str, message: str) -> None:
        """An Event on the Service, once per distinct message (a pass repeats its findings)."""
        if self._reported.get(service.uid) == message:
            return
        self._reported[service.uid] = message
        if type_ == "Warning":
            log.warning("Service %s/%s: %s: %s", service.namespace, service.name, reason, message)
        task = asyncio.create_task(self._send_event(service, type_, reason, message))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_event(self, service: ServiceView, type_: str, reason: str, message: str) -> None:
        now = _now()
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{service.name}.", "namespace": service.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Service", "namespace": service.namespace,
                               "name": service.name, "uid": service.uid},
            "type": type_, "reason": reason, "message": message,
            "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
            "reportingInstance": f"{COMPONENT}-{self.cluster}",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        for attempt in range(3):
            try:
                await request_json(self.api, "POST", f"/api/v1/namespaces/{service.namespace}/events", event)
                return
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as error:
                if isinstance(error, ApiError) and error.status in (403, 404, 422):
                    log.warning("Event for Service %s/%s refused: %s", service.namespace, service.name, error)
                    return
                await asyncio.sleep(0.5 * (attempt + 1))

    async def close(self) -> None:
        """Close every listener and remove every address (status is left: a restart keeps the addresses)."""
        for task in list(self._background):
            task.cancel()
        self.proxy.close()
        for key, address in list(self.bound.items()):
            await self.link.remove(address)
            del self.bound[key]
