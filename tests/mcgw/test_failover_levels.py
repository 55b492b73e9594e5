"""FailoverPolicy v1alpha2: levels as written (names, regions, selectors, the local cluster, weights),
exclusions and maxLevels for data residency, gradual spillover with a minimum healthy share, and the
``Invalid`` and ``UnknownCluster`` reasons for what contradicts itself or names nothing."""

from __future__ import annotations

from typing import Any

import pytest

from mcgw.app.config import ClusterProperties
from mcgw.objects.model import FailoverPolicy, parse_object
from mcgw.semantics.policy.failover import DEFAULTS, apply_policy, level_plan, priority_levels, resolve_policies
from mcgw.translate.clusters import ALL_OR_NOTHING_OVERPROVISIONING, SPILLOVER_OVERPROVISIONING, overprovisioning_factor

CLUSTERS = {c.name: c for c in (
    ClusterProperties(name="tokyo", region="ap-northeast", labels={"geo": "asia", "country": "jp"}),
    ClusterProperties(name="osaka", region="ap-northeast", labels={"geo": "asia", "country": "jp"}),
    ClusterProperties(name="seoul", region="ap-northeast-2", labels={"geo": "asia"}),
    ClusterProperties(name="singapore", region="ap-southeast", labels={"geo": "asia"}),
    ClusterProperties(name="frankfurt", region="eu-central", labels={"geo": "eu"}),
    ClusterProperties(name="virginia", region="us-east", labels={"geo": "us"}),
)}


def _policy(spec: dict[str, Any], name: str = "p", version: str = "v1alpha2") -> FailoverPolicy:
    policy = parse_object({"apiVersion": f"mcgw.io/{version}", "kind": "FailoverPolicy",
                           "metadata": {"name": name, "namespace": "shop", "generation": 3,
                                        "creationTimestamp": "2026-01-01T00:00:00Z"},
                           "spec": {"targetRefs": [{"group": "multicluster.x-k8s.io", "kind": "ServiceImport",
                                                    "name": "cart"}], **spec}}, name)
    assert isinstance(policy, FailoverPolicy)
    return policy


def _levels(spec: dict[str, Any], local: str = "tokyo", sources: list[str] | None = None) -> list[tuple[str, ...]]:
    settings = apply_policy(DEFAULTS, _policy(spec), local, CLUSTERS)
    return priority_levels(local, list(CLUSTERS) if sources is None else sources, CLUSTERS, settings=settings)


def _accepted(spec: dict[str, Any]) -> tuple[str, str, str]:
    condition = resolve_policies([_policy(spec)], [("shop", "cart")], [], CLUSTERS).conditions[("shop", "p")]
    assert condition.observed_generation == 3
    return condition.status, condition.reason, condition.message


def test_without_levels_the_defaults_stay_as_they_were() -> None:
    assert _levels({}) == [("tokyo",), ("osaka",), ("frankfurt", "seoul", "singapore", "virginia")]


def test_levels_as_written_by_name_region_selector_and_local() -> None:
    spec = {"levels": [{"clusters": [{"local": True}]},
                       {"clusters": [{"selector": {"matchLabels": {"country": "jp"}}}]},
                       {"clusters": [{"region": "ap-northeast-2"}, {"name": "singapore"}]}]}
    assert _levels(spec) == [("tokyo",), ("osaka",), ("seoul", "singapore"), ("frankfurt", "virginia")]
    # The same policy seen from osaka: local is osaka, and tokyo (already in the selector's level) comes second.
    assert _levels(spec, local="osaka") == [("osaka",), ("tokyo",), ("seoul", "singapore"), ("frankfurt", "virginia")]


def test_the_local_cluster_is_not_first_unless_a_level_says_so() -> None:
    spec = {"levels": [{"clusters": [{"name": "seoul"}, {"local": True}]}]}
    assert _levels(spec) == [("seoul", "tokyo"), ("osaka",), ("frankfurt", "singapore", "virginia")]


def test_japan_then_asia_then_nowhere() -> None:
    spec = {"levels": [{"clusters": [{"selector": {"matchLabels": {"country": "jp"}}}]},
                       {"clusters": [{"selector": {"matchLabels": {"geo": "asia"}}}]}], "maxLevels": 2}
    assert _levels(spec) == [("osaka", "tokyo"), ("seoul", "singapore")]
    # Japan without endpoints: Asia serves, and the cut does not move down to let Europe in.
    assert _levels(spec, sources=["seoul", "frankfurt", "virginia"]) == [("seoul",)]
    assert _levels(spec, sources=["frankfurt", "virginia"]) == []


def test_eu_traffic_never_leaves_the_eu() -> None:
    spec = {"exclude": [{"selector": {"matchExpressions": [{"key": "geo", "operator": "NotIn", "values": ["eu"]}]}}]}
    assert _levels(spec, local="frankfurt") == [("frankfurt",)]
    assert _levels(spec, local="frankfurt", sources=["tokyo", "virginia"]) == []


def test_exclusion_wins_over_a_level_that_names_the_cluster() -> None:
    spec = {"levels": [{"clusters": [{"local": True}, {"name": "seoul"}]}], "exclude": [{"region": "ap-northeast-2"}]}
    assert _levels(spec) == [("tokyo",), ("osaka",), ("frankfurt", "singapore", "virginia")]


def test_weights_are_per_cluster_and_absent_where_not_given() -> None:
    settings = apply_policy(DEFAULTS, _policy({"levels": [{"clusters": [{"local": True, "weight": 80},
                                                                        {"region": "ap-northeast-2", "weight": 20}]},
                                                          {"clusters": [{"name": "singapore"}]}]}),
                            "tokyo", CLUSTERS)
    assert settings.weights() == {"tokyo": 80, "seoul": 20}
    assert level_plan("tokyo", CLUSTERS, CLUSTERS, settings)[:2] == [("tokyo", "seoul"), ("singapore",)]


def test_a_v1alpha1_policy_reads_the_same_as_v1alpha2() -> None:
    spec = {"preference": ["singapore"], "mode": "WeightedSpillover"}
    old = apply_policy(DEFAULTS, _policy(spec, version="v1alpha1"), "tokyo", CLUSTERS)
    assert old == apply_policy(DEFAULTS, _policy(spec), "tokyo", CLUSTERS)
    assert priority_levels("tokyo", list(CLUSTERS), CLUSTERS, settings=old)[:2] == [("tokyo",), ("singapore",)]
    assert overprovisioning_factor(old) == SPILLOVER_OVERPROVISIONING


@pytest.mark.parametrize(("spillover", "factor"), [
    ({"mode": "AllOrNothing"}, ALL_OR_NOTHING_OVERPROVISIONING),
    ({"mode": "Gradual"}, 100),                            # the next level gets exactly the capacity lost
    ({"mode": "Gradual", "minHealthyPercent": 50}, 200),   # one of two may go before anything spills
    ({"mode": "Gradual", "minHealthyPercent": 80}, 125),
])
def test_spillover_sets_envoys_overprovisioning_factor(spillover: dict[str, Any], factor: int) -> None:
    assert overprovisioning_factor(apply_policy(DEFAULTS, _policy({"spillover": spillover}))) == factor


def test_a_route_policy_on_top_keeps_the_import_policys_levels_unless_it_sets_its_own() -> None:
    base = apply_policy(DEFAULTS, _policy({"levels": [{"clusters": [{"name": "seoul"}]}], "maxLevels": 1}),
                        "tokyo", CLUSTERS)
    on_top = apply_policy(base, _policy({"spillover": {"mode": "Gradual"}}), "tokyo", CLUSTERS)
    assert (on_top.levels, on_top.max_levels, on_top.all_or_nothing) == (base.levels, 1, False)
    replaced = apply_policy(base, _policy({"preference": ["osaka"]}), "tokyo", CLUSTERS)
    assert priority_levels("tokyo", list(CLUSTERS), CLUSTERS, settings=replaced) == [("tokyo",)]  # maxLevels kept


def test_a_consistent_policy_is_accepted() -> None:
    assert _accepted({"levels": [{"clusters": [{"local": True}]}], "exclude": [{"region": "us-east"}],
                      "maxLevels": 3, "spillover": {"mode": "Gradual", "minHealthyPercent": 50}})[:2] == (
        "True", "Accepted")


@pytest.mark.parametrize(("spec", "says"), [
    ({"levels": [{"clusters": [{"local": True}]}], "preference": ["osaka"]}, "set levels or preference, not both"),
    ({"spillover": {"mode": "Gradual"}, "mode": "AllOrNothing"}, "set spillover or mode, not both"),
    ({"spillover": {"mode": "AllOrNothing", "minHealthyPercent": 50}}, "minHealthyPercent applies to mode Gradual"),
    ({"levels": [{"clusters": [{"name": "osaka", "region": "ap-northeast"}]}]},
     "levels[0].clusters[0] must set exactly one of name, region, selector and local"),
    ({"levels": [{"clusters": [{"weight": 3}]}]}, "levels[0].clusters[0] must set exactly one"),
    ({"exclude": [{"local": True}]}, "exclude[0]: the gateway's own cluster cannot be excluded"),
    ({"fallback": [{"kind": "ServiceImport", "name": "cart-v1"}]},
     "fallback[0]: kind ServiceImport is in multicluster.x-k8s.io"),
])
def test_contradictions_are_invalid_with_the_field_named(spec: dict[str, Any], says: str) -> None:
    status, reason, message = _accepted(spec)
    assert (status, reason) == ("False", "Invalid")
    assert says in message


@pytest.mark.parametrize(("spec", "field"), [
    ({"levels": [{"clusters": [{"name": "mars"}]}]}, "levels"),
    ({"exclude": [{"name": "mars"}]}, "exclude"),
    ({"preference": ["mars"]}, "preference"),
])
def test_a_cluster_outside_the_clusterset_is_unknown(spec: dict[str, Any], field: str) -> None:
    assert _accepted(spec) == ("False", "UnknownCluster",
                               f"{field} names clusters that are not members of the ClusterSet: mars")


def test_the_model_refuses_weights_and_percentages_out_of_range() -> None:
    from mcgw.objects.model import ManifestError
    for spec in ({"levels": [{"clusters": [{"local": True, "weight": 0}]}]},
                 {"spillover": {"mode": "Gradual", "minHealthyPercent": 0}}, {"maxLevels": 0}, {"levels": []}):
        with pytest.raises(ManifestError):
            _policy(spec)
