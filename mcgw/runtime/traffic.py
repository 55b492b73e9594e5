"""Which cluster serves each gateway's traffic: Envoy's load reports (LRS) turned into per-ServiceImport rates by
source cluster and priority level, the level that serves now, and a failover event whenever that level changes.

mcgw puts every source cluster of a ServiceImport in a locality of its own (``sub_zone`` = the cluster) at its
failover priority, so a load report already says, per gateway Envoy, how many requests each cluster answered
in the last interval. Reports of the Envoys of one Gateway (its replicas) add up. Pure: reports and the clock
come in as arguments; nothing here does I/O.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from xdsserver import CLUSTER, LoadReport, LoadReporting, NodeGroup, SnapshotCache

log = logging.getLogger("mcgw.traffic")

# Envoy clusters of ServiceImport backends are named serviceimport/<namespace>/<name>/<port>[/<variant>...].
_IMPORT_PREFIX = "serviceimport/"


@dataclass(frozen=True, slots=True)
class LocalityCounts:
    """One source cluster at one priority level in one report interval, as Envoy counted it."""

    source_cluster: str
    priority: int
    succeeded: int
    errors: int
    in_progress: int

    @property
    def completed(self) -> int:
        return self.succeeded + self.errors


@dataclass(frozen=True, slots=True)
class ServiceKey:
    """A ServiceImport as one Gateway of one member cluster sends to it."""

    cluster: str  # the member cluster of the Gateway
    gateway: str  # namespace/name
    service: str  # namespace/name:port of the ServiceImport

    def labels(self) -> tuple[str, str, str]:
        return self.cluster, self.gateway, self.service


def service_of(envoy_cluster: str) -> str | None:
    """``namespace/name:port`` of the ServiceImport an Envoy cluster sends to; None for any other cluster."""
    if not envoy_cluster.startswith(_IMPORT_PREFIX):
        return None
    parts = envoy_cluster[len(_IMPORT_PREFIX):].split("/")
    if len(parts) < 3 or not all(parts[:3]):
        return None
    return f"{parts[0]}/{parts[1]}:{parts[2]}"


@dataclass(frozen=True, slots=True)
class LevelTraffic:
    """One priority level of a ServiceImport: its clusters and what they served, per second."""

    priority: int
    clusters: tuple[str, ...]
    requests_per_s: float  # over the current window (the latest reports)
    errors_per_s: float
    in_flight: int
    share: float  # of the ServiceImport's requests in the current window
    requests_per_s_1m: float  # over the last minute


@dataclass(frozen=True, slots=True)
class FailoverEvent:
    """Traffic of a ServiceImport moved from one priority level to another."""

    at: float  # on the clock the tracker was given
    key: ServiceKey
    from_priority: int
    to_priority: int
    from_clusters: tuple[str, ...]
    to_clusters: tuple[str, ...]
    share: float  # of the current window's requests the new level served
    requests_per_s: float  # the ServiceImport's whole rate in the current window


@dataclass(frozen=True, slots=True)
class ServiceTraffic:
    key: ServiceKey
    serving_priority: int | None  # the level with most requests in the current window; None before any traffic
    levels: tuple[LevelTraffic, ...]
    in_flight: Mapping[tuple[str, int], int] = field(default_factory=dict)  # (source cluster, priority) → now


@dataclass(slots=True)
class _Interval:
    at: float
    node: str
    seconds: float
    counts: tuple[LocalityCounts, ...]


@dataclass(slots=True)
class _Service:
    intervals: deque[_Interval] = field(default_factory=deque)
    serving: int | None = None


@dataclass(frozen=True, slots=True)
class Totals:
    """Cumulative counts since the tracker started, for Prometheus counters."""

    requests: Mapping[tuple[str, str, str, str, str], int]  # (cluster, gateway, service, source, priority)
    errors: Mapping[tuple[str, str, str, str, str], int]
    failovers: Mapping[tuple[str, str, str], int]


class TrafficTracker:
    """Load reports in, per-ServiceImport traffic and failover events out.

    ``window`` is how far back the per-minute rates look; ``current`` is the window that decides the serving
    level (a little over two report intervals, so each Envoy's latest report is in it). ``history`` bounds the
    failover events kept. ``on_event`` is told of each event as it is recorded.
    """

    def __init__(self, window: float = 60.0, current: float = 2.5, history: int = 200,
                 on_event: Callable[[FailoverEvent], None] | None = None) -> None:
        if current <= 0 or window < current:
            raise ValueError("need 0 < current <= window")
        self.window, self.current = window, current
        self.events: deque[FailoverEvent] = deque(maxlen=history)
        self._services: dict[ServiceKey, _Service] = {}
        self._requests: dict[tuple[str, str, str, str, str], int] = {}
        self._errors: dict[tuple[str, str, str, str, str], int] = {}
        self._failovers: dict[tuple[str, str, str], int] = {}
        self._on_event = on_event

    def record(self, at: float, member_cluster: str, gateway: str, node: str, interval_s: float,
               clusters: Iterable[tuple[str, Iterable[LocalityCounts]]]) -> list[FailoverEvent]:
        """One report of one Envoy (``node``) of ``gateway`` in ``member_cluster``: ``clusters`` pairs each
        Envoy cluster's name with its localities' counts. Returns the failover events it caused."""
        by_service: dict[str, list[LocalityCounts]] = {}
        for name, localities in clusters:
            service = service_of(name)
            if service is not None:
                by_service.setdefault(service, []).extend(localities)
        events = []
        for service, counts in by_service.items():
            key = ServiceKey(member_cluster, gateway, service)
            state = self._services.setdefault(key, _Service())
            state.intervals.append(_Interval(at, node, max(interval_s, 1e-3), tuple(counts)))
            for count in counts:
                labels = (*key.labels(), count.source_cluster, str(count.priority))
                self._requests[labels] = self._requests.get(labels, 0) + count.completed
                self._errors[labels] = self._errors.get(labels, 0) + count.errors
            self._expire(state, at)
            event = self._check_level(key, state, at)
            if event is not None:
                events.append(event)
        return events

    def _expire(self, state: _Service, now: float) -> None:
        while state.intervals and state.intervals[0].at < now - self.window:
            state.intervals.popleft()

    def _check_level(self, key: ServiceKey, state: _Service, now: float) -> FailoverEvent | None:
        levels = self._levels(state, now)
        total = sum(level.requests_per_s for level in levels)
        if total <= 0:
            return None  # no traffic says nothing about where it goes
        top = max(levels, key=lambda level: (level.requests_per_s, -level.priority))
        previous, state.serving = state.serving, top.priority
        if previous is None or previous == top.priority:
            return None
        before = next((level.clusters for level in levels if level.priority == previous), ())
        event = FailoverEvent(now, key, previous, top.priority, before, top.clusters, round(top.share, 3),
                              round(total, 1))
        self.events.append(event)
        labels = key.labels()
        self._failovers[labels] = self._failovers.get(labels, 0) + 1
        log.info("traffic of %s through %s/%s moved from priority %d %s to priority %d %s (%.0f%% of %.1f req/s)",
                 key.service, key.cluster, key.gateway, previous, list(before), top.priority, list(top.clusters),
                 100 * top.share, total)
        if self._on_event is not None:
            self._on_event(event)
        return event

    def _latest(self, state: _Service, now: float) -> dict[str, _Interval]:
        """Each Envoy's latest report in the current window: rates add up across replicas, never double."""
        return {interval.node: interval for interval in state.intervals if interval.at >= now - self.current}

    def _levels(self, state: _Service, now: float) -> tuple[LevelTraffic, ...]:
        latest = self._latest(state, now)
        minute: dict[int, int] = {}
        span = max(min(self.window, now - state.intervals[0].at + state.intervals[0].seconds), 1e-3) \
            if state.intervals else 1.0
        for interval in state.intervals:
            for count in interval.counts:
                minute[count.priority] = minute.get(count.priority, 0) + count.completed
        rates: dict[int, list[float]] = {}
        clusters: dict[int, set[str]] = {}
        for interval in state.intervals:
            for count in interval.counts:
                clusters.setdefault(count.priority, set()).add(count.source_cluster)
        for interval in latest.values():
            for count in interval.counts:
                rate = rates.setdefault(count.priority, [0.0, 0.0, 0.0])
                rate[0] += count.completed / interval.seconds
                rate[1] += count.errors / interval.seconds
                rate[2] += count.in_progress
        total = sum(r[0] for r in rates.values())
        levels = []
        for priority in sorted(set(clusters) | set(rates)):
            requests, errors, in_flight = rates.get(priority, [0.0, 0.0, 0.0])
            levels.append(LevelTraffic(priority, tuple(sorted(clusters.get(priority, ()))), round(requests, 2),
                                       round(errors, 2), int(in_flight), requests / total if total else 0.0,
                                       round(minute.get(priority, 0) / span, 2)))
        return tuple(levels)

    def services(self, now: float) -> list[ServiceTraffic]:
        """Every ServiceImport with traffic in the last window, by key."""
        out = []
        for key, state in sorted(self._services.items(), key=lambda item: item[0].labels()):
            self._expire(state, now)
            if state.intervals:
                out.append(ServiceTraffic(key, state.serving, self._levels(state, now), self._in_flight(state, now)))
        return out

    def _in_flight(self, state: _Service, now: float) -> dict[tuple[str, int], int]:
        latest = self._latest(state, now)
        in_flight: dict[tuple[str, int], int] = {}
        for interval in latest.values():
            for count in interval.counts:
                key = (count.source_cluster, count.priority)
                in_flight[key] = in_flight.get(key, 0) + count.in_progress
        return in_flight

    def totals(self) -> Totals:
        return Totals(dict(self._requests), dict(self._errors), dict(self._failovers))


def record_load_report(tracker: TrafficTracker, report: LoadReport, at: float | None = None) -> list[FailoverEvent]:
    """One LRS report of a gateway Envoy into the tracker, stamped ``at`` (wall-clock seconds; now by default)."""
    member_cluster, gateway = report.group
    return tracker.record(time.time() if at is None else at, member_cluster, gateway, report.node_id,
                          report.interval_s,
                          [(load.name, [LocalityCounts(loc.sub_zone, loc.priority, loc.succeeded, loc.errors,
                                                       loc.in_progress) for loc in load.localities])
                           for load in report.clusters] + [(name, []) for name in report.idle])


def reported_clusters(cache: SnapshotCache, group: NodeGroup) -> list[str]:
    """The ServiceImport clusters a node group's Envoys are asked to report: those of its current snapshot."""
    snapshot = cache.get(group)
    if snapshot is None:
        return []
    return sorted(name for name in snapshot.of_type(CLUSTER) if name.startswith(_IMPORT_PREFIX))


def load_reporting(tracker: TrafficTracker, cache: SnapshotCache, interval: float = 1.0,
                   after: Callable[[float], None] | None = None) -> LoadReporting:
    """The xDS server's load reporting for mcgw: each Envoy reports its node group's ServiceImport clusters every
    ``interval`` seconds, into ``tracker``; ``after`` is called with the time of each report once it is in."""

    def sink(report: LoadReport) -> None:
        now = time.time()
        record_load_report(tracker, report, now)
        if after is not None:
            after(now)

    return LoadReporting(sink, lambda group: reported_clusters(cache, group), interval)
