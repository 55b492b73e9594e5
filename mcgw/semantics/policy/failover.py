"""Failover semantics: which clusters come in which priority, and the settings that make a shift lossless.

Pure functions of the ClusterSet properties and the FailoverPolicies of one member cluster: the
settings types, priority levels, policy attachment (``Accepted`` reasons) and merging. The IR
(:mod:`mcgw.ir.failover`) applies them to a ServiceImport's endpoints; nothing here knows protobuf.

A policy's levels, exclusions and cluster selectors are resolved here against the ClusterSet, once per
member cluster, into plain cluster names: what reaches the IR is which clusters share which level, with
which weights, and which never get traffic.

The defaults are the combination measured on this project's machines to fail over with zero failed
requests for a killed backend, a backend answering 503 and a blackholed network (docs/failover.md):
active HTTP health checks every 0.5 s (idle priorities too), outlier detection that may eject every
host, retries on connect-failure/refused-stream/reset/5xx that move to the next priority and host,
an overprovisioning factor that makes a priority all-or-nothing, and no panic routing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from mcgw.objects.clusterset import ClusterProperties
from mcgw.objects.model import (
    POLICY_GROUP,
    ClusterMatch,
    FailoverPolicy,
    FailoverPolicySpec,
    HealthCheckPolicy,
    OutlierDetectionPolicy,
    ReferenceGrant,
    RetryPolicy,
)
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.refs import Reference, is_permitted
from mcgw.support.durations import duration_ms


class HealthCheckSettings(NamedTuple):
    path: str = "/healthz"
    interval_ms: int = 500
    timeout_ms: int = 250
    no_traffic_interval_ms: int = 500  # Envoy's default is 60 s: idle backup priorities would go unchecked
    unhealthy_threshold: int = 1
    healthy_threshold: int = 1


class OutlierSettings(NamedTuple):
    consecutive_failures: int = 1
    interval_ms: int = 1000
    base_ejection_time_ms: int = 5000


class RetrySettings(NamedTuple):
    attempts: int = 3
    per_try_timeout_ms: int = 500  # a blackholed host costs one try of this, then the next priority answers
    retry_on: tuple[str, ...] = ("connect-failure", "refused-stream", "reset", "5xx")


# A level as the policy wrote it, resolved: each cluster with its weight in the level (0: none given).
Level = tuple[tuple[str, int], ...]


class Capacity(NamedTuple):
    """Requests per second the first level serves: ``per_endpoint`` x its healthy endpoints, at most ``total``."""

    per_endpoint: int | None
    total: int | None

    def of(self, healthy_endpoints: int) -> float:
        limits = [limit for limit in (self.per_endpoint * healthy_endpoints if self.per_endpoint else None,
                                      self.total) if limit is not None]
        return float(min(limits)) if limits else float("inf")


class FallbackTarget(NamedTuple):
    """A backend whose endpoints follow the target's own levels: a Service (the gateway's own cluster) or a
    ServiceImport (its clusters' levels, by the same rules), at ``port`` (``None``: the target's port)."""

    kind: str
    namespace: str
    name: str
    port: int | None


class FailoverSettings(NamedTuple):
    """How one ServiceImport backend fails over between clusters. ``None`` turns a mechanism off.

    ``levels`` (a policy's, resolved to cluster names) replaces the default order; ``excluded`` clusters never
    get traffic; at most ``max_levels`` levels are made, counted over the ClusterSet's members, never over
    which of them have endpoints now. ``all_or_nothing`` False spills gradually: from below
    ``min_healthy_percent`` healthy endpoints (``None``: Envoy's factor 1.4, v1alpha1's WeightedSpillover)."""

    preference: tuple[str, ...] | None = None  # None: the gateway cluster's failoverOrder
    all_or_nothing: bool = True
    health_check: HealthCheckSettings | None = HealthCheckSettings()
    outlier: OutlierSettings | None = OutlierSettings()
    retry: RetrySettings | None = RetrySettings()
    levels: tuple[Level, ...] | None = None
    excluded: frozenset[str] = frozenset()
    max_levels: int | None = None
    min_healthy_percent: int | None = None
    fallback: tuple[FallbackTarget, ...] = ()
    capacity: Capacity | None = None

    def weights(self) -> dict[str, int]:
        """The weight the policy gives each cluster in its level (clusters it gives none are absent)."""
        return {name: weight for level in self.levels or () for name, weight in level if weight}

    def locality_weighted(self) -> bool:
        """Whether Envoy balances each level by locality weights: the policy gives weights, or a capacity (its
        excess is sent to the next level by weight)."""
        return self.capacity is not None or any(weight for level in self.levels or () for _, weight in level)


DEFAULTS = FailoverSettings()


def level_plan(local: str, members: Iterable[str], clusters: Mapping[str, ClusterProperties],
               settings: FailoverSettings = DEFAULTS) -> list[tuple[str, ...]]:
    """The levels of a gateway in ``local`` over the ClusterSet's ``members``, best first, before endpoints.

    Without a policy's ``levels``: the gateway's own cluster, then each cluster of the preference (the policy's,
    else the local cluster's ``failoverOrder``) as a level of its own, so N preferred clusters make N levels.
    With them: the levels as written (a cluster counts at its first level). Either way the clusters left over
    follow, those in the local cluster's region as one level, then the rest as one level; excluded clusters
    are left out and at most ``max_levels`` levels are kept."""
    remaining = set(members) - settings.excluded
    levels: list[tuple[str, ...]] = []
    home = clusters.get(local)
    if settings.levels is not None:
        for written in settings.levels:
            level = tuple(name for name, _ in written if name in remaining)
            if level:
                levels.append(level)
                remaining.difference_update(level)
    else:
        if local in remaining:
            levels.append((local,))
            remaining.discard(local)
        order = settings.preference if settings.preference is not None else (home.failover_order if home else ())
        for name in order:
            if name in remaining:
                levels.append((name,))
                remaining.discard(name)
    region = home.region if home else ""
    same = tuple(sorted(n for n in remaining if region and clusters.get(n) and clusters[n].region == region))
    rest = tuple(sorted(remaining - set(same)))
    levels += [level for level in (same, rest) if level]
    return levels[:settings.max_levels] if settings.max_levels is not None else levels


def priority_levels(local: str, sources: Iterable[str], clusters: Mapping[str, ClusterProperties],
                    preference: Sequence[str] | None = None,
                    settings: FailoverSettings | None = None) -> list[tuple[str, ...]]:
    """Source clusters grouped into Envoy priorities, best first, for a gateway in ``local``: the
    :func:`level_plan` of the ClusterSet, with only the ``sources`` (clusters with endpoints) kept. Levels
    without endpoints are dropped, so priorities stay contiguous."""
    if settings is None:
        settings = DEFAULTS if preference is None else DEFAULTS._replace(preference=tuple(preference))
    present = set(sources)
    plan = level_plan(local, set(clusters) | present, clusters, settings)
    return [level for level in (tuple(n for n in planned if n in present) for planned in plan) if level]


def matching(match: ClusterMatch, local: str, clusters: Mapping[str, ClusterProperties]) -> list[str]:
    """The member clusters ``match`` selects, by name order (a name outside the ClusterSet selects nothing)."""
    if match.local:
        return [local]
    if match.name is not None:
        return [match.name] if match.name in clusters else []
    if match.region is not None:
        return sorted(n for n, p in clusters.items() if p.region == match.region)
    if match.selector is not None:
        selector = match.selector
        return sorted(n for n, p in clusters.items() if selector.matches(p.labels))
    return []


def resolve_levels(spec: FailoverPolicySpec, local: str,
                   clusters: Mapping[str, ClusterProperties]) -> tuple[Level, ...] | None:
    """A policy's ``levels`` (or v1alpha1's ``preference``) as cluster names and weights, for ``local``."""
    if spec.levels is not None:
        return tuple(tuple((name, member.weight or 0) for member in level.clusters
                           for name in matching(member, local, clusters)) for level in spec.levels)
    return None


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


def apply_policy(base: FailoverSettings, policy: FailoverPolicy | None, local: str = "",
                 clusters: Mapping[str, ClusterProperties] | None = None,
                 fallback: tuple[FallbackTarget, ...] = ()) -> FailoverSettings:
    """``base`` with every block the policy sets replaced; blocks it omits keep ``base``. Levels, exclusions
    and selectors resolve against ``clusters`` as seen by a gateway in ``local``; ``fallback`` is the policy's
    fallback list as resolution permitted it."""
    if policy is None:
        return base
    spec = policy.spec
    members = clusters or {}
    all_or_nothing, min_healthy = base.all_or_nothing, base.min_healthy_percent
    if spec.spillover is not None:
        all_or_nothing = spec.spillover.mode == "AllOrNothing"
        min_healthy = None if all_or_nothing else (spec.spillover.min_healthy_percent or 100)
    elif spec.mode is not None:
        all_or_nothing, min_healthy = spec.mode == "AllOrNothing", None
    levels = resolve_levels(spec, local, members)
    preference = tuple(spec.preference) if spec.preference else base.preference
    if levels is not None:
        preference = None
    elif spec.preference:
        levels = None
    else:
        levels = base.levels
    excluded = frozenset(name for match in spec.exclude for name in matching(match, local, members))
    return FailoverSettings(
        preference=preference,
        all_or_nothing=all_or_nothing,
        health_check=_health_check(base.health_check, spec.health_check),
        outlier=_outlier(base.outlier, spec.outlier_detection),
        retry=_retry(base.retry, spec.retry),
        levels=levels,
        excluded=excluded if spec.exclude else base.excluded,
        max_levels=spec.max_levels if spec.max_levels is not None else base.max_levels,
        min_healthy_percent=min_healthy,
        fallback=fallback if spec.fallback else base.fallback,
        capacity=Capacity(spec.capacity.max_requests_per_second_per_endpoint, spec.capacity.max_requests_per_second)
        if spec.capacity is not None else base.capacity)


PolicyKey = tuple[str, str, str]  # (kind, namespace, name) of the target


class PolicyResolution(NamedTuple):
    """Which policy governs each target, every policy's Accepted condition, and for a policy with a fallback
    list the fallbacks it may use and its ResolvedRefs condition."""

    by_target: Mapping[PolicyKey, FailoverPolicy]
    conditions: Mapping[tuple[str, str], c.Condition]  # (namespace, policy name) -> Accepted
    fallbacks: Mapping[tuple[str, str], tuple[FallbackTarget, ...]] = {}
    resolved_refs: Mapping[tuple[str, str], c.Condition] = {}

    def statuses(self) -> dict[tuple[str, str], tuple[c.Condition, ...]]:
        """Every policy's conditions: Accepted, then ResolvedRefs where it has a fallback list."""
        return {key: (accepted, *((self.resolved_refs[key],) if key in self.resolved_refs else ()))
                for key, accepted in self.conditions.items()}

    def fallback_of(self, policy: FailoverPolicy | None) -> tuple[FallbackTarget, ...]:
        return self.fallbacks.get((policy.metadata.namespace, policy.metadata.name), ()) if policy else ()

    def fallback_dependents(self) -> dict[tuple[str, str], set[tuple[str, str]]]:
        """(namespace, name) of each fallback backend -> the ServiceImports whose endpoints include its own."""
        dependents: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for (kind, namespace, name), policy in self.by_target.items():
            for target in self.fallback_of(policy):
                if kind == "ServiceImport":
                    dependents.setdefault((target.namespace, target.name), set()).add((namespace, name))
        return dependents

    def for_import(self, namespace: str, name: str) -> FailoverPolicy | None:
        return self.by_target.get(("ServiceImport", namespace, name))

    def for_route(self, namespace: str, name: str, kind: str = "HTTPRoute") -> FailoverPolicy | None:
        return self.by_target.get((kind, namespace, name))

    def for_target(self, target: PolicyKey) -> FailoverPolicy | None:
        return self.by_target.get(target)


REASON_TARGET_NOT_FOUND = "TargetNotFound"
REASON_CONFLICTED = "Conflicted"
REASON_UNKNOWN_CLUSTER = "UnknownCluster"
REASON_INVALID = "Invalid"


def _match_problem(match: ClusterMatch, where: str) -> str | None:
    if match.criteria() != 1:
        return f"{where} must set exactly one of name, region, selector and local"
    if match.local is False:
        return f"{where}: local, when set, is true"
    return None


def invalid_spec(spec: FailoverPolicySpec) -> str | None:
    """Why the fields of a policy contradict each other (the CRD's rules, checked again for files), if they do."""
    if spec.levels is not None and spec.preference:
        return "set levels or preference, not both (preference is levels of one cluster each, after the local one)"
    if spec.spillover is not None and spec.mode is not None:
        return "set spillover or mode, not both (mode WeightedSpillover is spillover Gradual at Envoy's factor 1.4)"
    if spec.spillover is not None and spec.spillover.mode == "AllOrNothing" \
            and spec.spillover.min_healthy_percent is not None:
        return ("spillover.minHealthyPercent applies to mode Gradual: AllOrNothing keeps a level while one endpoint "
                "is healthy")
    for i, level in enumerate(spec.levels or ()):
        for j, member in enumerate(level.clusters):
            if problem := _match_problem(member, f"levels[{i}].clusters[{j}]"):
                return problem
    for i, match in enumerate(spec.exclude):
        if problem := _match_problem(match, f"exclude[{i}]"):
            return problem
        if match.local:
            return f"exclude[{i}]: the gateway's own cluster cannot be excluded; list the levels it may use instead"
    if spec.capacity is not None and spec.capacity.max_requests_per_second_per_endpoint is None \
            and spec.capacity.max_requests_per_second is None:
        return "capacity: set maxRequestsPerSecondPerEndpoint, maxRequestsPerSecond or both"
    for i, ref in enumerate(spec.fallback):
        if (ref.kind == "ServiceImport") != (ref.group == "multicluster.x-k8s.io"):
            group = "multicluster.x-k8s.io" if ref.kind == "ServiceImport" else 'the core group ("")'
            return f"fallback[{i}]: kind {ref.kind} is in {group}"
    return None


def unknown_clusters(spec: FailoverPolicySpec, names: set[str]) -> list[tuple[str, str]]:
    """(field, name) of every cluster a policy names that is not a member of the ClusterSet."""
    named = [("preference", n) for n in spec.preference]
    named += [("levels", m.name) for level in spec.levels or () for m in level.clusters if m.name is not None]
    named += [("exclude", m.name) for m in spec.exclude if m.name is not None]
    return [(where, name) for where, name in named if name not in names]


def resolve_policies(policies: Iterable[FailoverPolicy], imports: Iterable[tuple[str, str]],
                     routes: Iterable[PolicyKey], cluster_names: Iterable[str],
                     services: Iterable[tuple[str, str]] = (),
                     grants: Iterable[ReferenceGrant] = ()) -> PolicyResolution:
    """Attach policies to their targets in the same namespace. Two policies on one target: the older
    (creationTimestamp, then name) wins and the other is Accepted False ``Conflicted``. ``routes`` are
    (kind, namespace, name) of every route in the cluster; ``services`` the cluster's Services and ``grants``
    its ReferenceGrants, which decide each fallback backend."""
    by_target: dict[PolicyKey, FailoverPolicy] = {}
    conditions: dict[tuple[str, str], c.Condition] = {}
    fallbacks: dict[tuple[str, str], tuple[FallbackTarget, ...]] = {}
    resolved_refs: dict[tuple[str, str], c.Condition] = {}
    policies = list(policies)
    if not policies:  # the common case, on every translation: skip building the target sets
        return PolicyResolution(by_target, conditions)
    imports = set(imports)
    service_keys = set(services)
    grant_list = list(grants)
    known = {("ServiceImport", *key) for key in imports} | set(routes)
    names = set(cluster_names)
    ordered = sorted(policies, key=lambda p: (p.metadata.creation_timestamp, p.metadata.namespace, p.metadata.name))
    for policy in ordered:
        meta = policy.metadata
        generation = meta.generation
        key = (meta.namespace, meta.name)
        if problem := invalid_spec(policy.spec):
            conditions[key] = c.Condition(c.ACCEPTED, "False", REASON_INVALID, problem, generation)
            continue
        if unknown := unknown_clusters(policy.spec, names):
            conditions[key] = c.Condition(c.ACCEPTED, "False", REASON_UNKNOWN_CLUSTER,
                                          f"{unknown[0][0]} names clusters that are not members of the ClusterSet: "
                                          f"{', '.join(n for _, n in unknown)}", generation)
            continue
        if policy.spec.fallback:
            fallbacks[key], resolved_refs[key] = _resolve_fallback(policy, imports, service_keys, grant_list)
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
    return PolicyResolution(by_target, conditions, fallbacks, resolved_refs)


def _resolve_fallback(policy: FailoverPolicy, imports: set[tuple[str, str]], services: set[tuple[str, str]],
                      grants: list[ReferenceGrant]) -> tuple[tuple[FallbackTarget, ...], c.Condition]:
    """The fallbacks a policy may use (the rest are left out) and its ResolvedRefs condition, which names
    each one left out: another namespace's needs a ReferenceGrant there, and every one must exist."""
    meta = policy.metadata
    usable: list[FallbackTarget] = []
    refused: list[str] = []
    missing: list[str] = []
    for ref in policy.spec.fallback:
        namespace = ref.namespace or meta.namespace
        described = f"{ref.kind} {namespace}/{ref.name}"
        if not is_permitted(Reference(POLICY_GROUP, "FailoverPolicy", meta.namespace, ref.group, ref.kind,
                                      namespace, ref.name), grants):
            refused.append(described)
        elif (namespace, ref.name) not in (imports if ref.kind == "ServiceImport" else services):
            missing.append(described)
        else:
            usable.append(FallbackTarget(ref.kind, namespace, ref.name, ref.port))
    if refused:
        condition = c.Condition(c.RESOLVED_REFS, "False", c.REASON_REF_NOT_PERMITTED,
                                f"no ReferenceGrant permits fallback to {', '.join(refused)}; left out"
                                + (f"; not found: {', '.join(missing)}" if missing else ""), meta.generation)
    elif missing:
        condition = c.Condition(c.RESOLVED_REFS, "False", c.REASON_BACKEND_NOT_FOUND,
                                f"fallback not found (yet): {', '.join(missing)}", meta.generation)
    else:
        condition = c.Condition(c.RESOLVED_REFS, "True", c.REASON_RESOLVED_REFS, "every fallback resolved",
                                meta.generation)
    return tuple(usable), condition


def _describe(targets: Sequence[PolicyKey]) -> str:
    return ", ".join(f"{kind} {name}" for kind, _, name in targets)
