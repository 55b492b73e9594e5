"""Failover translation: a ServiceImport backend becomes one EDS cluster with a priority per source cluster,
the measured lossless defaults, FailoverPolicy overrides, and incremental translation equal to a full one."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from mcgw.objects.model import AnyObject, EndpointSlice, parse_object
from mcgw.providers.files.manifests import read_clusterset_dir
from mcgw.runtime.incremental import McsInput
from mcgw.runtime.pipeline import ClusterOutput, ClusterTranslator, translate_cluster
from mcgw.semantics.mcs.exports import compute_mcs
from tests.envoy_validate import validate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "failover"
CART = "serviceimport/shop/cart/80"


def _load() -> tuple[dict[str, Any], dict[str, list[AnyObject]]]:
    properties, objects = read_clusterset_dir(EXAMPLE)
    return {c.name: c for c in properties.clusters}, objects


def _mcs(clusters: dict[str, Any], objects: dict[str, list[AnyObject]]) -> McsInput:
    return McsInput(compute_mcs(objects, {}, time.time()).view.services, clusters)


def _json(message: Message) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(message)
    return result


def _of(output: ClusterOutput, kind: str, name: str) -> dict[str, Any]:
    for messages in output.resources.values():
        for message in messages:
            data = _json(message)
            if message.DESCRIPTOR.name == kind and data.get("name", data.get("clusterName")) == name:
                return data
    raise AssertionError(f"no {kind} {name}")


def _assert_envoy_accepts(output: ClusterOutput) -> None:
    """Envoy's own validation takes every resource of the output."""
    for messages in output.resources.values():
        checked = validate(list(messages))
        assert checked.returncode == 0, checked.stdout + checked.stderr


def _priorities(output: ClusterOutput, name: str = CART) -> dict[str, int]:
    assignment = _of(output, "ClusterLoadAssignment", name)
    return {loc["locality"]["subZone"]: loc.get("priority", 0) for loc in assignment["endpoints"]}


def _gateway_of(objects: list[AnyObject]) -> list[AnyObject]:
    """The example's Gateway, its class, route and namespace, to translate them as another cluster would."""
    return [o for o in objects if o.kind in ("GatewayClass", "Gateway", "HTTPRoute")
            or (o.kind == "Namespace" and o.metadata.name == "infra")]


def _policy(spec: dict[str, Any], name: str = "cart-failover") -> AnyObject:
    return parse_object({"apiVersion": "mcgw.io/v1alpha1", "kind": "FailoverPolicy",
                         "metadata": {"name": name, "namespace": "shop", "generation": 1}, "spec": spec}, name)


def test_the_gateway_cluster_comes_first_then_its_failover_order_then_the_rest() -> None:
    clusters, objects = _load()
    output = translate_cluster("east", objects["east"], mcs=_mcs(clusters, objects))
    assert _priorities(output) == {"east": 0, "west": 1, "central": 2}
    assignment = _of(output, "ClusterLoadAssignment", CART)
    assert assignment["policy"]["overprovisioningFactor"] == 100000
    health = {e["endpoint"]["address"]["socketAddress"]["address"]: e["healthStatus"]
              for loc in assignment["endpoints"] for e in loc["lbEndpoints"]}
    assert health["198.18.1.10"] == "HEALTHY"
    assert health["198.18.1.11"] == "DRAINING"  # serving and terminating
    route_status = output.statuses()["HTTPRoute"]["shop/cart"]["parents"][0]["conditions"]
    assert {c["type"]: c["status"] for c in route_status} == {"Accepted": "True", "ResolvedRefs": "True"}


def test_the_defaults_are_the_lossless_combination_and_envoy_accepts_them() -> None:
    clusters, objects = _load()
    output = translate_cluster("east", objects["east"], mcs=_mcs(clusters, objects))
    cluster = _of(output, "Cluster", CART)
    assert cluster["healthChecks"][0]["httpHealthCheck"]["path"] == "/healthz"
    assert cluster["healthChecks"][0]["noTrafficInterval"] == "0.500s"
    assert cluster["outlierDetection"]["maxEjectionPercent"] == 100
    assert cluster["commonLbConfig"]["healthyPanicThreshold"] == {}  # explicitly 0 %: a dead priority is never used
    assert cluster["commonLbConfig"]["updateMergeWindow"] == "0s"  # health changes apply at once
    assert cluster["circuitBreakers"]["thresholds"][0]["retryBudget"]["minRetryConcurrency"] == 1000
    route = next(r for m in output.resources.values() for msg in m if msg.DESCRIPTOR.name == "RouteConfiguration"
                 for vh in _json(msg)["virtualHosts"] for r in vh["routes"])
    retry = route["route"]["retryPolicy"]
    assert retry["retryOn"] == "connect-failure,refused-stream,reset,5xx"
    assert retry["retryPriority"]["name"] == "envoy.retry_priorities.previous_priorities"
    assert retry["retryHostPredicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"
    _assert_envoy_accepts(output)


def test_without_a_preference_same_region_first_and_the_rest_share_a_level() -> None:
    clusters, objects = _load()
    output = translate_cluster("central", [*objects["central"], *_gateway_of(objects["east"])],
                               mcs=_mcs(clusters, objects))
    assert _priorities(output) == {"central": 0, "east": 1, "west": 1}


def test_a_policy_on_the_service_import_overrides_the_defaults_it_sets() -> None:
    clusters, objects = _load()
    policy = _policy({"targetRefs": [{"group": "multicluster.x-k8s.io", "kind": "ServiceImport", "name": "cart"}],
                      "preference": ["central"], "mode": "WeightedSpillover", "healthCheck": {"enabled": False}})
    output = translate_cluster("east", [*objects["east"], policy], mcs=_mcs(clusters, objects))
    assert _priorities(output) == {"east": 0, "central": 1, "west": 2}
    assert _of(output, "ClusterLoadAssignment", CART)["policy"]["overprovisioningFactor"] == 140
    cluster = _of(output, "Cluster", CART)
    assert "healthChecks" not in cluster
    assert "outlierDetection" in cluster
    status = output.statuses()["FailoverPolicy"]["shop/cart-failover"]["conditions"][0]
    assert (status["type"], status["status"], status["reason"]) == ("Accepted", "True", "Accepted")


def test_a_policy_on_a_route_gives_that_route_clusters_of_its_own() -> None:
    clusters, objects = _load()
    policy = _policy({"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "cart"}],
                      "retry": {"enabled": False}, "healthCheck": {"path": "/ready"}}, "route-policy")
    output = translate_cluster("east", [*objects["east"], policy], mcs=_mcs(clusters, objects))
    name = f"{CART}/policy/route-policy"
    assert _of(output, "Cluster", name)["healthChecks"][0]["httpHealthCheck"]["path"] == "/ready"
    route = next(r for m in output.resources.values() for msg in m if msg.DESCRIPTOR.name == "RouteConfiguration"
                 for vh in _json(msg)["virtualHosts"] for r in vh["routes"])
    assert route["route"]["cluster"] == name
    assert "retryPolicy" not in route["route"]


def test_a_policy_naming_a_missing_target_says_so() -> None:
    clusters, objects = _load()
    policy = _policy({"targetRefs": [{"group": "multicluster.x-k8s.io", "kind": "ServiceImport", "name": "nope"}]})
    output = translate_cluster("east", [*objects["east"], policy], mcs=_mcs(clusters, objects))
    status = output.statuses()["FailoverPolicy"]["shop/cart-failover"]["conditions"][0]
    assert (status["status"], status["reason"]) == ("False", "TargetNotFound")
    assert _of(output, "ClusterLoadAssignment", CART)["policy"]["overprovisioningFactor"] == 100000


def _serialised(output: ClusterOutput) -> dict[tuple[str, str], list[bytes]]:
    return {key: [m.SerializeToString(deterministic=True) for m in messages]
            for key, messages in sorted(output.resources.items())}


def _assert_incremental_equals_full(clusters: dict[str, Any],
                                    scenarios: list[tuple[list[AnyObject], dict[str, list[AnyObject]]]]) -> None:
    """One translator fed east's objects and the ClusterSet of each scenario in turn, twice over, gives what
    a translation from nothing gives, resources and statuses alike."""
    translator = ClusterTranslator("east")
    for east, everyone in scenarios * 2:
        east_sorted = tuple(sorted(east, key=lambda o: o.key))
        mcs = _mcs(clusters, everyone)
        incremental = translator.translate(east_sorted, mcs=mcs)
        full = translate_cluster("east", east_sorted, mcs=mcs)
        assert _serialised(incremental) == _serialised(full)
        assert incremental.statuses() == full.statuses()


def _without_ready_endpoints(objects: list[AnyObject]) -> list[AnyObject]:
    changed: list[AnyObject] = []
    for obj in objects:
        if isinstance(obj, EndpointSlice):
            endpoints = tuple(replace(e, conditions=replace(e.conditions, ready=False)) for e in obj.endpoints)
            obj = replace(obj, endpoints=endpoints)
        changed.append(obj)
    return changed


def test_incremental_translation_equals_a_full_one_as_imports_and_policies_change() -> None:
    clusters, objects = _load()
    policy = _policy({"targetRefs": [{"group": "multicluster.x-k8s.io", "kind": "ServiceImport", "name": "cart"}],
                      "preference": ["central"]})
    route_policy = _policy({"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                            "name": "cart"}], "mode": "WeightedSpillover"}, "route-policy")
    scenarios: list[tuple[list[AnyObject], dict[str, list[AnyObject]]]] = [
        (objects["east"], objects),
        (objects["east"], {**objects, "west": _without_ready_endpoints(objects["west"])}),  # west's backends down
        ([*objects["east"], policy], objects),
        ([*objects["east"], policy, route_policy], objects),
        ([*objects["east"], route_policy], {**objects, "central": []}),  # central stopped exporting
        (objects["east"], objects),
    ]
    _assert_incremental_equals_full(clusters, scenarios)


def _v2(spec: dict[str, Any], name: str = "cart-failover") -> AnyObject:
    return parse_object({"apiVersion": "mcgw.io/v1alpha2", "kind": "FailoverPolicy",
                         "metadata": {"name": name, "namespace": "shop", "generation": 1},
                         "spec": {"targetRefs": [{"group": "multicluster.x-k8s.io", "kind": "ServiceImport",
                                                  "name": "cart"}], **spec}}, name)


def test_clusters_sharing_a_level_get_their_weights_and_envoy_accepts_them() -> None:
    clusters, objects = _load()
    policy = _v2({"levels": [{"clusters": [{"local": True, "weight": 80}, {"name": "west", "weight": 20}]}]})
    output = translate_cluster("east", [*objects["east"], policy], mcs=_mcs(clusters, objects))
    assignment = _of(output, "ClusterLoadAssignment", CART)
    weights = {loc["locality"]["subZone"]: (loc.get("priority", 0), loc["loadBalancingWeight"])
               for loc in assignment["endpoints"]}
    # Envoy gets the policy's weights x 100 (a cluster's weight is shared among its zones in whole numbers).
    assert weights == {"east": (0, 8000), "west": (0, 2000), "central": (1, 100)}
    assert _of(output, "Cluster", CART)["commonLbConfig"]["localityWeightedLbConfig"] == {}
    _assert_envoy_accepts(output)


def test_without_weights_no_locality_weighting() -> None:
    clusters, objects = _load()
    output = translate_cluster("east", objects["east"], mcs=_mcs(clusters, objects))
    assert all("loadBalancingWeight" not in loc for loc in _of(output, "ClusterLoadAssignment", CART)["endpoints"])
    assert "localityWeightedLbConfig" not in _of(output, "Cluster", CART)["commonLbConfig"]


def test_an_excluded_cluster_and_those_past_max_levels_get_no_endpoints() -> None:
    clusters, objects = _load()
    excluded = translate_cluster("east", [*objects["east"], _v2({"exclude": [{"region": "us-central"}]})],
                                 mcs=_mcs(clusters, objects))
    assert _priorities(excluded) == {"east": 0, "west": 1}
    capped = translate_cluster("east", [*objects["east"], _v2({"maxLevels": 1})], mcs=_mcs(clusters, objects))
    assert _priorities(capped) == {"east": 0}
    # The allowed cluster without ready endpoints: only its draining one is left (Envoy answers 503 rather than
    # use it); nothing goes to the clusters past the cut.
    down = {**objects, "east": _without_ready_endpoints(objects["east"])}
    nothing = translate_cluster("east", [*down["east"], _v2({"maxLevels": 1})], mcs=_mcs(clusters, down))
    localities = _of(nothing, "ClusterLoadAssignment", CART)["endpoints"]
    assert [(loc["locality"]["subZone"], {e["healthStatus"] for e in loc["lbEndpoints"]}) for loc in localities] == [
        ("east", {"DRAINING"})]


def test_gradual_spillover_with_a_minimum_healthy_share() -> None:
    clusters, objects = _load()
    policy = _v2({"spillover": {"mode": "Gradual", "minHealthyPercent": 50}})
    output = translate_cluster("east", [*objects["east"], policy], mcs=_mcs(clusters, objects))
    assert _of(output, "ClusterLoadAssignment", CART)["policy"]["overprovisioningFactor"] == 200


def test_an_invalid_policy_changes_nothing_and_says_why() -> None:
    clusters, objects = _load()
    plain = translate_cluster("east", objects["east"], mcs=_mcs(clusters, objects))
    policy = _v2({"levels": [{"clusters": [{"name": "west"}]}], "preference": ["central"]})
    output = translate_cluster("east", [*objects["east"], policy], mcs=_mcs(clusters, objects))
    assert _serialised(output) == _serialised(plain)
    status = output.statuses()["FailoverPolicy"]["shop/cart-failover"]["conditions"][0]
    assert (status["status"], status["reason"]) == ("False", "Invalid")


def test_incremental_translation_equals_a_full_one_as_levels_and_weights_change() -> None:
    clusters, objects = _load()
    weighted = _v2({"levels": [{"clusters": [{"local": True, "weight": 3}, {"name": "west", "weight": 1}]}]})
    residency = _v2({"exclude": [{"name": "central"}], "maxLevels": 2, "spillover": {"mode": "Gradual"}})
    scenarios: list[tuple[list[AnyObject], dict[str, list[AnyObject]]]] = [
        ([*objects["east"], weighted], objects),
        ([*objects["east"], residency], objects),
        ([*objects["east"], residency], {**objects, "east": _without_ready_endpoints(objects["east"])}),
        ([*objects["east"], weighted], {**objects, "west": []}),
        (objects["east"], objects),
    ]
    _assert_incremental_equals_full(clusters, scenarios)


def _yaml_objects(text: str) -> list[AnyObject]:
    import yaml
    return [parse_object(doc, "test") for doc in yaml.safe_load_all(text)]


_STATIC_CART = """\
apiVersion: v1
kind: Namespace
metadata: {name: static}
---
apiVersion: v1
kind: Service
metadata: {name: cart-static, namespace: static}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: cart-static-1, namespace: static, labels: {kubernetes.io/service-name: cart-static}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
  - {addresses: [198.18.1.90], conditions: {ready: true}}
"""
_GRANT = """\
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: shop-fallback, namespace: static}
spec:
  from: [{group: mcgw.io, kind: FailoverPolicy, namespace: shop}]
  to: [{group: "", kind: Service}]
"""


def _fallback_policy() -> AnyObject:
    return _v2({"maxLevels": 2, "fallback": [{"kind": "Service", "name": "cart-static", "namespace": "static"}]})


def _endpoints_by_priority(output: ClusterOutput) -> list[tuple[int, str, list[str]]]:
    return [(loc.get("priority", 0), loc["locality"]["subZone"],
             [e["endpoint"]["address"]["socketAddress"]["address"] for e in loc["lbEndpoints"]])
            for loc in _of(output, "ClusterLoadAssignment", CART)["endpoints"]]


def test_a_fallback_service_follows_every_level_of_the_import_once_a_grant_permits_it() -> None:
    clusters, objects = _load()
    east = [*objects["east"], *_yaml_objects(_STATIC_CART), _fallback_policy()]
    refused = translate_cluster("east", east, mcs=_mcs(clusters, objects))
    assert [p for p, *_ in _endpoints_by_priority(refused)] == [0, 1]  # the fallback is left out
    conditions = refused.statuses()["FailoverPolicy"]["shop/cart-failover"]["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in conditions] == [
        ("Accepted", "True", "Accepted"), ("ResolvedRefs", "False", "RefNotPermitted")]
    assert "Service static/cart-static" in conditions[1]["message"]

    granted = translate_cluster("east", [*east, *_yaml_objects(_GRANT)], mcs=_mcs(clusters, objects))
    assert _endpoints_by_priority(granted) == [
        (0, "east", ["198.18.1.10", "198.18.1.11"]), (1, "west", ["198.18.2.10", "198.18.2.11"]),
        (2, "east", ["198.18.1.90"])]
    conditions = granted.statuses()["FailoverPolicy"]["shop/cart-failover"]["conditions"]
    assert [(c["type"], c["status"]) for c in conditions] == [("Accepted", "True"), ("ResolvedRefs", "True")]
    _assert_envoy_accepts(granted)


def test_a_missing_fallback_is_named_and_appears_when_created() -> None:
    clusters, objects = _load()
    policy = _v2({"fallback": [{"group": "multicluster.x-k8s.io", "kind": "ServiceImport", "name": "cart-v1"}]})
    output = translate_cluster("east", [*objects["east"], policy], mcs=_mcs(clusters, objects))
    conditions = output.statuses()["FailoverPolicy"]["shop/cart-failover"]["conditions"]
    assert (conditions[1]["reason"], conditions[1]["message"]) == (
        "BackendNotFound", "fallback not found (yet): ServiceImport shop/cart-v1")
    assert [p for p, *_ in _endpoints_by_priority(output)] == [0, 1, 2]


def test_incremental_translation_equals_a_full_one_as_fallbacks_change() -> None:
    clusters, objects = _load()
    static, grant = _yaml_objects(_STATIC_CART), _yaml_objects(_GRANT)
    down = [o for o in static if not isinstance(o, EndpointSlice)]
    scenarios: list[list[AnyObject]] = [
        [*objects["east"], *static, _fallback_policy()],
        [*objects["east"], *static, *grant, _fallback_policy()],  # the grant arrives
        [*objects["east"], *down, *grant, _fallback_policy()],  # the fallback's endpoints go
        [*objects["east"], *static, *grant, _fallback_policy()],  # and come back
        [*objects["east"], *static, *grant],  # the policy goes
    ]
    _assert_incremental_equals_full(clusters, [(east, objects) for east in scenarios])


def _zoned_east(objects: dict[str, list[AnyObject]], distribution: str | None) -> dict[str, list[AnyObject]]:
    """east's cart in two zones (two endpoints in east-a, one in east-b, one in east-b hinted for east-a),
    and every cluster's cart Service with ``distribution``."""
    from mcgw.objects.model import Service

    zoned = _yaml_objects("""\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: cart-1, namespace: shop, labels: {kubernetes.io/service-name: cart}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
  - {addresses: [198.18.1.10], zone: east-a, conditions: {ready: true}}
  - {addresses: [198.18.1.12], zone: east-a, conditions: {ready: true}}
  - {addresses: [198.18.1.13], zone: east-b, conditions: {ready: true}}
  - {addresses: [198.18.1.14], zone: east-b, hints: {forZones: [{name: east-a}]}, conditions: {ready: true}}
""")
    changed = {}
    for cluster, items in objects.items():
        out = []
        for obj in items:
            if isinstance(obj, Service) and obj.metadata.name == "cart":
                obj = replace(obj, spec=replace(obj.spec, traffic_distribution=distribution))
            if cluster == "east" and isinstance(obj, EndpointSlice):
                obj = zoned[0]
            out.append(obj)
        changed[cluster] = out
    return changed


def _zoned_clusters(clusters: dict[str, Any]) -> dict[str, Any]:
    return {**clusters, "east": clusters["east"].model_copy(update={"zone": "east-a"})}


def test_endpoints_are_grouped_by_zone_and_prefer_close_keeps_the_gateways_zone_first() -> None:
    clusters, objects = _load()
    clusters = _zoned_clusters(clusters)
    plain = _zoned_east(objects, None)
    output = translate_cluster("east", plain["east"], mcs=_mcs(clusters, plain))
    zones = [(loc.get("priority", 0), loc["locality"]["subZone"], loc["locality"].get("zone", ""),
              len(loc["lbEndpoints"])) for loc in _of(output, "ClusterLoadAssignment", CART)["endpoints"]]
    assert zones == [(0, "east", "east-a", 2), (0, "east", "east-b", 2), (1, "west", "", 2), (2, "central", "", 2)]

    close = _zoned_east(objects, "PreferClose")
    output = translate_cluster("east", close["east"], mcs=_mcs(clusters, close))
    assert _endpoints_by_priority(output) == [
        (0, "east", ["198.18.1.10", "198.18.1.12"]), (0, "east", ["198.18.1.14"]),  # east-a, and hinted for it
        (1, "east", ["198.18.1.13"]), (2, "west", ["198.18.2.10", "198.18.2.11"]),
        (3, "central", ["198.18.3.10", "198.18.3.11"])]
    # Seen from west, east's zones are one level: PreferClose is about the gateway's own zone.
    output = translate_cluster("west", [*close["west"], *_gateway_of(close["east"])], mcs=_mcs(clusters, close))
    assert [(p, c) for p, c, _ in _endpoints_by_priority(output)] == [
        (0, "west"), (1, "central"), (1, "east"), (1, "east")]


def test_a_weighted_cluster_shares_its_weight_among_its_zones() -> None:
    clusters, objects = _load()
    zoned = _zoned_east(objects, None)
    policy = _v2({"levels": [{"clusters": [{"local": True, "weight": 3}, {"name": "west", "weight": 1}]}]})
    output = translate_cluster("east", [*zoned["east"], policy], mcs=_mcs(_zoned_clusters(clusters), zoned))
    weights = [(loc["locality"]["subZone"], loc["locality"].get("zone", ""), loc["loadBalancingWeight"])
               for loc in _of(output, "ClusterLoadAssignment", CART)["endpoints"] if loc.get("priority", 0) == 0]
    assert weights == [("east", "east-a", 150), ("east", "east-b", 150), ("west", "", 100)]


def test_gradual_spillover_counts_a_not_ready_pod_as_capacity_lost() -> None:
    """With Gradual spillover a listed pod that is not ready stays in the assignment as UNHEALTHY, so Envoy's
    share for the next level follows the capacity lost; AllOrNothing leaves it out, as before."""
    clusters, objects = _load()
    unready = _yaml_objects("""\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: cart-1, namespace: shop, labels: {kubernetes.io/service-name: cart}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
  - {addresses: [198.18.1.10], conditions: {ready: true}}
  - {addresses: [198.18.1.12], conditions: {ready: false}}
""")[0]
    changed = {**objects, "east": [unready if isinstance(o, EndpointSlice) else o for o in objects["east"]]}

    def east_health(output: ClusterOutput) -> dict[str, str]:
        east = next(loc for loc in _of(output, "ClusterLoadAssignment", CART)["endpoints"]
                    if loc["locality"]["subZone"] == "east")
        return {e["endpoint"]["address"]["socketAddress"]["address"]: e["healthStatus"] for e in east["lbEndpoints"]}

    gradual = translate_cluster("east", [*changed["east"], _v2({"spillover": {"mode": "Gradual"}})],
                                mcs=_mcs(clusters, changed))
    assert east_health(gradual) == {"198.18.1.10": "HEALTHY", "198.18.1.12": "UNHEALTHY"}
    _assert_envoy_accepts(gradual)
    default = translate_cluster("east", changed["east"], mcs=_mcs(clusters, changed))
    assert east_health(default) == {"198.18.1.10": "HEALTHY"}
