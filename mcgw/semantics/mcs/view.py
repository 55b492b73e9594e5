"""The ClusterSet's imported services as the failover translation reads them.

Computed by :func:`mcgw.mcs.exports.compute_mcs` from every member cluster's objects; immutable,
so one view can be shared by every cluster's translation. Endpoints are grouped by source cluster
so the translator can give each source cluster its own locality and priority.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, NamedTuple

from mcgw.semantics.endpoints import Endpoint


class ImportPort(NamedTuple):
    name: str
    protocol: str
    port: int
    app_protocol: str | None = None


class SourceEndpoints(NamedTuple):
    """One source cluster's endpoints for one import port."""

    cluster: str
    endpoints: tuple[Endpoint, ...]  # ready -> HEALTHY, serving+terminating -> DRAINING, others omitted; sorted
    lost_since: float | None = None  # wall-clock time the source cluster became unavailable (kept within TTL)
    # Listed but not ready (nor terminating): what a gradual spillover counts as the level's lost capacity.
    unready: tuple[Endpoint, ...] = ()


class ImportedService(NamedTuple):
    namespace: str
    name: str
    type: Literal["ClusterSetIP", "Headless"]
    ports: tuple[ImportPort, ...]  # the union, merged by name then protocol+port
    clusters: tuple[str, ...]  # exporting clusters (ServiceImport status.clusters), sorted
    # Per import port number, the clusters that expose it (sorted by cluster), each possibly with no
    # endpoints: a cluster that exports the port but has nothing ready is still listed.
    endpoints: tuple[tuple[int, tuple[SourceEndpoints, ...]], ...]
    # The exports' spec.trafficDistribution (they agree, or the export conflicts): PreferClose keeps a gateway's
    # traffic in its own zone while that zone has endpoints.
    traffic_distribution: str | None = None

    def endpoints_for(self, port: int) -> tuple[SourceEndpoints, ...]:
        """The source clusters serving import port ``port``; empty for a port the import does not have."""
        for number, sources in self.endpoints:
            if number == port:
                return sources
        return ()


class ClusterSetView(NamedTuple):
    services: Mapping[tuple[str, str], ImportedService]  # (namespace, name)

    def imports_for(self, namespaces: Iterable[str]) -> Mapping[tuple[str, str], ImportedService]:
        """The services imported into a cluster: those whose namespace exists there (namespace sameness)."""
        present = set(namespaces)
        return {key: service for key, service in self.services.items() if key[0] in present}


EMPTY_VIEW = ClusterSetView({})
