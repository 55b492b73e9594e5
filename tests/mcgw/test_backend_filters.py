"""A backendRef's own filters (HTTPRouteBackendRequestHeaderModification): header modifiers go on that
backend's weighted-cluster entry, whatever the backend's kind; any other filter type on a backendRef, or a
header modifier a rule would be refused for, drops the rule with a message saying what to change."""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.protobuf import json_format

from mcgw import ir
from mcgw.objects.model import AnyObject, parse_object
from mcgw.runtime.incremental import McsInput
from mcgw.runtime.pipeline import ClusterOutput, ClusterTranslator, translate_cluster
from mcgw.semantics.mcs.exports import compute_mcs
from tests.envoy_validate import validate
from tests.mcgw.manifests import V1, public_gateway

IMPORT = {"group": "multicluster.x-k8s.io", "kind": "ServiceImport"}


def _set(name: str, value: str) -> dict[str, Any]:
    return {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": name, "value": value}]}}


def _objects(rules: list[dict[str, Any]], *, exported: bool = False) -> list[AnyObject]:
    documents = public_gateway()
    for i, name in enumerate(("v1", "v2")):
        documents += [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "infra",
                                                                 "creationTimestamp": "2026-01-01T00:00:00Z"},
             "spec": {"ports": [{"name": "http", "port": 8080}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": f"{name}-1", "namespace": "infra",
                          "labels": {"kubernetes.io/service-name": name}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 3000}],
             "endpoints": [{"addresses": [f"198.18.1.{10 + i}"], "conditions": {"ready": True}}]},
        ]
        if exported:
            documents.append({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
                              "metadata": {"name": name, "namespace": "infra",
                                           "creationTimestamp": "2026-01-01T00:00:00Z"}})
    documents.append({"apiVersion": V1, "kind": "HTTPRoute",
                      "metadata": {"name": "split", "namespace": "infra", "generation": 2},
                      "spec": {"parentRefs": [{"name": "public"}], "rules": rules}})
    return [parse_object(document, "test") for document in documents]


def _mcs(objects: list[AnyObject]) -> McsInput:
    return McsInput(compute_mcs({"east": objects}, {}, time.time()).view.services, {})


def _translate(objects: list[AnyObject], exported: bool = False) -> ClusterOutput:
    output = translate_cluster("east", objects, mcs=_mcs(objects) if exported else None)
    for gateway in output.gateways:
        ir.validate(gateway)
    return output


def _table(output: ClusterOutput) -> dict[str, Any]:
    found: dict[str, Any] = next(json_format.MessageToDict(m) for messages in output.resources.values()
                                 for m in messages if m.DESCRIPTOR.name == "RouteConfiguration")
    return found


def _routes(output: ClusterOutput) -> list[dict[str, Any]]:
    return [route for vhost in _table(output)["virtualHosts"] for route in vhost["routes"]]


def _refs(exported: bool, *filters: list[dict[str, Any]], weight: int = 10) -> list[dict[str, Any]]:
    kind = IMPORT if exported else {}
    return [{**kind, "name": f"v{i + 1}", "port": 8080, "weight": weight, "filters": f} for i, f in enumerate(filters)]


def _conditions(output: ClusterOutput) -> dict[str, dict[str, Any]]:
    parent = output.statuses()["HTTPRoute"]["infra/split"]["parents"][0]
    return {c["type"]: c for c in parent["conditions"]}


@pytest.mark.parametrize("exported", [False, True], ids=["Service", "ServiceImport"])
def test_each_weighted_backend_gets_its_own_request_headers_and_envoy_accepts_them(exported: bool) -> None:
    objects = _objects([{"backendRefs": _refs(exported, [_set("Backend", "v1")], [_set("Backend", "v2")])}],
                       exported=exported)
    output = _translate(objects, exported)
    (route,) = _routes(output)
    clusters = route["route"]["weightedClusters"]["clusters"]
    prefix = "serviceimport" if exported else "service"
    assert [(c["name"], c["weight"], c["requestHeadersToAdd"]) for c in clusters] == [
        (f"{prefix}/infra/v{i}/8080", 10,
         [{"header": {"key": "Backend", "value": f"v{i}"}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}])
        for i in (1, 2)]
    assert "requestHeadersToAdd" not in route
    assert _conditions(output)["Accepted"]["status"] == "True"
    for messages in output.resources.values():
        checked = validate(list(messages))
        assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("exported", [False, True], ids=["Service", "ServiceImport"])
def test_a_single_backend_with_filters_is_a_weighted_cluster_of_one(exported: bool) -> None:
    request = {"type": "RequestHeaderModifier", "requestHeaderModifier": {
        "set": [{"name": "X-Set", "value": "s"}], "add": [{"name": "X-Add", "value": "a"}], "remove": ["X-Gone"]}}
    response = {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
        "add": [{"name": "X-Served-By", "value": "v1"}], "remove": ["Server"]}}
    output = _translate(_objects([{"backendRefs": _refs(exported, [request, response], weight=1)}],
                                 exported=exported), exported)
    (route,) = _routes(output)
    assert "cluster" not in route["route"]
    (entry,) = route["route"]["weightedClusters"]["clusters"]
    assert entry["requestHeadersToAdd"] == [
        {"header": {"key": "X-Set", "value": "s"}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "X-Add", "value": "a"}}]  # APPEND_IF_EXISTS_OR_ADD, the default
    assert entry["requestHeadersToRemove"] == ["X-Gone"]
    assert entry["responseHeadersToAdd"] == [{"header": {"key": "X-Served-By", "value": "v1"}}]
    assert entry["responseHeadersToRemove"] == ["Server"]


def test_the_backends_header_wins_over_the_rules_and_backends_without_filters_keep_none() -> None:
    rule = {"filters": [_set("X-Who", "rule")],
            "backendRefs": [*_refs(False, [_set("X-Who", "backend")]), {"name": "v2", "port": 8080, "weight": 10},
                            {"name": "missing", "port": 8080, "weight": 0, "filters": [_set("X-Who", "none")]}]}
    output = _translate(_objects([rule]))
    table = _table(output)
    assert table["mostSpecificHeaderMutationsWins"] is True
    (route,) = _routes(output)
    assert route["requestHeadersToAdd"][0]["header"] == {"key": "X-Who", "value": "rule"}
    first, second = route["route"]["weightedClusters"]["clusters"]  # the zero weight takes no traffic
    assert first["requestHeadersToAdd"][0]["header"] == {"key": "X-Who", "value": "backend"}
    assert "requestHeadersToAdd" not in second


def test_an_unresolved_backend_with_filters_still_answers_500_for_its_share() -> None:
    rule = {"backendRefs": [*_refs(False, [_set("Backend", "v1")]),
                            {"name": "missing", "port": 8080, "weight": 10, "filters": [_set("Backend", "none")]}]}
    output = _translate(_objects([rule]))
    (route,) = _routes(output)
    assert route["route"]["clusterNotFoundResponseCode"] == "INTERNAL_SERVER_ERROR"
    assert [c["name"] for c in route["route"]["weightedClusters"]["clusters"]] == [
        "service/infra/v1/8080", "infra/split/rule/0/invalid-backend/1"]
    for messages in output.resources.values():
        checked = validate(list(messages))
        assert checked.returncode == 0, checked.stdout + checked.stderr


_MIRROR = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "v2", "port": 8080}}}


@pytest.mark.parametrize(("filters", "expected"), [
    ([_MIRROR], "backendRef v1: filter type RequestMirror is not supported on a backendRef; use "
                "RequestHeaderModifier or ResponseHeaderModifier; or move it to the rule's filters"),
    ([{"type": "URLRewrite", "urlRewrite": {"hostname": "a.example.com"}}],
     "backendRef v1: filter type URLRewrite is not supported on a backendRef"),
    ([{"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}}],
     "backendRef v1: filter type RequestRedirect is not supported on a backendRef"),
    ([{"type": "ExtensionRef", "extensionRef": {"group": "x.io", "kind": "Thing", "name": "t"}}],
     "backendRef v1: filter type ExtensionRef is not supported on a backendRef; use RequestHeaderModifier or "
     "ResponseHeaderModifier"),
    ([_set("Backend", "a"), _set("Backend", "b")], "backendRef v1 has more than one RequestHeaderModifier filter"),
    ([_set("Backend", "")], "backendRef v1: value of header 'Backend' is empty"),
    ([_set("Host", "elsewhere")], "backendRef v1: "),
    ([_set("Backend", "a\r\nX: b")], "backendRef v1: "),
    ([{"type": "RequestHeaderModifier"}], "backendRef v1: filter of type RequestHeaderModifier has no "
                                          "requestHeaderModifier; set requestHeaderModifier"),
    ([{"type": "ResponseHeaderModifier", "requestHeaderModifier": {"remove": ["a"]}}],
     "backendRef v1: filter of type ResponseHeaderModifier also sets requestHeaderModifier"),
])
def test_a_backend_filter_mcgw_cannot_apply_drops_the_rule_and_says_why(filters: list[dict[str, Any]],
                                                                       expected: str) -> None:
    rules = [{"matches": [{"path": {"value": "/bad"}}], "backendRefs": _refs(False, filters)},
             {"matches": [{"path": {"value": "/good"}}], "backendRefs": _refs(False, [])}]
    output = _translate(_objects(rules))
    conditions = _conditions(output)
    partial = conditions["PartiallyInvalid"]
    assert (partial["status"], partial["reason"]) == ("True", "UnsupportedValue")
    assert partial["message"].startswith(f"Dropped Rule 0: {expected}"), partial["message"]
    assert [r["match"]["pathSeparatedPrefix"] for r in _routes(output)] == ["/good"]
    only_bad = _translate(_objects(rules[:1]))
    accepted = _conditions(only_bad)["Accepted"]
    assert (accepted["status"], accepted["reason"]) == ("False", "UnsupportedValue")


def test_backend_filters_survive_an_endpoint_change_in_incremental_translation() -> None:
    objects = _objects([{"backendRefs": _refs(True, [_set("Backend", "v1")], [])}], exported=True)
    translator = ClusterTranslator("east")
    first = translator.translate(tuple(objects), mcs=_mcs(objects))
    fewer = [o for o in objects if not (o.kind == "EndpointSlice" and o.metadata.name == "v2-1")]
    for step in (fewer, objects):
        incremental = translator.translate(tuple(step), mcs=_mcs(step))
        full = translate_cluster("east", tuple(step), mcs=_mcs(step))
        assert incremental.gateways == full.gateways
        assert _table(incremental) == _table(full)
    (route,) = _routes(first)
    assert route["route"]["weightedClusters"]["clusters"][0]["requestHeadersToAdd"][0]["header"]["value"] == "v1"
