"""A ServiceImport backend's localities: one per source cluster, in the priority the failover semantics give it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mcgw import ir
from mcgw.objects.clusterset import ClusterProperties
from mcgw.objects.model import FailoverPolicy
from mcgw.semantics.gateway.routes import RouteKey
from mcgw.semantics.mcs import ImportedService
from mcgw.semantics.policy.failover import DEFAULTS, PolicyResolution, apply_policy, priority_levels, resolve_policies


class FailoverContext:
    """What one member cluster's ServiceImport backends are built from: the ClusterSet's imports seen from
    this cluster, every cluster's properties, and this cluster's FailoverPolicies."""

    def __init__(self, cluster: str, imports: Mapping[tuple[str, str], ImportedService],
                 clusters: Mapping[str, ClusterProperties], resolution: PolicyResolution) -> None:
        self.cluster = cluster
        self.imports = imports
        self.clusters = clusters
        self.resolution = resolution

    def settings(self, namespace: str, name: str, route: RouteKey | None = None) -> ir.FailoverIR:
        """Defaults, then the ServiceImport's policy, then the route's policy on top."""
        settings = apply_policy(DEFAULTS, self.resolution.for_import(namespace, name), self.cluster, self.clusters)
        if route is not None:
            settings = apply_policy(settings, self.resolution.for_target(route), self.cluster, self.clusters)
        return settings

    def localities(self, namespace: str, name: str, port: int,
                   settings: ir.FailoverIR) -> tuple[ir.LocalityIR, ...]:
        """One locality per source cluster with endpoints, its priority from :func:`priority_levels`; a source
        cluster the settings leave out (excluded, or past ``max_levels``) gets none. Where the policy weighs any
        cluster, every locality has a weight (1 where it gives none), so Envoy's locality-weighted balancing
        shares each level by them."""
        service = self.imports.get((namespace, name))
        if service is None:
            return ()
        sources = [s for s in service.endpoints_for(port) if s.endpoints]
        levels = priority_levels(self.cluster, [s.cluster for s in sources], self.clusters, settings=settings)
        rank = {cluster: priority for priority, level in enumerate(levels) for cluster in level}
        ordered = sorted((s for s in sources if s.cluster in rank), key=lambda s: (rank[s.cluster], s.cluster))
        weights = settings.weights()
        return tuple(ir.LocalityIR(s.cluster, rank[s.cluster], s.endpoints,
                                   self.clusters[s.cluster].region if s.cluster in self.clusters else "",
                                   self.clusters[s.cluster].zone if s.cluster in self.clusters else "",
                                   weights.get(s.cluster, 1) if weights else 0)
                     for s in ordered)


def build_context(cluster: str, imports: Mapping[tuple[str, str], ImportedService],
                  clusters: Mapping[str, ClusterProperties], policies: Iterable[FailoverPolicy],
                  routes: Iterable[RouteKey], import_objects: Iterable[tuple[str, str]] = ()) -> FailoverContext:
    """Resolve this cluster's policies against the imports it sees and its routes."""
    resolution = resolve_policies(policies, set(imports) | set(import_objects), routes, clusters)
    return FailoverContext(cluster, imports, clusters, resolution)
