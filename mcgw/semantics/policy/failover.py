"""Failover semantics: which clusters come in which priority, and the settings that make a shift lossless.

Pure functions of the ClusterSet properties and the FailoverPolicies of one member cluster: the
settings types, priority levels, policy attachment (``Accepted`` reasons) and merging. The IR
(:mod:`mcgw.ir.failover`) applies them to a ServiceImport's endpoints; nothing here knows protobuf.

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
from mcgw.objects.model import FailoverPolicy, HealthCheckPolicy, OutlierDetectionPolicy, RetryPolicy
from mcgw.semantics.gateway import conditions as c
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


class FailoverSettings(NamedTuple):
    """How one ServiceImport backend fails over between clusters. ``None`` turns a mechanism off."""

    preference: tuple[str, ...] | None = None  # None: the gateway cluster's failoverOrder
    all_or_nothing: bool = True
    health_check: HealthCheckSettings | None = HealthCheckSettings()
    outlier: OutlierSettings | None = OutlierSettings()
    retry: RetrySettings | None = RetrySettings()


DEFAULTS = FailoverSettings()


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

    def for_route(self, namespace: str, name: str, kind: str = "HTTPRoute") -> FailoverPolicy | None:
        return self.by_target.get((kind, namespace, name))

    def for_target(self, target: PolicyKey) -> FailoverPolicy | None:
        return self.by_target.get(target)


REASON_TARGET_NOT_FOUND = "TargetNotFound"
REASON_CONFLICTED = "Conflicted"
REASON_UNKNOWN_CLUSTER = "UnknownCluster"


def resolve_policies(policies: Iterable[FailoverPolicy], imports: Iterable[tuple[str, str]],
                     routes: Iterable[PolicyKey], cluster_names: Iterable[str]) -> PolicyResolution:
    """Attach policies to their targets in the same namespace. Two policies on one target: the older
    (creationTimestamp, then name) wins and the other is Accepted False ``Conflicted``. ``routes`` are
    (kind, namespace, name) of every route in the cluster."""
    by_target: dict[PolicyKey, FailoverPolicy] = {}
    conditions: dict[tuple[str, str], c.Condition] = {}
    policies = list(policies)
    if not policies:  # the common case, on every translation: skip building the target sets
        return PolicyResolution(by_target, conditions)
    known = {("ServiceImport", *key) for key in imports} | set(routes)
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
