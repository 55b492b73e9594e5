"""Prometheus metrics of the controller: cluster health, object counts, reconciles and status writes.

Health and object counts are state, so they are read from the store when scraped (``refresh``, which
the admin server's ``before_scrape`` hook calls) rather than kept up to date on every event.
Reconcile durations come from the reconciler's per-cluster reports; status writes are counted by the
status writer as they happen.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mcgw.runtime.capacity import CapacityGovernor
from mcgw.runtime.reconciler import ClusterReport, Reconciler
from mcgw.runtime.traffic import TrafficTracker
from mcgw.store import Store

# A cluster's translation takes milliseconds for a few routes and seconds for thousands.
_RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ControllerMetrics:
    """The controller's metrics on ``registry`` (a fresh one by default, like ``XdsMetrics``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.ready = Gauge("mcgw_ready", "1 once every reachable cluster is synced and configuration is served",
                           registry=r)
        self.cluster_available = Gauge("mcgw_cluster_available", "1 while the cluster's API server is reachable",
                                       ["cluster"], registry=r)
        self.cluster_synced = Gauge("mcgw_cluster_synced", "1 once every watched kind was listed at least once",
                                    ["cluster"], registry=r)
        self.objects = Gauge("mcgw_cluster_objects", "Objects known per cluster and kind", ["cluster", "kind"],
                             registry=r)
        self.translation_errors = Gauge("mcgw_cluster_translation_errors",
                                        "Errors of the cluster's last translation (0 when it succeeded)",
                                        ["cluster"], registry=r)
        self.reconcile_seconds = Histogram("mcgw_reconcile_seconds", "Time to translate and publish one cluster",
                                           ["cluster"], buckets=_RECONCILE_BUCKETS, registry=r)
        self.reconciles = Counter("mcgw_reconciles", "Cluster translations published", ["cluster"], registry=r)
        self.status_writes = Counter("mcgw_status_writes", "Status subresources written", ["cluster", "kind"],
                                     registry=r)
        self.status_conflicts = Counter("mcgw_status_conflicts", "Status writes retried after a 409 conflict",
                                        ["cluster", "kind"], registry=r)
        self.status_errors = Counter("mcgw_status_write_errors", "Status writes that failed", ["cluster", "kind"],
                                     registry=r)
        self._observed: dict[str, float] = {}

    def observe_reconcile(self, cluster: str, report: ClusterReport) -> None:
        """Count one published translation; the same report is counted once however often it is seen."""
        if report.translated_at <= 0 or self._observed.get(cluster) == report.translated_at:
            return
        self._observed[cluster] = report.translated_at
        self.reconcile_seconds.labels(cluster).observe(report.seconds)
        self.reconciles.labels(cluster).inc()

    def refresh(self, store: Store, reconciler: Reconciler) -> None:
        """Bring the state gauges up to date (and count reports not yet seen); call before a scrape."""
        self.ready.set(1 if reconciler.ready.is_set() else 0)
        self.objects.clear()  # a kind whose last object went away must not keep its old count
        for name, member in sorted(store.clusters.items()):
            self.cluster_available.labels(name).set(1 if member.available else 0)
            self.cluster_synced.labels(name).set(1 if member.synced else 0)
            for kind, count in sorted(Tally(obj.kind for obj in member.objects()).items()):
                self.objects.labels(name, kind).set(count)
            report = reconciler.reports.get(name)
            if report is not None:
                self.translation_errors.labels(name).set(len(report.errors))
                self.observe_reconcile(name, report)

    # -- called by the status writer ------------------------------------------------------------------

    def status_written(self, cluster: str, kind: str) -> None:
        self.status_writes.labels(cluster, kind).inc()

    def status_conflict(self, cluster: str, kind: str) -> None:
        self.status_conflicts.labels(cluster, kind).inc()

    def status_failed(self, cluster: str, kind: str) -> None:
        self.status_errors.labels(cluster, kind).inc()


_SOURCE_LABELS = ["cluster", "gateway", "service", "source_cluster", "priority"]
_SERVICE_LABELS = ["cluster", "gateway", "service"]


class TrafficCollector(Collector):
    """The gateways' load reports as Prometheus metrics, read from the tracker at each scrape: requests and
    errors per source cluster and priority (counters since the controller started), requests in flight, the
    level serving now, and failovers. ``cluster`` is the Gateway's member cluster."""

    def __init__(self, tracker: TrafficTracker, clock: Callable[[], float]) -> None:
        self.tracker, self.clock = tracker, clock

    def collect(self) -> Iterator[Metric]:
        totals = self.tracker.totals()
        requests = CounterMetricFamily("mcgw_upstream_requests", "Requests a Gateway's Envoys completed to a "
                                       "ServiceImport, by source cluster and priority (load reports)",
                                       labels=_SOURCE_LABELS)
        errors = CounterMetricFamily("mcgw_upstream_errors", "Of those, the ones that failed (5xx, reset, timeout)",
                                     labels=_SOURCE_LABELS)
        for labels, value in sorted(totals.requests.items()):
            requests.add_metric(list(labels), value)
        for labels, value in sorted(totals.errors.items()):
            errors.add_metric(list(labels), value)
        in_flight = GaugeMetricFamily("mcgw_upstream_requests_in_flight", "Requests in flight at the last report",
                                      labels=_SOURCE_LABELS)
        serving = GaugeMetricFamily("mcgw_upstream_serving_priority", "The priority level that serves most of a "
                                    "ServiceImport's requests through a Gateway now", labels=_SERVICE_LABELS)
        for traffic in self.tracker.services(self.clock()):
            for (source, priority), value in sorted(traffic.in_flight.items()):
                in_flight.add_metric([*traffic.key.labels(), source, str(priority)], value)
            if traffic.serving_priority is not None:
                serving.add_metric(list(traffic.key.labels()), traffic.serving_priority)
        failovers = CounterMetricFamily("mcgw_failovers", "Times the serving level of a ServiceImport through a "
                                        "Gateway changed", labels=_SERVICE_LABELS)
        for service_labels, count in sorted(totals.failovers.items()):
            failovers.add_metric(list(service_labels), count)
        yield from (requests, errors, in_flight, serving, failovers)


class CapacityCollector(Collector):
    """Capacity decisions (FailoverPolicy capacity) as Prometheus metrics: per member cluster and ServiceImport
    port, the load measured, the first level's capacity, and the share sent past it."""

    def __init__(self, governor: CapacityGovernor) -> None:
        self.governor = governor

    def collect(self) -> Iterator[Metric]:
        labels = ["cluster", "service"]
        load = GaugeMetricFamily("mcgw_capacity_load_requests_per_second", "Requests per second a member cluster's "
                                 "Gateways sent a ServiceImport port with a capacity (load reports)", labels=labels)
        capacity = GaugeMetricFamily("mcgw_capacity_requests_per_second", "What the first level serves: its healthy "
                                     "endpoints times the policy's per-endpoint rate, or its total", labels=labels)
        share = GaugeMetricFamily("mcgw_capacity_overflow_share", "The share of that traffic sent past the first "
                                  "level because it is full (0: none)", labels=labels)
        for decision in self.governor.decisions():
            namespace, name, port = decision.service
            values = [decision.cluster, f"{namespace}/{name}:{port}"]
            load.add_metric(values, decision.load)
            capacity.add_metric(values, decision.capacity)
            share.add_metric(values, decision.share)
        yield from (load, capacity, share)
