"""Listener and Gateway status as Gateway API v1.6 defines it: conflicts name no winner, overlapping TLS
hostnames are a warning, invalid namespace selectors admit nothing, and addresses mcgw cannot serve or
use are reported on the condition the spec names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from mcgw.objects.model import LabelSelector, parse_object
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.evaluate import ClusterObjects, Evaluation, evaluate
from mcgw.semantics.gateway.hostnames import listener_hostnames_overlap
from mcgw.semantics.gateway.listeners import GatewayResult, selector_problem

_SELECTOR = TypeAdapter(LabelSelector)
CLASS = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": "mcgw", "generation": 1}, "spec": {"controllerName": "mcgw.io/gateway-controller"}}
# A usable certificate and key: the Secret of the overlapping-TLS golden case.
CERT = next(doc for doc in yaml.safe_load_all(
    (Path(__file__).parent / "testdata/gateways/overlapping-tls.in.yaml").read_text()) if doc["kind"] == "Secret")


def _gateway(listeners: list[dict[str, Any]], addresses: list[dict[str, str]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"gatewayClassName": "mcgw", "listeners": listeners}
    if addresses is not None:
        spec["addresses"] = addresses
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "infra", "generation": 4}, "spec": spec}


def _route(name: str, section: str | None = None, hostnames: list[str] | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": "gw"}
    if section:
        ref["sectionName"] = section
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "infra", "generation": 1,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"parentRefs": [ref], "hostnames": hostnames or [], "rules": [{}]}}


def _evaluate(*documents: dict[str, Any]) -> Evaluation:
    objects = [parse_object(doc, f"document {i}") for i, doc in enumerate((CLASS, *documents))]
    return evaluate(ClusterObjects.of(objects, set(), set()), addresses={("infra", "gw"): ["127.0.0.10"]})


def _gateway_result(*documents: dict[str, Any]) -> GatewayResult:
    result = _evaluate(*documents).gateways[("infra", "gw")]
    assert result is not None
    return result


def _listener(result: GatewayResult, name: str) -> dict[str, tuple[str, str, str]]:
    listener = next(item for item in result.listeners if item.name == name)
    return {cond.type: (cond.status, cond.reason, cond.message) for cond in listener.conditions}


def _gateway_conditions(result: GatewayResult) -> dict[str, tuple[str, str, str]]:
    return {cond.type: (cond.status, cond.reason, cond.message) for cond in result.conditions}


def test_listeners_sharing_port_and_hostname_are_all_conflicted() -> None:
    result = _gateway_result(_gateway([{"name": "a", "port": 80, "protocol": "HTTP", "hostname": "x.example.com"},
                                       {"name": "b", "port": 80, "protocol": "HTTP", "hostname": "x.example.com"},
                                       {"name": "c", "port": 80, "protocol": "HTTP", "hostname": "y.example.com"}]))
    for name in ("a", "b"):
        conditions = _listener(result, name)
        assert conditions[c.CONFLICTED][:2] == ("True", c.REASON_HOSTNAME_CONFLICT)
        assert conditions[c.ACCEPTED][:2] == ("False", c.REASON_HOSTNAME_CONFLICT)
        assert conditions[c.PROGRAMMED][0] == "False"
    assert "listener b" in _listener(result, "a")[c.CONFLICTED][2]
    assert _listener(result, "c")[c.CONFLICTED][:2] == ("False", c.REASON_NO_CONFLICTS)
    assert _listener(result, "c")[c.PROGRAMMED][0] == "True"
    accepted = _gateway_conditions(result)[c.ACCEPTED]
    assert accepted[:2] == ("True", c.REASON_LISTENERS_NOT_VALID)
    assert "conflicted, so none of them is accepted: a, b" in accepted[2]
    assert "programmed: c" in accepted[2]


def test_http_and_https_on_one_port_are_a_protocol_conflict_for_every_listener_there() -> None:
    result = _gateway_result(CERT, _gateway([
        {"name": "http", "port": 8443, "protocol": "HTTP"},
        {"name": "https", "port": 8443, "protocol": "HTTPS", "hostname": "a.example.com",
         "tls": {"certificateRefs": [{"name": "cert"}]}},
        {"name": "other", "port": 80, "protocol": "HTTP"}]))
    for name in ("http", "https"):
        conditions = _listener(result, name)
        assert conditions[c.CONFLICTED][:2] == ("True", c.REASON_PROTOCOL_CONFLICT)
        assert conditions[c.ACCEPTED][0] == "False"
        assert conditions[c.PROGRAMMED][0] == "False"
    assert "https (HTTPS)" in _listener(result, "http")[c.CONFLICTED][2]
    assert [listener.name for listener in result.listeners if listener.usable] == ["other"]


def test_when_every_listener_is_conflicted_the_gateway_is_not_accepted() -> None:
    result = _gateway_result(_gateway([{"name": "a", "port": 80, "protocol": "HTTP"},
                                       {"name": "b", "port": 80, "protocol": "HTTP"}]))
    conditions = _gateway_conditions(result)
    assert conditions[c.ACCEPTED][:2] == ("False", c.REASON_LISTENERS_NOT_VALID)
    assert conditions[c.PROGRAMMED][:2] == ("False", c.REASON_INVALID)
    assert not any(listener.usable for listener in result.listeners)


def test_a_listener_of_an_unsupported_protocol_claims_no_port() -> None:
    result = _gateway_result(_gateway([{"name": "sctp", "port": 80, "protocol": "example.com/sctp"},
                                       {"name": "http", "port": 80, "protocol": "HTTP"}]))
    assert _listener(result, "http")[c.CONFLICTED][0] == "False"
    assert _listener(result, "http")[c.PROGRAMMED][0] == "True"
    assert _listener(result, "sctp")[c.ACCEPTED][:2] == ("False", c.REASON_UNSUPPORTED_PROTOCOL)


def test_tcp_conflicts_with_http_on_one_port_and_udp_does_not() -> None:
    result = _gateway_result(_gateway([{"name": "tcp", "port": 80, "protocol": "TCP"},
                                       {"name": "http", "port": 80, "protocol": "HTTP"},
                                       {"name": "udp", "port": 80, "protocol": "UDP"}]))
    assert _listener(result, "tcp")[c.CONFLICTED][:2] == ("True", c.REASON_PROTOCOL_CONFLICT)
    assert _listener(result, "http")[c.CONFLICTED][:2] == ("True", c.REASON_PROTOCOL_CONFLICT)
    assert _listener(result, "udp")[c.CONFLICTED][:2] == ("False", c.REASON_NO_CONFLICTS)
    assert _listener(result, "udp")[c.PROGRAMMED][0] == "True"


@pytest.mark.parametrize(("first", "second", "expected"), [
    ("*.example.com", "a.example.com", True),
    ("*.example.com", "*.b.example.com", True),
    (None, "a.example.com", True),
    ("a.example.com", "a.example.org", False),
    ("*.example.com", "example.com", False),
    ("*.example.com", "*.example.org", False),
])
def test_listener_hostnames_overlap(first: str | None, second: str, expected: bool) -> None:
    assert listener_hostnames_overlap(first, second) is expected
    assert listener_hostnames_overlap(second, first) is expected


def test_overlapping_https_hostnames_warn_on_every_side_and_stay_programmed() -> None:
    tls = {"certificateRefs": [{"name": "cert"}]}
    result = _gateway_result(CERT, _gateway([
        {"name": "a", "port": 443, "protocol": "HTTPS", "hostname": "foo.example.com", "tls": tls},
        {"name": "b", "port": 443, "protocol": "HTTPS", "hostname": "foo.example.org", "tls": tls},
        {"name": "c", "port": 443, "protocol": "HTTPS", "hostname": "*.example.com", "tls": tls},
        {"name": "d", "port": 8443, "protocol": "HTTPS", "hostname": "*.example.com", "tls": tls},
        {"name": "e", "port": 80, "protocol": "HTTP", "hostname": "foo.example.com"}]))
    for name in ("a", "c"):
        conditions = _listener(result, name)
        assert conditions[c.OVERLAPPING_TLS_CONFIG][:2] == ("True", c.REASON_OVERLAPPING_HOSTNAMES)
        assert conditions[c.CONFLICTED][0] == "False"
        assert conditions[c.PROGRAMMED][:2] == ("True", c.REASON_PROGRAMMED)
    assert "listener c" in _listener(result, "a")[c.OVERLAPPING_TLS_CONFIG][2]
    for name in ("b", "d", "e"):
        assert c.OVERLAPPING_TLS_CONFIG not in _listener(result, name)  # never written False


@pytest.mark.parametrize(("selector", "wanted"), [
    ({"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["shop"]}]}, "Exists takes no values"),
    ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist", "values": ["x"]}]}, "takes no values"),
    ({"matchExpressions": [{"key": "team", "operator": "In"}]}, "In needs at least one value"),
    ({"matchExpressions": [{"key": "team", "operator": "NotIn"}]}, "NotIn needs at least one value"),
    ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["not valid!"]}]}, "label value"),
    ({"matchLabels": {"-bad": "x"}}, "label key '-bad'"),
    ({"matchLabels": {"Bad.Prefix/name": "x"}}, "prefix"),
])
def test_invalid_selectors(selector: dict[str, Any], wanted: str) -> None:
    problem = selector_problem(_SELECTOR.validate_python(selector))
    assert problem is not None
    assert wanted in problem


@pytest.mark.parametrize("selector", [
    {}, {"matchLabels": {"team": "shop", "example.com/tier": ""}},
    {"matchExpressions": [{"key": "team", "operator": "In", "values": ["shop"]},
                          {"key": "tier", "operator": "DoesNotExist"}]},
])
def test_valid_selectors(selector: dict[str, Any]) -> None:
    assert selector_problem(_SELECTOR.validate_python(selector)) is None


@pytest.mark.parametrize("namespaces", [
    {"from": "Selector"},
    {"from": "Selector", "selector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                                                            "operator": "Exists", "values": ["other"]}]}},
])
def test_a_listener_without_a_valid_selector_is_not_accepted_and_admits_no_route(namespaces: dict[str, Any]) -> None:
    evaluation = _evaluate(_gateway([{"name": "sel", "port": 80, "protocol": "HTTP",
                                      "allowedRoutes": {"namespaces": namespaces}}]), _route("r"))
    result = evaluation.gateways[("infra", "gw")]
    assert result is not None
    conditions = _listener(result, "sel")
    assert conditions[c.ACCEPTED][:2] == ("False", c.REASON_UNSUPPORTED_VALUE)
    assert "allowedRoutes.namespaces" in conditions[c.ACCEPTED][2]
    assert conditions[c.PROGRAMMED][0] == "False"
    route = evaluation.routes[("HTTPRoute", "infra", "r")]
    assert route.parents[0].accepted[:3] == (c.ACCEPTED, "False", c.REASON_NOT_ALLOWED_BY_LISTENERS)
    assert result.listeners[0].attached_routes == 0


@pytest.mark.parametrize("address", [{"type": "NamedAddress", "value": "pool"},
                                     {"type": "Hostname", "value": "gw.example.com"}])
def test_an_address_type_mcgw_cannot_serve_is_unsupported_address(address: dict[str, str]) -> None:
    result = _gateway_result(_gateway([{"name": "http", "port": 80, "protocol": "HTTP"}],
                                      [address, {"type": "IPAddress", "value": "127.0.0.10"}]))
    conditions = _gateway_conditions(result)
    assert conditions[c.ACCEPTED][:2] == ("False", c.REASON_UNSUPPORTED_ADDRESS)
    assert address["type"] in conditions[c.ACCEPTED][2]
    assert conditions[c.PROGRAMMED][0] == "False"
    assert "programmed at" not in conditions[c.PROGRAMMED][2]
    assert result.addresses == []
    assert not any(listener.usable for listener in result.listeners)


def test_an_ip_address_that_is_not_an_ip_is_address_not_usable() -> None:
    result = _gateway_result(_gateway([{"name": "http", "port": 80, "protocol": "HTTP"}],
                                      [{"type": "IPAddress", "value": "10.0.0.300"}]))
    conditions = _gateway_conditions(result)
    assert conditions[c.ACCEPTED][:2] == ("True", c.REASON_ACCEPTED)
    assert conditions[c.PROGRAMMED][:2] == ("False", c.REASON_ADDRESS_NOT_USABLE)
    assert "'10.0.0.300'" in conditions[c.PROGRAMMED][2]


def test_a_valid_ip_address_is_programmed() -> None:
    result = _gateway_result(_gateway([{"name": "http", "port": 80, "protocol": "HTTP"}],
                                      [{"type": "IPAddress", "value": "127.0.0.10"}]))
    assert _gateway_conditions(result)[c.PROGRAMMED][:2] == ("True", c.REASON_PROGRAMMED)


def test_attached_routes_count_only_accepted_routes() -> None:
    evaluation = _evaluate(_gateway([{"name": "http", "port": 80, "protocol": "HTTP", "hostname": "a.example.com"}]),
                           _route("matching", hostnames=["a.example.com"]),
                           _route("other-host", hostnames=["b.example.com"]),
                           _route("wrong-section", section="nope"))
    result = evaluation.gateways[("infra", "gw")]
    assert result is not None
    assert evaluation.routes[("HTTPRoute", "infra", "other-host")].parents[0].accepted.status == "False"
    assert result.listeners[0].attached_routes == 1


@pytest.mark.parametrize("listeners", [
    [{"name": "a", "port": 80, "protocol": "HTTP"}, {"name": "b", "port": 80, "protocol": "HTTP"}],
    [{"name": "tcp", "port": 9000, "protocol": "TCP"}, {"name": "bad", "port": 0, "protocol": "HTTP"}],
    [{"name": "https", "port": 443, "protocol": "HTTPS"}],
    [{"name": "sel", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "Selector"}}}],
])
def test_listener_accepted_is_always_written(listeners: list[dict[str, Any]]) -> None:
    for addresses in (None, [{"type": "NamedAddress", "value": "pool"}]):
        result = _gateway_result(_gateway(listeners, addresses))
        assert [listener.name for listener in result.listeners] == [listener["name"] for listener in listeners]
        for listener in result.listeners:
            assert [cond.type for cond in listener.conditions][:4] == [c.ACCEPTED, c.PROGRAMMED, c.RESOLVED_REFS,
                                                                     c.CONFLICTED]
            assert all(cond.observed_generation == 4 for cond in listener.conditions)
