"""Failover semantics: which clusters come in which priority, and the settings that make a shift lossless.

Pure functions of the ClusterSet properties and the FailoverPolicies of one member cluster. The
translator turns the result into Envoy cluster and route settings; nothing here knows protobuf.

The defaults are the combination measured on this project's machines to fail over with zero failed
requests for a killed backend, a backend answering 503 and a blackholed network (docs/failover.md):
active HTTP health checks every 0.5 s (idle priorities too), outlier detection that may eject every
host, retries on connect-failure/refused-stream/reset/5xx that move to the next priority and host,
an overprovisioning factor that makes a priority all-or-nothing, and no panic routing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from mcgw import ir
from mcgw.app.config import ClusterProperties
from mcgw.objects.model import FailoverPolicy, HealthCheckPolicy, OutlierDetectionPolicy, RetryPolicy
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.mcs.view import ImportedService

# Envoy's overprovisioning factor is in percent: 140 (1.4) is its default; a huge one keeps all traffic
# on a priority while it has a single healthy host, so failover is all-or-nothing.
ALL_OR_NOTHING_OVERPROVISIONING = 100_000
SPILLOVER_OVERPROVISIONING = 140


HealthCheckSettings = ir.HealthCheckIR
OutlierSettings = ir.OutlierIR
RetrySettings = ir.RetryIR
FailoverSettings = ir.FailoverIR


def overprovisioning_factor(settings: ir.FailoverIR) -> int:
    return ALL_OR_NOTHING_OVERPROVISIONING if settings.all_or_nothing else SPILLOVER_OVERPROVISIONING


DEFAULTS = FailoverSettings()

_UNITS_MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


def duration_ms(value: str) -> int:
    """A Gateway API duration (``1h2m3s500ms``) in milliseconds."""
    total, number = 0, ""
    index = 0
    while index < len(value):
        char = value[index]
        if char.isdigit():
            number += char
            index += 1
            continue
        unit = "ms" if value.startswith("ms", index) else char
        total += int(number) * _UNITS_MS[unit]
        number = ""
        index += len(unit)
    return total


def priority_levels(local: str, sources: Iterable[str], clusters: Mapping[str, ClusterProperties],
                    preference: Sequence[str] | None = None) -> list[tuple[str, ...]]:
    """Source clusters grouped into Envoy priorities, best first, for a gateway in ``local``.

    The gateway's own cluster is priority 0; then each cluster of the preference (the policy's, else
    the local cluster's ``failoverOrder``) is a level of its own, in order, so N preferred clusters make
    N levels; the clusters left over follow, those in the local cluster's region as one level, then the
    rest as one level. Levels without endpoints are dropped, so priorities stay contiguous.
    """
    remaining = set(sources)
    levels: list[tuple[str, ...]] = []
    if local in remaining:
        levels.append((local,))
        remaining.discard(local)
    home = clusters.get(local)
    order = preference if preference is not None else (home.failover_order if home else ())
    for name in order:
        if name in remaining:
            levels.append((name,))
            remaining.discard(name)
    region = home.region if home else ""
    same = tuple(sorted(n for n in remaining if region and clusters.get(n) and clusters[n].region == region))
    rest = tuple(sorted(remaining - set(same)))
    return levels + [level for level in (same, rest) if level]


def _health_check(base: HealthCheckSettings | None, policy: HealthCheckPolicy | None) -> HealthCheckSettings | None:
    if policy is None:
        return base
    if not policy.enabled:
        return None
    current = base or HealthCheckSettings()
    return HealthCheckSettings(
        policy.path or current.path,
        duration_ms(policy.interval) if policy.interval else current.interval_ms,
        duration_ms(policy.timeout) if policy.timeout else current.timeout_ms,
        duration_ms(policy.no_traffic_interval) if policy.no_traffic_interval else current.no_traffic_interval_ms,
        policy.unhealthy_threshold or current.unhealthy_threshold,
        policy.healthy_threshold or current.healthy_threshold)


def _outlier(base: OutlierSettings | None, policy: OutlierDetectionPolicy | None) -> OutlierSettings | None:
    if policy is None:
        return base
    if not policy.enabled:
        return None
    current = base or OutlierSettings()
    return OutlierSettings(
        policy.consecutive_failures or current.consecutive_failures,
        duration_ms(policy.interval) if policy.interval else current.interval_ms,
        duration_ms(policy.base_ejection_time) if policy.base_ejection_time else current.base_ejection_time_ms)


def _retry(base: RetrySettings | None, policy: RetryPolicy | None) -> RetrySettings | None:
    if policy is None:
        return base
    if not policy.enabled:
        return None
    current = base or RetrySettings()
    return RetrySettings(
        policy.attempts or current.attempts,
        duration_ms(policy.per_try_timeout) if policy.per_try_timeout else current.per_try_timeout_ms,
        tuple(policy.retry_on) if policy.retry_on else current.retry_on)


def apply_policy(base: FailoverSettings, policy: FailoverPolicy | None) -> FailoverSettings:
    """``base`` with every block the policy sets replaced; blocks it omits keep ``base``."""
    if policy is None:
        return base
    spec = policy.spec
    return FailoverSettings(
        tuple(spec.preference) if spec.preference else base.preference,
        base.all_or_nothing if spec.mode is None else spec.mode == "AllOrNothing",
        _health_check(base.health_check, spec.health_check),
        _outlier(base.outlier, spec.outlier_detection),
        _retry(base.retry, spec.retry))


PolicyKey = tuple[str, str, str]  # (kind, namespace, name) of the target


class PolicyResolution(NamedTuple):
    """Which policy governs each target, and every policy's Accepted condition."""

    by_target: Mapping[PolicyKey, FailoverPolicy]
    conditions: Mapping[tuple[str, str], c.Condition]  # (namespace, policy name) -> Accepted

    def for_import(self, namespace: str, name: str) -> FailoverPolicy | None:
        return self.by_target.get(("ServiceImport", namespace, name))

    def for_route(self, namespace: str, name: str) -> FailoverPolicy | None:
        return self.by_target.get(("HTTPRoute", namespace, name))


REASON_TARGET_NOT_FOUND = "TargetNotFound"
REASON_CONFLICTED = "Conflicted"
REASON_UNKNOWN_CLUSTER = "UnknownCluster"


def resolve_policies(policies: Iterable[FailoverPolicy], imports: Iterable[tuple[str, str]],
                     routes: Iterable[tuple[str, str]], cluster_names: Iterable[str]) -> PolicyResolution:
    """Attach policies to their targets in the same namespace. Two policies on one target: the older
    (creationTimestamp, then name) wins and the other is Accepted False ``Conflicted``."""
    by_target: dict[PolicyKey, FailoverPolicy] = {}
    conditions: dict[tuple[str, str], c.Condition] = {}
    policies = list(policies)
    if not policies:  # the common case, on every translation: skip building the target sets
        return PolicyResolution(by_target, conditions)
    known = {("ServiceImport", *key) for key in imports} | {("HTTPRoute", *key) for key in routes}
    names = set(cluster_names)
    ordered = sorted(policies, key=lambda p: (p.metadata.creation_timestamp, p.metadata.namespace, p.metadata.name))
    for policy in ordered:
        meta = policy.metadata
        generation = meta.generation
        key = (meta.namespace, meta.name)
        if unknown := [n for n in policy.spec.preference if n not in names]:
            conditions[key] = c.Condition(c.ACCEPTED, "False", REASON_UNKNOWN_CLUSTER,
                                          f"preference names clusters that are not members of the ClusterSet: "
                                          f"{', '.join(unknown)}", generation)
            continue
        targets = [(ref.kind, meta.namespace, ref.name) for ref in policy.spec.target_refs]
        missing = [t for t in targets if t not in known]
        taken = [t for t in targets if t in by_target]
        for target in targets:
            if target not in missing and target not in taken:
                by_target[target] = policy
        if taken:
            holders = sorted({by_target[t].metadata.name for t in taken})
            conditions[key] = c.Condition(c.ACCEPTED, "False", REASON_CONFLICTED,
                                          f"{_describe(taken)} already governed by the older FailoverPolicy "
                                          f"{', '.join(holders)}", generation)
        elif missing and len(missing) == len(targets):
            conditions[key] = c.Condition(c.ACCEPTED, "False", REASON_TARGET_NOT_FOUND,
                                          f"no such target in namespace {meta.namespace}: {_describe(missing)}",
                                          generation)
        elif missing:
            conditions[key] = c.Condition(c.ACCEPTED, "True", c.REASON_ACCEPTED,
                                          f"applied; not found (yet): {_describe(missing)}", generation)
        else:
            conditions[key] = c.Condition(c.ACCEPTED, "True", c.REASON_ACCEPTED, "applied to every target",
                                          generation)
    return PolicyResolution(by_target, conditions)


def _describe(targets: Sequence[PolicyKey]) -> str:
    return ", ".join(f"{kind} {name}" for kind, _, name in targets)


class FailoverContext:
    """What one member cluster's ServiceImport backends are built from: the ClusterSet's imports seen from
    this cluster, every cluster's properties, and this cluster's FailoverPolicies."""

    def __init__(self, cluster: str, imports: Mapping[tuple[str, str], ImportedService],
                 clusters: Mapping[str, ClusterProperties], resolution: PolicyResolution) -> None:
        self.cluster = cluster
        self.imports = imports
        self.clusters = clusters
        self.resolution = resolution

    def settings(self, namespace: str, name: str, route: tuple[str, str] | None = None) -> ir.FailoverIR:
        """Defaults, then the ServiceImport's policy, then the route's policy on top."""
        settings = apply_policy(DEFAULTS, self.resolution.for_import(namespace, name))
        if route is not None:
            settings = apply_policy(settings, self.resolution.for_route(*route))
        return settings

    def localities(self, namespace: str, name: str, port: int,
                   settings: ir.FailoverIR) -> tuple[ir.LocalityIR, ...]:
        """One locality per source cluster with endpoints, its priority from :func:`priority_levels`."""
        service = self.imports.get((namespace, name))
        if service is None:
            return ()
        sources = [s for s in service.endpoints_for(port) if s.endpoints]
        levels = priority_levels(self.cluster, [s.cluster for s in sources], self.clusters, settings.preference)
        rank = {cluster: priority for priority, level in enumerate(levels) for cluster in level}
        ordered = sorted(sources, key=lambda s: (rank[s.cluster], s.cluster))
        return tuple(ir.LocalityIR(s.cluster, rank[s.cluster], s.endpoints,
                                   self.clusters[s.cluster].region if s.cluster in self.clusters else "",
                                   self.clusters[s.cluster].zone if s.cluster in self.clusters else "")
                     for s in ordered)


def build_context(cluster: str, imports: Mapping[tuple[str, str], ImportedService],
                  clusters: Mapping[str, ClusterProperties], policies: Iterable[FailoverPolicy],
                  routes: Iterable[tuple[str, str]], import_objects: Iterable[tuple[str, str]] = ()) -> FailoverContext:
    """Resolve this cluster's policies against the imports it sees and its routes."""
    resolution = resolve_policies(policies, set(imports) | set(import_objects), routes, clusters)
    return FailoverContext(cluster, imports, clusters, resolution)
