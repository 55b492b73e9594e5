"""Hostname intersection, ReferenceGrant checks and rules Envoy would refuse, as the Gateway API spec defines them."""

from __future__ import annotations

import pytest

from mcgw.objects.model import HTTPRoute, ReferenceGrant, parse_object
from mcgw.semantics.gateway.hostnames import intersection, isolated, route_hostnames_for_listener
from mcgw.semantics.gateway.httproute import check_rules
from mcgw.semantics.gateway.refs import Reference, is_permitted


@pytest.mark.parametrize(("listener", "route", "expected"), [
    (None, "shop.example.com", "shop.example.com"),
    ("shop.example.com", "shop.example.com", "shop.example.com"),
    ("shop.example.com", "cart.example.com", None),
    ("*.example.com", "shop.example.com", "shop.example.com"),
    ("*.example.com", "a.b.example.com", "a.b.example.com"),
    ("*.example.com", "example.com", None),  # a wildcard never matches the apex
    ("shop.example.com", "*.example.com", "shop.example.com"),
    ("*.example.com", "*.shop.example.com", "*.shop.example.com"),
    ("*.shop.example.com", "*.example.com", "*.shop.example.com"),
    ("*.example.com", "*.example.org", None),
    ("*.example.com", "*.example.com", "*.example.com"),
])
def test_hostname_intersection(listener: str | None, route: str, expected: str | None) -> None:
    assert intersection(listener, route) == expected


def test_route_hostnames_for_listener() -> None:
    assert route_hostnames_for_listener("*.example.com", ()) == ["*.example.com"]
    assert route_hostnames_for_listener(None, ()) == ["*"]
    assert route_hostnames_for_listener("*.example.com", ("a.example.com", "b.example.org")) == ["a.example.com"]
    assert route_hostnames_for_listener("a.example.com", ("b.example.com",)) is None


_PORT_80 = (None, "*.example.com", "*.foo.example.com", "abc.foo.example.com")


@pytest.mark.parametrize(("listener", "hostnames", "kept"), [
    # A route on the hostname-less listener keeps only names no other listener matches.
    (None, ("bar.com", "*.example.com", "*.foo.example.com", "abc.foo.example.com"), ("bar.com",)),
    (None, ("*",), ("*",)),
    # On *.example.com it loses the names of the more specific listeners, whole wildcards included.
    ("*.example.com", ("*.example.com", "x.example.com", "*.foo.example.com", "abc.foo.example.com"),
     ("*.example.com", "x.example.com")),
    # A wildcard only partly owned by a more specific listener stays: its other names are this listener's.
    ("*.example.com", ("*.example.com",), ("*.example.com",)),
    ("*.foo.example.com", ("*.foo.example.com", "abc.foo.example.com"), ("*.foo.example.com",)),
    # The most specific listener keeps everything.
    ("abc.foo.example.com", ("abc.foo.example.com",), ("abc.foo.example.com",)),
])
def test_listener_isolation(listener: str | None, hostnames: tuple[str, ...], kept: tuple[str, ...]) -> None:
    others = [other for other in _PORT_80 if other != listener]
    assert isolated(hostnames, listener, others) == kept


def _grant(namespace: str, from_ns: str, to_kind: str = "Service", to_name: str | None = None) -> ReferenceGrant:
    to: dict[str, str] = {"group": "", "kind": to_kind}
    if to_name:
        to["name"] = to_name
    grant = parse_object({
        "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "g", "namespace": namespace},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": from_ns}],
                 "to": [to]},
    }, "test")
    assert isinstance(grant, ReferenceGrant)
    return grant


def _ref(to_ns: str = "backends", to_name: str = "cart", from_ns: str = "shop") -> Reference:
    return Reference("gateway.networking.k8s.io", "HTTPRoute", from_ns, "", "Service", to_ns, to_name)


def test_same_namespace_needs_no_grant() -> None:
    assert is_permitted(_ref(to_ns="shop"), [])


def test_cross_namespace_needs_a_grant_in_the_target_namespace() -> None:
    assert not is_permitted(_ref(), [])
    assert is_permitted(_ref(), [_grant("backends", "shop")])
    assert not is_permitted(_ref(), [_grant("shop", "shop")])  # the grant lives in the wrong namespace
    assert not is_permitted(_ref(from_ns="other"), [_grant("backends", "shop")])


def test_grant_limited_to_a_name_or_kind() -> None:
    assert is_permitted(_ref(to_name="cart"), [_grant("backends", "shop", to_name="cart")])
    assert not is_permitted(_ref(to_name="payments"), [_grant("backends", "shop", to_name="cart")])
    assert not is_permitted(_ref(), [_grant("backends", "shop", to_kind="Secret")])


@pytest.mark.parametrize(("modifier", "message"), [
    ({"set": [{"name": "x bad", "value": "v"}]}, "header name 'x bad' is not a valid HTTP header name"),
    ({"add": [{"name": "x-big", "value": "v" * 5000}]}, "value of header 'x-big' is longer than 4096 bytes"),
    ({"remove": ["x:colon"]}, "header name 'x:colon' is not a valid HTTP header name"),
])
def test_a_header_modifier_envoy_would_refuse_drops_only_its_rule(modifier: dict[str, object], message: str) -> None:
    route = parse_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                          "metadata": {"name": "r", "namespace": "a", "generation": 3}, "spec": {"rules": [
                              {"filters": [{"type": "ResponseHeaderModifier", "responseHeaderModifier": modifier}]},
                              {"matches": [{"path": {"type": "PathPrefix", "value": "/ok"}}]}]}}, "r")
    assert isinstance(route, HTTPRoute)
    checked = check_rules(route)
    assert checked.kept == (1,)
    assert checked.partially_invalid is not None
    assert checked.partially_invalid.reason == "UnsupportedValue"
    assert checked.partially_invalid.message == f"Dropped Rule 0: {message}"
