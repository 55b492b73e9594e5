"""Capacity-based overflow: how much of a ServiceImport's traffic goes past its first level when that level is
full, decided from the Envoys' load reports.

The load of a ServiceImport port in a member cluster is what all that cluster's gateways sent it per second
(every level, the latest report of each Envoy); its capacity is what translation says the first level's healthy
endpoints serve (:meth:`~mcgw.ir.failover.FailoverContext.capacities`). Above the capacity, the excess share
(1 - capacity / load) goes to the next level; the decision moves only by a step worth acting on, and overflow
ends only once the load is under 90 % of the capacity, so a load near the capacity does not flap. The
decisions go back into translation as :attr:`~mcgw.runtime.incremental.McsInput.overflow`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mcgw.runtime.reconciler import Reconciler
from mcgw.runtime.traffic import ServiceTraffic, TrafficTracker

log = logging.getLogger(__name__)

PortKey = tuple[str, str, int]  # (namespace, name, port) of a ServiceImport port
# Overflow ends below this share of the capacity; between it and the capacity, the decision holds.
RELEASE_BELOW = 0.9
# A new share is acted on only when it differs by at least this much (each change is an EDS push).
MIN_STEP = 0.05


def next_share(current: float, load: float, capacity: float) -> float:
    """The share of ``load`` (requests/s) to send past the first level, given the ``current`` one."""
    if capacity <= 0:
        return 1.0 if load > 0 else current
    if load <= capacity:
        return 0.0 if load < RELEASE_BELOW * capacity else current
    wanted = 1.0 - capacity / load
    return round(wanted, 3) if abs(wanted - current) >= MIN_STEP or current == 0.0 else current


@dataclass(frozen=True, slots=True)
class Decision:
    """One ServiceImport port of one member cluster: its load and capacity when last decided, and the share
    sent past the first level since ``since`` (wall-clock)."""

    cluster: str
    service: PortKey
    load: float
    capacity: float
    share: float
    since: float


def port_key(service: str) -> PortKey | None:
    """``namespace/name:port`` (the traffic view's service) as a key, or None if it is not one."""
    namespaced, _, port = service.rpartition(":")
    namespace, _, name = namespaced.partition("/")
    return (namespace, name, int(port)) if namespace and name and port.isdigit() else None


def loads(services: Iterable[ServiceTraffic]) -> dict[tuple[str, PortKey], float]:
    """Requests per second per (member cluster, ServiceImport port), every gateway and level added up."""
    out: dict[tuple[str, PortKey], float] = {}
    for service in services:
        key = port_key(service.key.service)
        if key is not None:
            total = (service.key.cluster, key)
            out[total] = out.get(total, 0.0) + sum(level.requests_per_s for level in service.levels)
    return out


class CapacityGovernor:
    """The current decisions, per member cluster. :meth:`evaluate` takes the latest traffic and capacities and
    returns the member clusters whose decisions changed (translate them again with :meth:`overflow`)."""

    def __init__(self) -> None:
        self._decisions: dict[str, dict[PortKey, Decision]] = {}

    def overflow(self, cluster: str) -> dict[PortKey, float]:
        """What translation of ``cluster`` reads: the share each port sends past its first level (> 0 only)."""
        return {key: d.share for key, d in self._decisions.get(cluster, {}).items() if d.share > 0}

    def decisions(self) -> list[Decision]:
        return sorted((d for by_port in self._decisions.values() for d in by_port.values()),
                      key=lambda d: (d.cluster, d.service))

    def evaluate(self, now: float, services: Iterable[ServiceTraffic],
                 capacities: Mapping[str, Mapping[PortKey, float]]) -> set[str]:
        """Decide again for every port with a capacity; ports without one (any more) are dropped."""
        load = loads(services)
        changed: set[str] = set()
        for cluster in set(self._decisions) | set(capacities):
            before = self._decisions.get(cluster, {})
            after: dict[PortKey, Decision] = {}
            for key, capacity in capacities.get(cluster, {}).items():
                current = before.get(key)
                share = current.share if current is not None else 0.0
                measured = load.get((cluster, key), 0.0)
                decided = next_share(share, measured, capacity)
                since = current.since if current is not None and current.share == decided else now
                after[key] = Decision(cluster, key, round(measured, 1), capacity, decided, since)
                if decided != share:
                    log.info("capacity of %s/%s:%d in %s: %.1f req/s against %.0f; %.0f%% now goes past the first "
                             "level (was %.0f%%)", *key, cluster, measured, capacity, 100 * decided, 100 * share)
            if {k: d.share for k, d in after.items() if d.share} != {k: d.share for k, d in before.items() if d.share}:
                changed.add(cluster)
            if after:
                self._decisions[cluster] = after
            else:
                self._decisions.pop(cluster, None)
        return changed


# Decide at most this often: every Envoy reports once an interval, and one evaluation covers them all.
EVALUATE_EVERY = 0.2


class CapacityLoop:
    """Evaluates ``governor`` after load reports (at most every :data:`EVALUATE_EVERY` s) against the
    capacities of the reconciler's latest outputs, and hands changed decisions to the reconciler."""

    def __init__(self, governor: CapacityGovernor, tracker: TrafficTracker, reconciler: Reconciler) -> None:
        self.governor, self.tracker, self.reconciler = governor, tracker, reconciler
        self._last = float("-inf")

    def after_report(self, now: float) -> None:
        if now - self._last < EVALUATE_EVERY:
            return
        self._last = now
        capacities = {cluster: output.capacities for cluster, output in self.reconciler.outputs.items()
                      if output.capacities}
        if not capacities and not self.governor.decisions():
            return
        for cluster in self.governor.evaluate(now, self.tracker.services(now), capacities):
            self.reconciler.set_overflow(cluster, self.governor.overflow(cluster))
