"""One member cluster: its API client, one informer per watched kind, and its availability.

Availability rules, and why:

- **Unavailable** when any informer has been failing (cannot list or watch) for ``unavailable_after``
  seconds (5 s by default): long enough to ride out a single dropped connection, short enough that
  /api/status and the metrics say what is going on.
- **Unavailable at once** when the API server cannot be reached before the cluster was ever listed:
  the readiness gate (``Store.all_reachable_synced``) waits for clusters that are synced *or*
  unavailable, so a cluster that is down at startup must not hold back every other cluster's config.
- **Available** again once every informer is watching.

Either way the cluster's last known objects stay in the Store: a member that drops out never
withdraws what other clusters' gateways serve.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kubernetes.aio import client, config

from mcgw.objects.kinds import KINDS, Kind
from mcgw.providers.kubernetes.informer import Informer, InformerHealth, InformerSettings, InformerState
from mcgw.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemberHealth:
    """What the cluster's informers are doing, for /api/status and the tests."""

    name: str
    available: bool
    reason: str
    informers: tuple[InformerHealth, ...]


async def api_client_from_kubeconfig(kubeconfig: str | Path, context: str | None = None) -> client.ApiClient:
    """An ApiClient of its own for one kubeconfig context (never the process-wide default configuration)."""
    api: client.ApiClient = await config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), context=context, persist_config=False)
    return api


class MemberCluster:
    """Runs one Informer per kind for cluster ``name``, writing into ``store``; owns (and closes) ``api``."""

    def __init__(self, name: str, api: client.ApiClient, store: Store, *,
                 kinds: Iterable[Kind] = KINDS, settings: InformerSettings | None = None,
                 unavailable_after: float = 5.0) -> None:
        self.name, self.api, self.store = name, api, store
        self.unavailable_after = unavailable_after
        self.informers = {kind.name: Informer(api, name, kind, store, settings, on_state=self._on_state)
                          for kind in kinds}
        self._tasks: list[asyncio.Task[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._available: bool | None = None  # None: not decided yet (starting)
        self._reason = ""
        self._stopping = False

    @classmethod
    async def from_kubeconfig(cls, name: str, store: Store, kubeconfig: str | Path, context: str | None = None, *,
                              kinds: Iterable[Kind] = KINDS, settings: InformerSettings | None = None,
                              unavailable_after: float = 5.0) -> MemberCluster:
        api = await api_client_from_kubeconfig(kubeconfig, context)
        return cls(name, api, store, kinds=kinds, settings=settings, unavailable_after=unavailable_after)

    async def start(self) -> None:
        """Start every informer; returns at once (the Store says when the cluster is synced)."""
        if self._tasks:
            return
        for informer in self.informers.values():
            self._tasks.append(asyncio.create_task(informer.run(), name=f"informer {self.name}/{informer.kind}"))

    async def stop(self) -> None:
        """Cancel the informers, then close the API client (and its connection pool)."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._tasks:
            task.cancel()
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self._tasks.clear()
            await self.api.close()  # type: ignore[no-untyped-call]

    @property
    def available(self) -> bool:
        return bool(self._available)

    @property
    def health(self) -> MemberHealth:
        return MemberHealth(self.name, self.available, self._reason,
                            tuple(InformerHealth.of(i) for i in self.informers.values()))

    # -- availability ---------------------------------------------------------------------------------

    def _on_state(self, _informer: Informer) -> None:
        self._evaluate()

    def _evaluate(self) -> None:
        if self._stopping:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = time.monotonic()
        failing = [i for i in self.informers.values() if i.failing_since is not None]
        for informer in failing:
            assert informer.failing_since is not None
            unreachable_at_start = not informer.has_listed and informer.connection_failed
            if unreachable_at_start or now - informer.failing_since >= self.unavailable_after:
                self._set(False, f"{informer.kind}: {informer.last_error}")
                return
        if failing:  # not failing for long enough yet: look again when the oldest failure is due
            due = min(i.failing_since or now for i in failing) + self.unavailable_after
            self._timer = asyncio.get_running_loop().call_at(
                asyncio.get_running_loop().time() + max(0.0, due - now), self._evaluate)
            return
        if all(i.state is InformerState.WATCHING for i in self.informers.values()):
            self._set(True, "")

    def _set(self, available: bool, reason: str) -> None:
        if self._available == available and self._reason == reason:
            return
        if self._available != available:
            if available:
                log.info("cluster %s: available (every kind is watched)", self.name, extra={"cluster": self.name})
            else:
                log.warning("cluster %s: unavailable, keeping its last known objects: %s", self.name, reason,
                            extra={"cluster": self.name})
        self._available, self._reason = available, reason
        self.store.set_available(self.name, available, reason)
