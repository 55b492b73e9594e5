"""Failover semantics: priority levels, policy merging, and policy attachment with precise reasons."""

from __future__ import annotations

from typing import Any

import pytest

from mcgw.app.config import ClusterProperties
from mcgw.objects.model import FailoverPolicy, parse_object
from mcgw.semantics.policy.failover import (
    DEFAULTS,
    HealthCheckSettings,
    apply_policy,
    duration_ms,
    priority_levels,
    resolve_policies,
)
from mcgw.translate.clusters import ALL_OR_NOTHING_OVERPROVISIONING, SPILLOVER_OVERPROVISIONING, overprovisioning_factor

CLUSTERS = {c.name: c for c in (
    ClusterProperties(name="east", region="us", failover_order=("central", "west")),
    ClusterProperties(name="west", region="eu"),
    ClusterProperties(name="central", region="us"),
    ClusterProperties(name="north", region="us"),
    ClusterProperties(name="south", region="ap"),
)}


def _policy(name: str, spec: dict[str, Any], created: str = "2026-01-01T00:00:00Z") -> FailoverPolicy:
    policy = parse_object({"apiVersion": "mcgw.io/v1alpha1", "kind": "FailoverPolicy",
                           "metadata": {"name": name, "namespace": "shop", "generation": 2,
                                        "creationTimestamp": created}, "spec": spec}, name)
    assert isinstance(policy, FailoverPolicy)
    return policy


def _to_import(name: str = "cart") -> list[dict[str, str]]:
    return [{"group": "multicluster.x-k8s.io", "kind": "ServiceImport", "name": name}]


def test_each_preferred_cluster_is_a_level_of_its_own() -> None:
    everyone = list(CLUSTERS)
    assert priority_levels("east", everyone, CLUSTERS) == [
        ("east",), ("central",), ("west",), ("north",), ("south",)]
    assert priority_levels("east", everyone, CLUSTERS, preference=["south"]) == [
        ("east",), ("south",), ("central", "north"), ("west",)]


def test_without_a_preference_same_region_comes_before_other_regions() -> None:
    assert priority_levels("north", list(CLUSTERS), CLUSTERS) == [
        ("north",), ("central", "east"), ("south", "west")]


def test_levels_without_endpoints_are_dropped_so_priorities_stay_contiguous() -> None:
    assert priority_levels("east", ["west"], CLUSTERS) == [("west",)]
    assert priority_levels("east", ["west", "east"], CLUSTERS) == [("east",), ("west",)]
    assert priority_levels("east", [], CLUSTERS) == []


def test_durations() -> None:
    assert [duration_ms(v) for v in ("500ms", "1s", "2m", "1h", "1m30s", "1s250ms")] == [
        500, 1000, 120000, 3600000, 90000, 1250]


def test_defaults_are_the_measured_lossless_combination() -> None:
    assert overprovisioning_factor(DEFAULTS) == ALL_OR_NOTHING_OVERPROVISIONING
    assert DEFAULTS.health_check == HealthCheckSettings("/healthz", 500, 250, 500, 1, 1)
    assert DEFAULTS.outlier is not None
    assert DEFAULTS.outlier.consecutive_failures == 1
    assert DEFAULTS.retry is not None
    assert DEFAULTS.retry.retry_on == ("connect-failure", "refused-stream", "reset", "5xx")


def test_a_policy_overrides_only_what_it_sets() -> None:
    policy = _policy("p", {"targetRefs": _to_import(), "mode": "WeightedSpillover", "preference": ["west"],
                           "healthCheck": {"path": "/ready", "interval": "2s"}, "outlierDetection": {"enabled": False}})
    settings = apply_policy(DEFAULTS, policy)
    assert overprovisioning_factor(settings) == SPILLOVER_OVERPROVISIONING
    assert settings.preference == ("west",)
    assert settings.health_check == HealthCheckSettings("/ready", 2000, 250, 500, 1, 1)
    assert settings.outlier is None
    assert settings.retry == DEFAULTS.retry


@pytest.mark.parametrize(("mechanism", "field"), [("healthCheck", "health_check"), ("retry", "retry")])
def test_enabled_false_turns_a_mechanism_off(mechanism: str, field: str) -> None:
    settings = apply_policy(DEFAULTS, _policy("p", {"targetRefs": _to_import(), mechanism: {"enabled": False}}))
    assert getattr(settings, field) is None


def test_policies_attach_to_existing_targets_and_the_older_wins() -> None:
    older = _policy("older", {"targetRefs": _to_import()}, "2026-01-01T00:00:00Z")
    newer = _policy("newer", {"targetRefs": _to_import()}, "2026-02-01T00:00:00Z")
    missing = _policy("missing", {"targetRefs": _to_import("nope")})
    route = _policy("route", {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                              "name": "store"}]})
    stranger = _policy("stranger", {"targetRefs": _to_import(), "preference": ["mars"]})
    resolution = resolve_policies([newer, missing, older, route, stranger], [("shop", "cart")],
                                  [("HTTPRoute", "shop", "store")],
                                  CLUSTERS)
    assert resolution.for_import("shop", "cart") is older
    assert resolution.for_route("shop", "store") is route
    reasons = {name: (cond.status, cond.reason) for (_, name), cond in resolution.conditions.items()}
    assert reasons == {"older": ("True", "Accepted"), "newer": ("False", "Conflicted"),
                       "missing": ("False", "TargetNotFound"), "route": ("True", "Accepted"),
                       "stranger": ("False", "UnknownCluster")}
    assert "older" in resolution.conditions[("shop", "newer")].message
    assert all(cond.observed_generation == 2 for cond in resolution.conditions.values())
