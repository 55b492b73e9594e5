"""The route kinds mcgw serves, each with what its semantics need: its model, rule checks, listeners.

A new route kind adds its module (``<kind>.py`` beside this one) and one entry here; listeners,
attachment, backend resolution and status derive what they need from this table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeGuard

from mcgw.objects.model import GATEWAY_GROUP, GRPCRoute, HTTPRoute, TCPRoute, TLSRoute, UDPRoute
from mcgw.semantics.gateway import grpcroute, httproute, tcproute, tlsroute, udproute
from mcgw.semantics.gateway.routes import RuleCheck

# Every route model mcgw serves: a route result holds one of these.
AnyRoute = HTTPRoute | GRPCRoute | TLSRoute | TCPRoute | UDPRoute


class RouteKind(NamedTuple):
    kind: str
    model: type
    check_rules: Callable[[Any], RuleCheck]
    named_backends: Callable[[Any], frozenset[tuple[str, str]]]  # what a change of existence re-evaluates
    protocols: frozenset[str]  # listener protocols that accept this kind (and take it by default)


ROUTE_KINDS: Mapping[str, RouteKind] = {
    "HTTPRoute": RouteKind("HTTPRoute", HTTPRoute, httproute.check_rules, httproute.named_backends,
                           frozenset({"HTTP", "HTTPS"})),
    "GRPCRoute": RouteKind("GRPCRoute", GRPCRoute, grpcroute.check_rules, httproute.named_backends,
                           frozenset({"HTTP", "HTTPS"})),
    "TLSRoute": RouteKind("TLSRoute", TLSRoute, tlsroute.check_rules, tlsroute.named_backends, frozenset({"TLS"})),
    "TCPRoute": RouteKind("TCPRoute", TCPRoute, tcproute.check_rules, tcproute.named_backends, frozenset({"TCP"})),
    "UDPRoute": RouteKind("UDPRoute", UDPRoute, udproute.check_rules, udproute.named_backends, frozenset({"UDP"})),
}
ROUTE_MODELS: tuple[type, ...] = tuple(kind.model for kind in ROUTE_KINDS.values())


def is_route(obj: object) -> TypeGuard[AnyRoute]:
    return isinstance(obj, ROUTE_MODELS)


def kinds_for_protocol(protocol: str) -> list[tuple[str, str]]:
    """(group, kind) of every route kind a listener of ``protocol`` accepts, in registry order."""
    return [(GATEWAY_GROUP, kind.kind) for kind in ROUTE_KINDS.values() if protocol in kind.protocols]
