"""Lease-based leader election (coordination.k8s.io/v1), one Lease in each member cluster.

Why one election per member cluster: status is written into each member cluster separately, so
"who writes cluster X's status" is a question for cluster X's API server. A replica that loses its
connection to X loses X's Lease (and stops writing there) while it keeps writing to the clusters it
still reaches, and another replica that does reach X takes over. One global Lease would either stall
status everywhere or let a partitioned leader keep a cluster nobody writes to. ``ClusterLeadership``
bundles the electors and answers ``is_leader_for(cluster)`` for the status writer.

Where the Lease lives: ``kube-system`` by default (configurable). mcgw may run outside the member
clusters, so there is no "own namespace" that is sure to exist in each of them, and creating a
namespace in every member needs far more RBAC than writing one Lease. kube-system exists in every
cluster.

Timing follows client-go: the holder renews every ``retry_period``; if it cannot renew for
``renew_deadline`` it stops being leader; the others take over once the Lease has not changed for
``lease_duration`` *as measured by their own clock* since they last saw it change (not by comparing
``renewTime`` with their wall clock, so clock skew between replicas does not matter). Since
``renew_deadline < lease_duration``, a holder that lost contact stops writing before anyone else may
start. Writes carry the ``resourceVersion`` they read, so two candidates racing for an expired Lease
cannot both win: the loser gets 409 Conflict and tries again later. On a clean stop the holder
releases the Lease (empty holder), so a standby takes over at once instead of waiting out
``lease_duration``: between attempts a standby watches the Lease, and a freed Lease wakes it (without
watch permission it polls, and takes over within one ``retry_period``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from mcgw.providers.kubernetes.informer import describe
from mcgw.providers.kubernetes.lister import api_get, api_json
from mcgw.support.timestamps import rfc3339

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "kube-system"
DEFAULT_LEASE_NAME = "mcgw-controller"


def default_identity() -> str:
    """hostname_pid_random: unique per process, and says which pod or host holds the Lease."""
    return f"{socket.gethostname()}_{os.getpid()}_{secrets.token_hex(4)}"


def _micro_time(moment: dt.datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 with exactly six fractional digits, in UTC."""
    return rfc3339(moment.timestamp(), fraction=6)


class LeaderElector:
    """Holds (or waits for) one Lease in one member cluster; ``run()`` until ``release()`` or cancellation."""

    def __init__(self, api: client.ApiClient, cluster: str, *, namespace: str = DEFAULT_NAMESPACE,
                 name: str = DEFAULT_LEASE_NAME, identity: str | None = None, lease_duration: float = 15.0,
                 renew_deadline: float = 10.0, retry_period: float = 2.0,
                 on_change: Callable[[str, bool], None] | None = None) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError(f"need lease_duration > renew_deadline > retry_period > 0, got {lease_duration} > "
                             f"{renew_deadline} > {retry_period}")
        self.api, self.cluster, self.namespace, self.name = api, cluster, namespace, name
        self.identity = identity or default_identity()
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.on_change = on_change
        self.leading = asyncio.Event()  # set while this elector is the leader
        self.following = asyncio.Event()  # set while it is not
        self.following.set()
        self.holder = ""  # the holder we last saw in the Lease ("" when free or unknown)
        self.terms = 0  # how many times this elector became leader
        self.released = False  # whether the last stop freed the Lease (False: it expires after lease_duration)
        # A release is worth more patience than a renewal attempt: without it, a standby waits out the lease.
        self._release_deadline = max(2 * retry_period, renew_deadline / 2)
        self._path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self._observed_version = ""
        self._observed_at = 0.0
        self._renewed_at = 0.0  # monotonic time of our last successful acquire/renew
        self._stop = asyncio.Event()
        self._release_requested = True
        self._running = False
        self._done = asyncio.Event()
        self._done.set()

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    def is_leader_now(self) -> bool:
        """Leader, and the Lease was renewed within ``renew_deadline``: ask this right before writing.

        Between two renew attempts ``is_leader`` can lag; this also fails when the renew loop is stuck.
        """
        return self.is_leader and time.monotonic() - self._renewed_at < self.renew_deadline

    def _extra(self) -> dict[str, str]:
        return {"cluster": self.cluster, "kind": "Lease", "object": f"{self.namespace}/{self.name}"}

    # -- the loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Campaign, then renew while leading; on return (release or cancellation) the Lease is let go."""
        self._stop.clear()
        self._running = True
        self._done.clear()
        try:
            while not self._stop.is_set():
                if not self.is_leader:
                    if await self._attempt(deadline=self.retry_period * 2):
                        self._set_leader(True)
                    else:
                        await self._pause_until_released(self.retry_period * random.uniform(1.0, 1.2))
                    continue
                await self._pause(self.retry_period)
                if self._stop.is_set():
                    break
                left = self.renew_deadline - (time.monotonic() - self._renewed_at)
                if left <= 0 or not await self._attempt(deadline=left):
                    if self.holder not in ("", self.identity):
                        self._set_leader(False, f"the Lease is now held by {self.holder}")
                    elif time.monotonic() - self._renewed_at >= self.renew_deadline:
                        self._set_leader(False, f"could not renew the Lease for {self.renew_deadline:.0f}s")
        finally:  # stopped or cancelled: both are a clean stop (a killed process never gets here)
            try:
                if self.is_leader and self._release_requested:
                    await self._let_go()
            finally:
                self._set_leader(False, "stopped")
                self._running = False
                self._done.set()

    async def release(self) -> None:
        """Stop campaigning and, if leading, free the Lease so that a standby takes over at once."""
        await self.stop(release=True)

    async def stop(self, release: bool = True) -> None:
        """Stop campaigning; ``release=False`` keeps the Lease until it expires (as a crashed process would)."""
        self._release_requested = release
        self._stop.set()
        if self._running:
            # run() finishes its current request (bounded by its deadline) and then lets go.
            bound = self.renew_deadline + self._release_deadline + 1
            try:
                async with asyncio.timeout(bound):
                    await self._done.wait()
            except TimeoutError:
                log.warning("cluster %s: leader election did not stop within %.0fs", self.cluster, bound,
                            extra=self._extra())
        elif release and self.is_leader:
            await self._let_go()
            self._set_leader(False, "stopped")

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when asked to stop."""
        try:
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        except TimeoutError:
            pass

    async def _pause_until_released(self, seconds: float) -> None:
        """A standby's sleep until its next attempt, cut short when the watched Lease is freed.

        A holder that stops cleanly empties the Lease; watching it lets a standby take over within a
        round trip instead of within a retry period. Without watch permission, or on any error, this
        is a plain sleep.
        """
        if not self._observed_version or self.holder == "":
            await self._pause(seconds)
            return
        started = time.monotonic()
        waiters = [asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(self._watch_until_free(seconds))]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            results = await asyncio.gather(*waiters, return_exceptions=True)
        watch_result = results[1]
        if isinstance(watch_result, BaseException) and not isinstance(watch_result, asyncio.CancelledError):
            log.debug("cluster %s: cannot watch the Lease %s/%s (%s); polling it", self.cluster, self.namespace,
                      self.name, describe(watch_result), extra=self._extra())
            await self._pause(seconds - (time.monotonic() - started))  # a failed watch still waits out the pause

    async def _watch_until_free(self, seconds: float) -> None:
        """Return when a watch event shows the Lease without a holder; every event counts as observing it."""
        query = [("watch", "true"), ("fieldSelector", f"metadata.name={self.name}"),
                 ("resourceVersion", self._observed_version), ("timeoutSeconds", str(max(1, round(seconds))))]
        timeout = aiohttp.ClientTimeout(total=None, connect=seconds, sock_connect=seconds)
        response = await api_get(self.api, self._path, query, timeout)
        try:
            buffer = b""
            while chunk := await response.content.readany():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in filter(bytes.strip, lines):
                    event = json.loads(line)
                    if event.get("type") not in ("ADDED", "MODIFIED"):
                        continue
                    self._observe(event.get("object") or {})
                    if self.holder == "":
                        return
            await asyncio.Event().wait()  # the server ended the watch early: the pause's timeout ends it
        finally:
            with contextlib.suppress(Exception):
                response.close()

    def _set_leader(self, leader: bool, why: str = "") -> None:
        if leader == self.is_leader:
            return
        if leader:
            self.terms += 1
            self.following.clear()
            self.leading.set()
            log.info("cluster %s: %s is now the leader (Lease %s/%s)", self.cluster, self.identity, self.namespace,
                     self.name, extra=self._extra())
        else:
            self.leading.clear()
            self.following.set()
            log.log(logging.INFO if why == "stopped" else logging.WARNING,
                    "cluster %s: %s is no longer the leader: %s", self.cluster, self.identity, why,
                    extra=self._extra())
        if self.on_change is not None:
            self.on_change(self.cluster, leader)

    # -- one attempt ---------------------------------------------------------------------------------

    async def _attempt(self, deadline: float) -> bool:
        """Acquire or renew once; False on conflict, on a valid foreign holder, or on any error."""
        try:
            async with asyncio.timeout(deadline):
                return await self._try_acquire_or_renew()
        except (ApiException, OSError, TimeoutError, ValueError) as error:
            level = logging.WARNING if self.is_leader else logging.DEBUG
            log.log(level, "cluster %s: Lease %s/%s: %s", self.cluster, self.namespace, self.name, describe(error),
                    extra=self._extra())
            return False
        except Exception as error:  # e.g. aiohttp errors: never let the election loop die
            log.warning("cluster %s: Lease %s/%s: %s", self.cluster, self.namespace, self.name, describe(error),
                        extra=self._extra())
            return False

    async def _try_acquire_or_renew(self) -> bool:
        now = dt.datetime.now(dt.UTC)
        try:
            lease = await api_json(self.api, "GET", f"{self._path}/{self.name}")
        except ApiException as error:
            if error.status != 404:
                raise
            return await self._create(now)
        self._observe(lease)
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity and not self._expired(spec):
            return False
        mine = holder == self.identity
        new_spec = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "renewTime": _micro_time(now),
        }
        if not mine:
            new_spec["acquireTime"] = _micro_time(now)
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": lease["metadata"],
                "spec": new_spec}
        try:
            updated = await api_json(self.api, "PUT", f"{self._path}/{self.name}", body)
        except ApiException as error:
            if error.status == 409:  # someone wrote it since we read it: look again next time
                return False
            raise
        self._observe(updated)
        self._renewed_at = time.monotonic()
        return True

    async def _create(self, now: dt.datetime) -> bool:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, round(self.lease_duration)),
                         "acquireTime": _micro_time(now), "renewTime": _micro_time(now), "leaseTransitions": 0}}
        try:
            created = await api_json(self.api, "POST", self._path, body)
        except ApiException as error:
            if error.status == 409:  # another candidate created it first
                return False
            raise
        self._observe(created)
        self._renewed_at = time.monotonic()
        return True

    def _observe(self, lease: dict[str, Any]) -> None:
        """Remember when the Lease last changed, by our own clock."""
        version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        if version != self._observed_version:
            self._observed_version, self._observed_at = version, time.monotonic()
        self.holder = (lease.get("spec") or {}).get("holderIdentity") or ""

    def _expired(self, spec: dict[str, Any]) -> bool:
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        return time.monotonic() - self._observed_at >= duration

    async def _let_go(self) -> None:
        """Free the Lease if it is still ours: empty holder, so candidates need not wait for it to expire."""
        self.released = False
        try:
            async with asyncio.timeout(self._release_deadline):
                lease = await api_json(self.api, "GET", f"{self._path}/{self.name}")
                spec = lease.get("spec") or {}
                if spec.get("holderIdentity") != self.identity:
                    return
                now = _micro_time(dt.datetime.now(dt.UTC))
                spec = {**spec, "holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": now}
                await api_json(self.api, "PUT", f"{self._path}/{self.name}",
                               {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                "metadata": lease["metadata"], "spec": spec})
                self.released = True
                log.info("cluster %s: %s released the Lease", self.cluster, self.identity, extra=self._extra())
        except Exception as error:  # best effort: the Lease expires by itself anyway
            log.warning("cluster %s: could not release the Lease %s/%s: %s", self.cluster, self.namespace,
                        self.name, describe(error), extra=self._extra())


class ClusterLeadership:
    """One LeaderElector per member cluster, all with the same identity; the status writer asks
    ``is_leader_for(cluster)`` before writing into that cluster."""

    def __init__(self, electors: Mapping[str, LeaderElector]) -> None:
        self.electors = dict(electors)

    @classmethod
    def for_clusters(cls, apis: Mapping[str, client.ApiClient], *, identity: str | None = None,
                     **options: Any) -> ClusterLeadership:
        identity = identity or default_identity()
        return cls({name: LeaderElector(api, name, identity=identity, **options) for name, api in apis.items()})

    def is_leader_for(self, cluster: str) -> bool:
        elector = self.electors.get(cluster)
        return elector is not None and elector.is_leader_now()

    def leading(self) -> set[str]:
        return {name for name, elector in self.electors.items() if elector.is_leader}

    async def run(self) -> None:
        await asyncio.gather(*(elector.run() for elector in self.electors.values()))

    async def release(self) -> None:
        await asyncio.gather(*(elector.release() for elector in self.electors.values()))
