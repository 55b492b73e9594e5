"""The route kinds the IR builds, each with its builder: one entry per kind, beside its module.

A builder turns one route result into ranked route IR (:func:`mcgw.ir.httproute.route_entries`) and,
when only endpoints changed, rebuilds just the backends of IR built before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple

from mcgw.ir import grpcroute, httproute, tcproute, tlsroute, udproute
from mcgw.ir.backends import Backends
from mcgw.ir.httproute import RankedRoute
from mcgw.semantics.gateway.evaluate import RouteResult


class RouteBuilder(NamedTuple):
    entries: Callable[[RouteResult, Backends], tuple[RankedRoute, ...]]
    refresh_backends: Callable[[RouteResult, tuple[RankedRoute, ...], Backends], tuple[RankedRoute, ...]]
    # The listeners it fills: HTTP ones (virtual hosts by hostname; a TLS port's SNI names too), or one TCP
    # or UDP listener per port (the oldest route bound to it is the one served).
    listener: Literal["HTTP", "TCP", "UDP"] = "HTTP"


ROUTE_BUILDERS: Mapping[str, RouteBuilder] = {
    "HTTPRoute": RouteBuilder(httproute.route_entries, httproute.refresh_backends),
    "GRPCRoute": RouteBuilder(grpcroute.route_entries, grpcroute.refresh_backends),
    "TLSRoute": RouteBuilder(tlsroute.route_entries, tlsroute.refresh_backends),
    "TCPRoute": RouteBuilder(tcproute.route_entries, tcproute.refresh_backends, "TCP"),
    "UDPRoute": RouteBuilder(udproute.route_entries, udproute.refresh_backends, "UDP"),
}


def stream_slot(protocol: str) -> str:
    """Where a TCP or UDP listener's routes are kept among a port's virtual hosts, by "hostname": a name no
    hostname can have, so a UDP listener sharing an HTTP port's number never mixes with its routes."""
    return f"<{protocol}>"


def is_stream_slot(hostname: str) -> bool:
    return hostname.startswith("<")
