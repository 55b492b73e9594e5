"""A ServiceImport backend's localities: one per source cluster and zone, in the priority the failover semantics
give it; with a capacity decision, the first two levels share priority 0 by the weights that send the next level
the excess."""

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
                 clusters: Mapping[str, ClusterProperties], resolution: PolicyResolution,
                 overflow: Mapping[ImportPortKey, float] | None = None) -> None:
        self.cluster = cluster
        self.imports = imports
        self.clusters = clusters
        self.resolution = resolution
        self.overflow = overflow or {}  # (namespace, name, port) -> share of its traffic sent past level 0

    def capacities(self) -> dict[ImportPortKey, float]:
        """Each ServiceImport port with a capacity (its import's policy's): the requests per second its first
        level serves now, from that level's healthy endpoints. What the capacity decisions compare load with."""
        out: dict[ImportPortKey, float] = {}
        for (kind, namespace, name), policy in self.resolution.by_target.items():
            if kind != "ServiceImport" or policy.spec.capacity is None:
                continue
            service = self.imports.get((namespace, name))
            if service is None:
                continue
            settings = self.settings(namespace, name)
            assert settings.capacity is not None
            for port, sources in service.endpoints:
                present = {s.cluster: s for s in sources if s.endpoints}
                levels = priority_levels(self.cluster, list(present), self.clusters, settings=settings)
                healthy = sum(1 for cluster in (levels[0] if levels else ()) for e in present[cluster].endpoints
                              if e.health == "HEALTHY")
                out[(namespace, name, port)] = settings.capacity.of(healthy)
        return out

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
        weighted = settings.locality_weighted()
        home = self.clusters.get(self.cluster)
        for target in settings.fallback:
            at = target.port or port
            if target.kind == "ServiceImport":
                extra = self._own(target.namespace, target.name, at, settings)
            else:
                endpoints = local_endpoints(target.namespace, target.name, at) if local_endpoints else ()
                weight = (_WEIGHT_SCALE * (len(endpoints) if not settings.weights() else 1)) if weighted else 0
                extra = (ir.LocalityIR(self.cluster, 0, endpoints, home.region if home else "",
                                       home.zone if home else "", weight),) if endpoints else ()
            if extra:
                after = localities[-1].priority + 1 if localities else 0
                localities += tuple(loc._replace(priority=loc.priority + after) for loc in extra)
        return localities

    def _own(self, namespace: str, name: str, port: int, settings: ir.FailoverIR) -> tuple[ir.LocalityIR, ...]:
        """One locality per source cluster and EndpointSlice zone, its priority from :func:`priority_levels`; a
        source cluster the settings leave out (excluded, or past ``max_levels``) gets none. With the import's
        trafficDistribution PreferClose, the gateway cluster's endpoints for its own zone (its ``zone``
        property; by their hints where they have them) form a level of their own ahead of the rest of it. Where
        the policy weighs any cluster, every locality has a weight: the cluster's (1 where it gives none) x 100,
        shared among its zones by their endpoints."""
        service = self.imports.get((namespace, name))
        if service is None:
            return ()
        sources = {s.cluster: s for s in service.endpoints_for(port) if s.endpoints}
        levels = priority_levels(self.cluster, list(sources), self.clusters, settings=settings)
        weights = settings.weights()
        by_endpoints = settings.locality_weighted() and not weights  # a capacity alone: weights as endpoint counts
        home = self.clusters.get(self.cluster)
        close_zone = home.zone if home is not None and service.traffic_distribution in PREFER_CLOSE else ""
        out: list[ir.LocalityIR] = []
        for level in levels:
            close: list[ir.LocalityIR] = []
            rest: list[ir.LocalityIR] = []
            for cluster in sorted(level):
                endpoints = sources[cluster].endpoints
                if not settings.all_or_nothing:  # a not-ready pod is capacity lost, not a smaller level
                    endpoints = tuple(sorted(endpoints + sources[cluster].unready))
                of = len(endpoints)
                weight = weights.get(cluster, 1) * _WEIGHT_SCALE if weights else 0
                if by_endpoints:
                    weight = len(endpoints) * _WEIGHT_SCALE
                if cluster == self.cluster and close_zone:
                    near = tuple(e for e in endpoints if _serves_zone(e, close_zone))
                    if near and len(near) < len(endpoints):
                        close += self._zoned(cluster, near, weight, of)
                        endpoints = tuple(e for e in endpoints if not _serves_zone(e, close_zone))
                rest += self._zoned(cluster, endpoints, weight, of)
            for group in (close, rest):
                if group:
                    priority = out[-1].priority + 1 if out else 0
                    out += (loc._replace(priority=priority) for loc in group)
        share = self.overflow.get((namespace, name, port), 0.0) if settings.capacity is not None else 0.0
        return _overflowing(tuple(out), share) if share > 0 else tuple(out)

    def _zoned(self, cluster: str, endpoints: tuple[ir.EndpointIR, ...], weight: int,
               of: int) -> list[ir.LocalityIR]:
        """``endpoints`` of one source cluster as a locality per zone (the cluster's own ``zone`` for endpoints
        without one); the cluster's ``weight`` is shared by endpoint count out of its ``of`` endpoints."""
        properties = self.clusters.get(cluster)
        region = properties.region if properties is not None else ""
        default_zone = properties.zone if properties is not None else ""
        by_zone: dict[str, list[ir.EndpointIR]] = {}
        for endpoint in endpoints:
            by_zone.setdefault(endpoint.zone or default_zone, []).append(endpoint)
        return [ir.LocalityIR(cluster, 0, tuple(members), region, zone,
                              max(1, round(weight * len(members) / of)) if weight else 0)
                for zone, members in sorted(by_zone.items())]


def _overflowing(localities: tuple[ir.LocalityIR, ...], share: float) -> tuple[ir.LocalityIR, ...]:
    """Priority 1 joins priority 0 with ``share`` of their weight (priority 0 keeps the rest, each locality in
    proportion to its own weight); later priorities move up one. Envoy then sends the next level that share
    while both are healthy, and all of it to whichever level is left when the other fails."""
    first = [loc for loc in localities if loc.priority == 0]
    second = [loc for loc in localities if loc.priority == 1]
    if not first or not second:
        return localities
    out = []
    for group, part in ((first, 1.0 - share), (second, share)):
        total = sum(loc.weight for loc in group)
        out += [loc._replace(priority=0, weight=max(1, round(_OVERFLOW_SCALE * part * loc.weight / total)))
                for loc in group]
    return (*out, *(loc._replace(priority=loc.priority - 1) for loc in localities if loc.priority > 1))


ImportPortKey = tuple[str, str, int]  # (namespace, name, port) of a ServiceImport port
# A shared priority's weights add up to about this: fine enough for a share in thousandths.
_OVERFLOW_SCALE = 1_000_000
# trafficDistribution values that prefer endpoints in the client's zone (PreferClose, and its newer name).
PREFER_CLOSE = frozenset({"PreferClose", "PreferSameZone"})
# Locality weights are the policy's x 100, so a cluster's weight can be shared among its zones in whole numbers.
_WEIGHT_SCALE = 100


def _serves_zone(endpoint: ir.EndpointIR, zone: str) -> bool:
    """By the endpoint's topology hints where it has them, else by its own zone."""
    return zone in endpoint.for_zones if endpoint.for_zones else endpoint.zone == zone


def build_context(cluster: str, imports: Mapping[tuple[str, str], ImportedService],
                  clusters: Mapping[str, ClusterProperties], policies: Iterable[FailoverPolicy],
                  routes: Iterable[RouteKey], import_objects: Iterable[tuple[str, str]] = (),
                  services: Iterable[tuple[str, str]] = (),
                  grants: Iterable[ReferenceGrant] = (),
                  overflow: Mapping[ImportPortKey, float] | None = None) -> FailoverContext:
    """Resolve this cluster's policies against the imports it sees, its routes, its Services and grants;
    ``overflow`` holds the capacity decisions for this cluster's gateways."""
    resolution = resolve_policies(policies, set(imports) | set(import_objects), routes, clusters, services, grants)
    return FailoverContext(cluster, imports, clusters, resolution, overflow)
