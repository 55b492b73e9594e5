"""Prometheus metrics of the MCS controller: lost clusters (kept or withdrawn), imports, their ready
endpoints per source cluster, conflicts, and the writes into each member cluster."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mcgw.semantics.mcs import ImportedService, McsResult

_COMPUTE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class McsMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.lost_clusters = Gauge(
            "mcgw_mcs_lost_clusters", "Unavailable member clusters, by whether their exported endpoints are still "
            "kept (within the lost-cluster TTL) or withdrawn", ["state"], registry=r)
        self.lost_cluster = Gauge(
            "mcgw_mcs_lost_cluster_exports", "Valid exports of an unavailable member cluster (state kept or "
            "withdrawn); absent while the cluster is available", ["cluster", "state"], registry=r)
        self.lost_deadline = Gauge(
            "mcgw_mcs_lost_cluster_deadline_seconds", "Unix time at which an unavailable cluster's endpoints are "
            "(or were) withdrawn", ["cluster"], registry=r)
        self.imports = Gauge("mcgw_mcs_imported_services", "Services exported to the ClusterSet", registry=r)
        self.ready_endpoints = Gauge(
            "mcgw_mcs_ready_endpoints", "Ready endpoints (distinct addresses) that each source cluster exports "
            "for a ServiceImport (service: namespace/name), including a lost cluster's while they are kept",
            ["service", "source_cluster"], registry=r)
        self.conflicts = Gauge("mcgw_mcs_conflicted_exports", "ServiceExports whose Conflict condition is True",
                               ["cluster"], registry=r)
        self.invalid = Gauge("mcgw_mcs_invalid_exports", "ServiceExports whose Valid condition is False",
                             ["cluster"], registry=r)
        self.compute_seconds = Histogram("mcgw_mcs_compute_seconds", "Time to compute the MCS result",
                                         buckets=_COMPUTE_BUCKETS, registry=r)
        self.writes = Counter("mcgw_mcs_writes", "MCS objects written (op: create, update, status, delete)",
                              ["cluster", "kind", "op"], registry=r)
        self.write_conflicts = Counter("mcgw_mcs_write_conflicts", "MCS writes retried after a 409 conflict",
                                       ["cluster", "kind"], registry=r)
        self.write_errors = Counter("mcgw_mcs_write_errors", "MCS writes that failed (retried later)",
                                    ["cluster", "kind"], registry=r)

    def observe(self, result: McsResult, seconds: float) -> None:
        self.compute_seconds.observe(seconds)
        self.lost_cluster.clear()
        self.lost_deadline.clear()
        counts = {"kept": 0, "withdrawn": 0}
        for lost in result.lost:
            state = "withdrawn" if lost.withdrawn else "kept"
            counts[state] += 1
            self.lost_cluster.labels(lost.cluster, state).set(len(lost.exports))
            self.lost_deadline.labels(lost.cluster).set(lost.deadline)
        for state, count in counts.items():
            self.lost_clusters.labels(state).set(count)
        self.imports.set(len(result.view.services))
        self.ready_endpoints.clear()
        for (namespace, name), service in result.view.services.items():
            for source, count in ready_endpoint_counts(service).items():
                self.ready_endpoints.labels(f"{namespace}/{name}", source).set(count)
        for cluster, desired in result.clusters.items():
            conditions = [c for status in desired.exports.values() for c in status["conditions"]]
            self.conflicts.labels(cluster).set(sum(c["type"] == "Conflict" and c["status"] == "True"
                                                   for c in conditions))
            self.invalid.labels(cluster).set(sum(c["type"] == "Valid" and c["status"] == "False" for c in conditions))

    # -- called by the writers --------------------------------------------------------------------------

    def written(self, cluster: str, kind: str, op: str) -> None:
        self.writes.labels(cluster, kind, op).inc()

    def conflict(self, cluster: str, kind: str) -> None:
        self.write_conflicts.labels(cluster, kind).inc()

    def failed(self, cluster: str, kind: str) -> None:
        self.write_errors.labels(cluster, kind).inc()


def ready_endpoint_counts(service: ImportedService) -> dict[str, int]:
    """Per exporting cluster, its addresses ready on any import port; one with none ready counts 0."""
    ready: dict[str, set[str]] = {cluster: set() for cluster in service.clusters}
    for _, sources in service.endpoints:
        for source in sources:
            ready.setdefault(source.cluster, set()).update(
                endpoint.address for endpoint in source.endpoints if endpoint.health == "HEALTHY")
    return {cluster: len(addresses) for cluster, addresses in ready.items()}
