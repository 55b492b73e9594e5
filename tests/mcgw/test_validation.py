"""Values outside the Gateway API CRDs' limits or Envoy's protos: each drops only what it must, with the
spec's condition, and everything else still translates (and real Envoy accepts it)."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcgw import ir
from mcgw.objects.model import HTTPRoute, Service, parse_object
from mcgw.runtime.pipeline import ClusterOutput, translate_cluster
from mcgw.semantics.endpoints import Endpoint, slice_endpoints
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.evaluate import ClusterObjects, evaluate, evaluate_gateways, evaluate_route
from mcgw.semantics.mcs.view import ImportedService, ImportPort, SourceEndpoints
from tests.envoy_validate import validate

GATEWAY = ("apps", "gw")


def _class() -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
            "spec": {"controllerName": "mcgw.io/gateway-controller"}}


def _gateway(listeners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "apps"},
            "spec": {"gatewayClassName": "mcgw",
                     "listeners": listeners or [{"name": "http", "port": 8080, "protocol": "HTTP"}]}}


def _service(name: str, ports: tuple[int, ...] = (80,)) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "apps"},
            "spec": {"ports": [{"name": f"p{port}", "port": port} for port in ports]}}


def _slice(service: str, port: int, addresses: list[str], name: str | None = None) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name or f"{service}-1", "namespace": "apps",
                         "labels": {"kubernetes.io/service-name": service}},
            "ports": [{"name": "p80", "port": port}], "endpoints": [{"addresses": addresses}]}


def _route(name: str, rules: list[dict[str, Any]], hostnames: list[str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "apps", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": hostnames or [], "rules": rules}}


def _rule(path: str = "/", **extra: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                            "backendRefs": [{"name": "app", "port": 80}]}
    rule.update(extra)
    return rule


CANARY = _route("canary", [_rule("/canary")])


def _translate(*documents: dict[str, Any]) -> ClusterOutput:
    base = [_class(), _service("app"), _service("other"), _slice("app", 8080, ["198.18.1.30"]),
            _slice("other", 8080, ["198.18.1.31"])]
    docs = [*base, *documents]
    if not any(doc["kind"] == "Gateway" for doc in docs):
        docs.append(_gateway())
    objects = [parse_object(doc, f"test {i}") for i, doc in enumerate(docs)]
    output = translate_cluster("east", objects, {GATEWAY: ["198.18.0.10"]})
    for gateway in output.gateways:
        ir.validate(gateway)
    return output


def _route_conditions(output: ClusterOutput, name: str) -> dict[str, tuple[str, str, str]]:
    result = output.evaluation.routes[("HTTPRoute", "apps", name)]
    return {cond.type: (cond.status, cond.reason, cond.message) for cond in result.parent_conditions[0]}


def _listener_conditions(output: ClusterOutput, listener: str) -> dict[str, tuple[str, str, str]]:
    result = output.evaluation.gateways[GATEWAY]
    found = next(item for item in result.listeners if item.name == listener)
    return {cond.type: (cond.status, cond.reason, cond.message) for cond in found.conditions}


def _of_type(output: ClusterOutput, kind: str) -> list[Any]:
    return [m for m in output.resources.get(GATEWAY, ()) if m.DESCRIPTOR.name == kind]


def _route_names(output: ClusterOutput) -> set[str]:
    return {route.name for config in _of_type(output, "RouteConfiguration")
            for host in config.virtual_hosts for route in host.routes}


def _accepted_by_envoy(output: ClusterOutput) -> None:
    messages: list[Message] = list(output.resources.get(GATEWAY, ()))
    checked = validate(messages)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _partially_invalid(output: ClusterOutput, name: str, wanted: str) -> None:
    """Rule 1 is dropped (its reason names ``wanted``), rule 0 and the canary still translate."""
    conditions = _route_conditions(output, name)
    assert conditions[c.ACCEPTED][:2] == ("True", c.REASON_ACCEPTED)
    status, reason, message = conditions[c.PARTIALLY_INVALID]
    assert (status, reason) == ("True", c.REASON_UNSUPPORTED_VALUE)
    assert message.startswith("Dropped Rule 1: "), message
    assert wanted in message, message
    names = _route_names(output)
    assert f"apps/{name}/rule/0/match/0" in names
    assert f"apps/{name}/rule/1/match/0" not in names
    assert "apps/canary/rule/0/match/0" in names


# -- weights -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("weight", [2**40, 2**32 + 1, 2**70, -1, 1_000_001])
def test_weight_outside_the_crd_range_drops_the_rule(weight: int) -> None:
    bad = {"matches": [{"path": {"type": "PathPrefix", "value": "/split"}}],
           "backendRefs": [{"name": "app", "port": 80, "weight": weight}, {"name": "other", "port": 80, "weight": 1}]}
    output = _translate(_route("r", [_rule("/ok"), bad]), CANARY)
    _partially_invalid(output, "r", f"backendRef weight {weight} is outside 0..1000000")


def test_weights_at_the_crd_limits_keep_the_rule_and_reach_envoy_unchanged() -> None:
    split = {"matches": [{"path": {"type": "PathPrefix", "value": "/split"}}],
             "backendRefs": [{"name": "app", "port": 80, "weight": 1_000_000},
                             {"name": "other", "port": 80, "weight": 0}, {"name": "app", "port": 80, "weight": 7}]}
    output = _translate(_route("r", [split]))
    assert c.PARTIALLY_INVALID not in _route_conditions(output, "r")
    config = _of_type(output, "RouteConfiguration")[0]
    route = next(r for host in config.virtual_hosts for r in host.routes if r.name == "apps/r/rule/0/match/0")
    assert [w.weight.value for w in route.route.weighted_clusters.clusters] == [1_000_000, 7]


def test_every_rule_with_a_bad_weight_means_the_route_is_not_accepted() -> None:
    bad = _rule("/x", backendRefs=[{"name": "app", "port": 80, "weight": -5}])
    output = _translate(_route("r", [bad]), CANARY)
    status, reason, message = _route_conditions(output, "r")[c.ACCEPTED]
    assert (status, reason) == ("False", c.REASON_UNSUPPORTED_VALUE)
    assert "weight -5" in message
    assert "apps/canary/rule/0/match/0" in _route_names(output)


def test_more_than_16_backend_refs_drop_the_rule() -> None:
    many = _rule("/many", backendRefs=[{"name": "app", "port": 80}] * 17)
    _partially_invalid(_translate(_route("r", [_rule("/ok"), many]), CANARY), "r", "17 backendRefs")


# -- header values, hostnames and paths ----------------------------------------------------------------

@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "line\nbreak", "nul\0byte", "cr\r"])
@pytest.mark.parametrize("filter_type", ["RequestHeaderModifier", "ResponseHeaderModifier"])
@pytest.mark.parametrize("operation", ["set", "add"])
def test_cr_lf_or_nul_in_a_header_value_drops_the_rule(value: str, filter_type: str, operation: str) -> None:
    field = filter_type[0].lower() + filter_type[1:]
    bad = _rule("/h", filters=[{"type": filter_type, field: {operation: [{"name": "X-Test", "value": value}]}}])
    output = _translate(_route("r", [_rule("/ok"), bad]), CANARY)
    _partially_invalid(output, "r", "value of header 'X-Test' contains CR, LF or NUL")
    _accepted_by_envoy(output)


@pytest.mark.parametrize("name", ["Host", "host"])
def test_a_header_modifier_on_host_drops_the_rule(name: str) -> None:
    bad = _rule("/h", filters=[{"type": "RequestHeaderModifier",
                                "requestHeaderModifier": {"set": [{"name": name, "value": "x"}]}}])
    _partially_invalid(_translate(_route("r", [_rule("/ok"), bad]), CANARY), "r", "cannot be modified")


def test_cr_lf_in_a_header_match_value_drops_the_rule() -> None:
    bad = {"matches": [{"path": {"type": "PathPrefix", "value": "/m"},
                        "headers": [{"name": "X-M", "value": "a\r\nb"}]}], "backendRefs": [{"name": "app", "port": 80}]}
    _partially_invalid(_translate(_route("r", [_rule("/ok"), bad]), CANARY), "r", "contains CR, LF or NUL")


@pytest.mark.parametrize(("path", "wanted"), [
    ("/search?q=1", "holds characters a path cannot"),
    ("/page#top", "holds characters a path cannot"),
    ("no-slash", "does not start with '/'"),
    ("/a\r\nb", "holds characters a path cannot"),
    ("/a//b", "'//'"),
    ("/" + "a" * 1024, "1025 characters"),
])
@pytest.mark.parametrize("path_type", ["PathPrefix", "Exact"])
def test_bad_path_drops_the_rule(path: str, wanted: str, path_type: str) -> None:
    bad = {"matches": [{"path": {"type": path_type, "value": path}}], "backendRefs": [{"name": "app", "port": 80}]}
    output = _translate(_route("r", [_rule("/ok"), bad]), CANARY)
    _partially_invalid(output, "r", wanted)
    _accepted_by_envoy(output)


def test_more_than_16_header_matches_drop_the_rule() -> None:
    headers = [{"name": f"X-{i}", "value": "v"} for i in range(17)]
    bad = {"matches": [{"path": {"type": "PathPrefix", "value": "/m"}, "headers": headers}],
           "backendRefs": [{"name": "app", "port": 80}]}
    _partially_invalid(_translate(_route("r", [_rule("/ok"), bad]), CANARY), "r", "at most 16 header matches")


def test_bad_header_match_name_drops_the_rule() -> None:
    bad = {"matches": [{"path": {"type": "PathPrefix", "value": "/m"}, "headers": [{"name": "X Bad", "value": "v"}]}],
           "backendRefs": [{"name": "app", "port": 80}]}
    _partially_invalid(_translate(_route("r", [_rule("/ok"), bad]), CANARY), "r", "not a valid HTTP header name")


@pytest.mark.parametrize(("redirect", "wanted"), [
    ({"port": 70000}, "redirect port 70000 is outside 1..65535"),
    ({"hostname": "evil\r\n.example.com"}, "is not a valid DNS name"),
    ({"statusCode": 200}, "redirect statusCode 200"),
    ({"path": {"type": "ReplaceFullPath", "replaceFullPath": "/a\nb"}}, "contains CR, LF or NUL"),
])
def test_bad_redirect_drops_the_rule(redirect: dict[str, Any], wanted: str) -> None:
    bad = {"matches": [{"path": {"type": "PathPrefix", "value": "/r"}}],
           "filters": [{"type": "RequestRedirect", "requestRedirect": redirect}]}
    output = _translate(_route("r", [_rule("/ok"), bad]), CANARY)
    _partially_invalid(output, "r", wanted)
    _accepted_by_envoy(output)


@pytest.mark.parametrize(("hostname", "wanted"), [
    ("evil\r\n.example.com", "is not a valid DNS name"),
    ("a." * 150 + "com", "303 characters"),
    ("UPPER.example.com", "is not a valid DNS name"),
    ("198.18.0.1", "is an IP address"),
])
def test_bad_route_hostname_means_the_route_is_not_accepted(hostname: str, wanted: str) -> None:
    output = _translate(_route("r", [_rule("/ok")], hostnames=["good.example.com", hostname]), CANARY)
    status, reason, message = _route_conditions(output, "r")[c.ACCEPTED]
    assert (status, reason) == ("False", c.REASON_UNSUPPORTED_VALUE)
    assert wanted in message
    domains = {d for config in _of_type(output, "RouteConfiguration") for host in config.virtual_hosts
               for d in host.domains}
    assert "good.example.com" not in domains  # the route is not served with fewer hostnames than it asked
    assert "apps/canary/rule/0/match/0" in _route_names(output)
    _accepted_by_envoy(output)


def test_more_than_16_route_hostnames_mean_the_route_is_not_accepted() -> None:
    output = _translate(_route("r", [_rule("/ok")], hostnames=[f"h{i}.example.com" for i in range(17)]), CANARY)
    status, reason, message = _route_conditions(output, "r")[c.ACCEPTED]
    assert (status, reason, "17 hostnames" in message) == ("False", c.REASON_UNSUPPORTED_VALUE, True)


# -- listeners ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("port", [70000, 0, -1])
def test_listener_port_outside_1_to_65535_is_not_accepted(port: int) -> None:
    output = _translate(_gateway([{"name": "http", "port": 8080, "protocol": "HTTP"},
                                  {"name": "bad", "port": port, "protocol": "HTTP"}]), CANARY)
    conditions = _listener_conditions(output, "bad")
    assert conditions[c.ACCEPTED][:2] == ("False", c.REASON_PORT_UNAVAILABLE)
    assert f"port {port} is outside 1..65535" in conditions[c.ACCEPTED][2]
    assert conditions[c.PROGRAMMED][:2] == ("False", c.REASON_INVALID)
    assert _listener_conditions(output, "http")[c.PROGRAMMED][0] == "True"
    gateway = output.evaluation.gateways[GATEWAY]
    assert (gateway.conditions[0].status, gateway.conditions[0].reason) == ("True", c.REASON_LISTENERS_NOT_VALID)
    ports = [listener.address.socket_address.port_value for listener in _of_type(output, "Listener")]
    assert ports == [8080]
    _accepted_by_envoy(output)


@pytest.mark.parametrize(("listener", "wanted"), [
    ({"name": "bad", "port": 8081, "protocol": "HTTP", "hostname": "x" * 300}, "300 characters"),
    ({"name": "bad", "port": 8081, "protocol": "HTTP", "hostname": "a\r\nb.example.com"}, "not a valid DNS name"),
    ({"name": "Bad_Name", "port": 8081, "protocol": "HTTP"}, "listener name 'Bad_Name' is not valid"),
])
def test_listener_with_a_bad_hostname_or_name_is_not_accepted(listener: dict[str, Any], wanted: str) -> None:
    output = _translate(_gateway([{"name": "http", "port": 8080, "protocol": "HTTP"}, listener]), CANARY)
    conditions = _listener_conditions(output, listener["name"])
    assert conditions[c.ACCEPTED][:2] == ("False", c.REASON_UNSUPPORTED_VALUE)
    assert wanted in conditions[c.ACCEPTED][2]
    assert conditions[c.PROGRAMMED][0] == "False"
    assert "apps/canary/rule/0/match/0" in _route_names(output)
    _accepted_by_envoy(output)


def test_an_invalid_listener_does_not_make_a_valid_one_conflicted() -> None:
    output = _translate(_gateway([{"name": "bad", "port": 8080, "protocol": "HTTPS", "hostname": "A_B"},
                                  {"name": "http", "port": 8080, "protocol": "HTTP"}]), CANARY)
    assert _listener_conditions(output, "http")[c.CONFLICTED][0] == "False"
    assert _listener_conditions(output, "http")[c.PROGRAMMED][0] == "True"


def test_more_than_64_listeners_mean_the_gateway_is_not_accepted() -> None:
    listeners = [{"name": f"l{i}", "port": 8000 + i, "protocol": "HTTP"} for i in range(65)]
    output = _translate(_gateway(listeners), CANARY)
    gateway = output.evaluation.gateways[GATEWAY]
    accepted, programmed, _ = gateway.conditions
    assert (accepted.type, accepted.status, accepted.reason) == (c.ACCEPTED, "False", c.REASON_INVALID)
    assert "65 listeners" in accepted.message
    assert "at most 64" in accepted.message
    assert (programmed.type, programmed.status) == (c.PROGRAMMED, "False")
    assert gateway.listeners == []
    assert GATEWAY not in output.resources or not _of_type(output, "Listener")


def test_64_listeners_are_accepted() -> None:
    listeners = [{"name": f"l{i}", "port": 8000 + i, "protocol": "HTTP"} for i in range(64)]
    output = _translate(_gateway(listeners), CANARY)
    assert output.evaluation.gateways[GATEWAY].conditions[0].status == "True"
    assert len(_of_type(output, "Listener")) == 64


# -- backends and endpoints ----------------------------------------------------------------------------

def _evaluate_with_services(route_doc: dict[str, Any], *services: dict[str, Any],
                            imports: Mapping[tuple[str, str], ImportedService] | None = None) -> dict[str, Any]:
    objects = [parse_object(doc, "test") for doc in (_class(), _gateway())]
    layer = evaluate_gateways([objects[0]], [objects[1]], (), (), ())  # type: ignore[list-item]
    route = parse_object(route_doc, "test")
    assert isinstance(route, HTTPRoute)
    parsed = [parse_object(doc, "test") for doc in services]
    by_key = {(s.metadata.namespace, s.metadata.name): s for s in parsed if isinstance(s, Service)}
    result = evaluate_route(route, layer, by_key, imports or frozenset())
    assert result is not None
    return {cond.type: cond for cond in result.parent_conditions[0]}


def test_backend_ref_to_a_port_the_service_lacks_is_not_resolved() -> None:
    route = _route("r", [_rule("/a", backendRefs=[{"name": "app", "port": 8443}])])
    resolved = _evaluate_with_services(route, _service("app", (80, 443)))[c.RESOLVED_REFS]
    assert (resolved.status, resolved.reason) == ("False", c.REASON_BACKEND_NOT_FOUND)
    assert resolved.message == "Service apps/app has no port 8443; use one of its ports (80, 443)"


def test_backend_ref_to_a_port_the_service_has_is_resolved() -> None:
    route = _route("r", [_rule("/a", backendRefs=[{"name": "app", "port": 443}])])
    resolved = _evaluate_with_services(route, _service("app", (80, 443)))[c.RESOLVED_REFS]
    assert (resolved.status, resolved.reason) == ("True", c.REASON_RESOLVED_REFS)


def test_evaluate_checks_backend_ports_when_given_the_services() -> None:
    documents = [_class(), _gateway(), _service("app", (80,)),
                 _route("r", [_rule("/ok"), _rule("/gone", backendRefs=[{"name": "app", "port": 8443}])])]
    objects = [parse_object(doc, "test") for doc in documents]
    services = {(o.metadata.namespace, o.metadata.name): o for o in objects if isinstance(o, Service)}
    evaluation = evaluate(ClusterObjects.of(objects, services), {GATEWAY: ["198.18.0.10"]})
    result = evaluation.routes[("HTTPRoute", "apps", "r")]
    resolved = next(cond for cond in result.parent_conditions[0] if cond.type == c.RESOLVED_REFS)
    assert (resolved.status, resolved.reason) == ("False", c.REASON_BACKEND_NOT_FOUND)
    assert resolved.message == "Service apps/app has no port 8443; use one of its ports (80)"
    assert [backend.problem for backend in result.backends[0]] == [None]  # rule 0's backend still resolves
    assert result.kept_rules == (0, 1)  # rule 1 stays, its share answers 500 as for other unresolved refs


def _import(clusters: tuple[str, ...], ports: tuple[int, ...] = (80,)) -> ImportedService:
    return ImportedService("apps", "ghost", "ClusterSetIP", tuple(ImportPort("http", "TCP", p) for p in ports),
                           clusters, tuple((p, tuple(SourceEndpoints(cl, ()) for cl in clusters)) for p in ports))


_IMPORT_REF = {"group": "multicluster.x-k8s.io", "kind": "ServiceImport", "name": "ghost", "port": 80}


def test_service_import_that_no_cluster_exports_is_not_resolved() -> None:
    route = _route("r", [_rule("/a", backendRefs=[_IMPORT_REF])])
    resolved = _evaluate_with_services(route, imports={("apps", "ghost"): _import(())})[c.RESOLVED_REFS]
    assert (resolved.status, resolved.reason) == ("False", c.REASON_BACKEND_NOT_FOUND)
    assert resolved.message == ("ServiceImport apps/ghost has no exporting cluster; export Service apps/ghost with "
                                "a ServiceExport")


def test_service_import_without_the_port_is_not_resolved() -> None:
    route = _route("r", [_rule("/a", backendRefs=[{**_IMPORT_REF, "port": 81}])])
    resolved = _evaluate_with_services(route, imports={("apps", "ghost"): _import(("west",))})[c.RESOLVED_REFS]
    assert (resolved.status, resolved.reason) == ("False", c.REASON_BACKEND_NOT_FOUND)
    assert resolved.message == "ServiceImport apps/ghost has no port 81; use one of its ports (80)"


def test_exported_service_import_is_resolved() -> None:
    route = _route("r", [_rule("/a", backendRefs=[_IMPORT_REF])])
    resolved = _evaluate_with_services(route, imports={("apps", "ghost"): _import(("west",))})[c.RESOLVED_REFS]
    assert (resolved.status, resolved.reason) == ("True", c.REASON_RESOLVED_REFS)


def test_service_import_with_no_exports_translates_without_a_crash() -> None:
    service_import = {"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
                      "metadata": {"name": "ghost", "namespace": "apps"}, "spec": {"ports": [{"port": 80}]}}
    output = _translate(service_import, _route("r", [_rule("/ghost", backendRefs=[_IMPORT_REF])]), CANARY)
    assert {"apps/r/rule/0/match/0", "apps/canary/rule/0/match/0"} <= _route_names(output)
    _accepted_by_envoy(output)


def test_backend_ref_port_outside_1_to_65535_drops_the_rule() -> None:
    bad = _rule("/p", backendRefs=[{"name": "app", "port": 70000}])
    _partially_invalid(_translate(_route("r", [_rule("/ok"), bad]), CANARY), "r",
                       "backendRef app port 70000 is outside 1..65535")


def test_endpoint_slice_port_outside_1_to_65535_is_skipped_and_other_slices_still_go_out() -> None:
    output = _translate(_slice("app", 70000, ["198.18.1.40"], name="app-2"), CANARY)
    assignments = _of_type(output, "ClusterLoadAssignment")
    endpoints = {(lb.endpoint.address.socket_address.address, lb.endpoint.address.socket_address.port_value)
                 for cla in assignments if cla.cluster_name == "service/apps/app/80"
                 for group in cla.endpoints for lb in group.lb_endpoints}
    assert endpoints == {("198.18.1.30", 8080)}
    _accepted_by_envoy(output)


def test_invalid_endpoint_address_is_skipped_and_the_others_still_go_out() -> None:
    slices = [parse_object(_slice("app", 8080, ["198.18.1.30", "not-an-ip", "300.1.1.1", "fd00::1"]), "test")]
    assert slice_endpoints(slices, "p80") == (Endpoint("198.18.1.30", 8080, "HEALTHY"),  # type: ignore[arg-type]
                                              Endpoint("fd00::1", 8080, "HEALTHY"))


def test_translation_of_good_input_is_unchanged_by_the_checks() -> None:
    documents = [_route("r", [_rule("/ok")], hostnames=["shop.example.com", "*.example.org"]), CANARY]
    output = _translate(*copy.deepcopy(documents))
    assert _route_names(output) == {"apps/r/rule/0/match/0", "apps/canary/rule/0/match/0"}
    assert c.PARTIALLY_INVALID not in _route_conditions(output, "r")
    _accepted_by_envoy(output)


# -- generated bad values, checked by real Envoy ---------------------------------------------------------

_NASTY = "\r\n\0?# %/.A"
weights = st.one_of(st.integers(0, 1_000_000), st.integers(-(2**70), 2**70), st.sampled_from([2**32, 2**32 + 1, -1]))
ports = st.one_of(st.integers(1, 65535), st.sampled_from([0, -1, 65536, 70000, 2**31, 2**40]))
header_values = st.text(alphabet=st.sampled_from("abc=;" + _NASTY), max_size=12)
paths = st.text(alphabet=st.sampled_from("ab/" + _NASTY), max_size=12).map(lambda s: s if s[:1] == "x" else "/" + s) \
    | st.text(alphabet=st.sampled_from("ab/?#"), min_size=1, max_size=6)
hostnames = st.one_of(st.sampled_from(["shop.example.com", "*.example.org", "x" * 300, "a." * 130 + "com",
                                       "UPPER.example.com", "198.18.0.1", "*", ""]),
                      st.text(alphabet=st.sampled_from("ab.-*" + _NASTY), min_size=1, max_size=12))
addresses = st.sampled_from(["198.18.1.50", "fd00::50", "not-an-ip", "300.1.1.1", "", "198.18.1.50\n"])


@st.composite
def bad_inputs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A Gateway, a route and an EndpointSlice with generated values, next to a canary route."""
    listener: dict[str, Any] = {"name": "gen", "port": draw(ports), "protocol": "HTTP"}
    if draw(st.booleans()):
        listener["hostname"] = draw(hostnames)
    gateway = _gateway([{"name": "http", "port": 8080, "protocol": "HTTP"}, listener])
    match: dict[str, Any] = {"path": {"type": draw(st.sampled_from(["PathPrefix", "Exact"])), "value": draw(paths)}}
    if draw(st.booleans()):
        match["headers"] = [{"name": "X-Match", "value": draw(header_values)}]
    rule: dict[str, Any] = {
        "matches": [match],
        "backendRefs": [{"name": draw(st.sampled_from(["app", "other"])), "port": draw(st.sampled_from([80, 81])),
                         "weight": draw(weights)} for _ in range(draw(st.integers(1, 3)))],
        "filters": [{"type": "RequestHeaderModifier",
                     "requestHeaderModifier": {"set": [{"name": "X-Set", "value": draw(header_values)}],
                                               "add": [{"name": "X-Add", "value": draw(header_values)}]}},
                    {"type": "ResponseHeaderModifier",
                     "responseHeaderModifier": {"set": [{"name": "X-Out", "value": draw(header_values)}]}}],
    }
    route_hostnames = draw(st.lists(hostnames, max_size=2))
    route = _route("gen", [_rule("/fine"), rule], hostnames=route_hostnames)
    endpoint_slice = _slice("other", draw(ports), [draw(addresses), "198.18.1.51"], name="other-2")
    return [gateway, route, endpoint_slice, CANARY]


@settings(max_examples=int(os.environ.get("MCGW_PROPERTY_EXAMPLES", "25")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(documents=bad_inputs())
def test_envoy_accepts_whatever_bad_values_translate_to(documents: list[dict[str, Any]]) -> None:
    output = _translate(*documents)
    assert "apps/canary/rule/0/match/0" in _route_names(output)
    for config in _of_type(output, "RouteConfiguration"):
        for host in config.virtual_hosts:
            for route in host.routes:
                shares = [w.weight.value for w in route.route.weighted_clusters.clusters]
                assert all(0 < share <= 1_000_000 for share in shares), shares
    input_weights = {ref["weight"] for ref in documents[1]["spec"]["rules"][1]["backendRefs"]}
    if not all(0 <= w <= 1_000_000 for w in input_weights):
        assert "apps/gen/rule/1/match/0" not in _route_names(output)
    _accepted_by_envoy(output)
