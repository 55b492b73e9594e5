"""The route kinds the IR builds, each with its builder: one entry per kind, beside its module.

A builder turns one route result into ranked route IR (:func:`mcgw.ir.httproute.route_entries`) and,
when only endpoints changed, rebuilds just the backends of IR built before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from mcgw.ir import grpcroute, httproute, tlsroute
from mcgw.ir.backends import Backends
from mcgw.ir.httproute import RankedRoute
from mcgw.semantics.gateway.evaluate import RouteResult


class RouteBuilder(NamedTuple):
    entries: Callable[[RouteResult, Backends], tuple[RankedRoute, ...]]
    refresh_backends: Callable[[RouteResult, tuple[RankedRoute, ...], Backends], tuple[RankedRoute, ...]]


ROUTE_BUILDERS: Mapping[str, RouteBuilder] = {
    "HTTPRoute": RouteBuilder(httproute.route_entries, httproute.refresh_backends),
    "GRPCRoute": RouteBuilder(grpcroute.route_entries, grpcroute.refresh_backends),
    "TLSRoute": RouteBuilder(tlsroute.route_entries, tlsroute.refresh_backends),
}
