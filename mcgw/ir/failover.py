"""A ServiceImport backend's localities: one per source cluster, in the priority the failover semantics give it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mcgw import ir
from mcgw.objects.clusterset import ClusterProperties
from mcgw.objects.model import FailoverPolicy, ReferenceGrant
from mcgw.semantics.endpoints import EndpointLookup
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
        resolution = self.resolution
        policy = resolution.for_import(namespace, name)
        settings = apply_policy(DEFAULTS, policy, self.cluster, self.clusters, resolution.fallback_of(policy))
        if route is not None:
            policy = resolution.for_target(route)
            settings = apply_policy(settings, policy, self.cluster, self.clusters, resolution.fallback_of(policy))
        return settings

    def localities(self, namespace: str, name: str, port: int, settings: ir.FailoverIR,
                   local_endpoints: EndpointLookup | None = None) -> tuple[ir.LocalityIR, ...]:
        """The ServiceImport's own localities, then each fallback's after them, as further priorities: a
        ServiceImport's by the same settings (exclusions hold for it too), a Service's as one level of the
        gateway's own cluster (``local_endpoints``). A fallback without endpoints adds no level."""
        localities = self._own(namespace, name, port, settings)
        if not settings.fallback:
            return localities
        weighted = bool(settings.weights())
        home = self.clusters.get(self.cluster)
        for target in settings.fallback:
            at = target.port or port
            if target.kind == "ServiceImport":
                extra = self._own(target.namespace, target.name, at, settings)
            else:
                endpoints = local_endpoints(target.namespace, target.name, at) if local_endpoints else ()
                extra = (ir.LocalityIR(self.cluster, 0, endpoints, home.region if home else "",
                                       home.zone if home else "", 1 if weighted else 0),) if endpoints else ()
            if extra:
                after = localities[-1].priority + 1 if localities else 0
                localities += tuple(loc._replace(priority=loc.priority + after) for loc in extra)
        return localities

    def _own(self, namespace: str, name: str, port: int, settings: ir.FailoverIR) -> tuple[ir.LocalityIR, ...]:
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
                  routes: Iterable[RouteKey], import_objects: Iterable[tuple[str, str]] = (),
                  services: Iterable[tuple[str, str]] = (),
                  grants: Iterable[ReferenceGrant] = ()) -> FailoverContext:
    """Resolve this cluster's policies against the imports it sees, its routes, its Services and grants."""
    resolution = resolve_policies(policies, set(imports) | set(import_objects), routes, clusters, services, grants)
    return FailoverContext(cluster, imports, clusters, resolution)
