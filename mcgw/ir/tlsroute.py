"""TLSRoute → route IR: one entry per route, placed (like an HTTP route) under each SNI name it serves.

A TLS port's "virtual hosts" are its SNI names: :func:`mcgw.ir.gateway.gateway_ir` turns each into one
filter chain, taken by the first route in precedence order, the oldest (then namespace/name), which is how
the spec settles two TLSRoutes claiming one name. Envoy picks the most specific name itself: an exact one,
then the longest wildcard, then a chain for any name.

Backends forward bytes (:meth:`mcgw.ir.backends.Backends.as_stream`, without upstream TLS); a ServiceImport
backend keeps its per-cluster priorities and failover settings, health-checked by TCP connect.
"""

from __future__ import annotations

from typing import cast

from mcgw import ir
from mcgw.ir import httproute
from mcgw.ir.backends import Backends
from mcgw.ir.httproute import PrecedenceKey, RankedRoute, failover_retry
from mcgw.objects.model import TLSRoute
from mcgw.semantics.gateway.evaluate import RouteResult

_MATCH_ANY = ir.MatchIR("PathPrefix", "/")  # unused by TLS listeners; the route IR needs one


def route_name(namespace: str, name: str) -> str:
    return f"tlsroute/{namespace}/{name}"


def _backends(result: RouteResult, index: int, backends: Backends) -> tuple[ir.BackendIR, ...]:
    resolved = result.backends[index]
    if not resolved:
        return ()
    meta = result.route.metadata
    return tuple([backends.as_stream(b, "TCP", originate_tls=False)
                  for b in backends.of_rule(resolved, ("TLSRoute", meta.namespace, meta.name), index)])


def _no_mirrors(result: RouteResult, index: int,
                backends: Backends) -> tuple[tuple[ir.BackendIR, ...], tuple[tuple[int, int], ...]]:
    return (), ()


def route_entries(result: RouteResult, backends: Backends) -> tuple[RankedRoute, ...]:
    """The route's one kept rule as route IR with its precedence key (age, then namespace/name)."""
    route = cast(TLSRoute, result.route)  # this builder's kind (ir.routekinds)
    meta = route.metadata
    entries: list[RankedRoute] = []
    for index in result.kept_rules:
        backend_irs = _backends(result, index, backends)
        route_ir = ir.RouteIR(route_name(meta.namespace, meta.name) + (f"/rule/{index}" if index else ""),
                              _MATCH_ANY, backend_irs, failover_retry=failover_retry(backend_irs))
        key = PrecedenceKey(0, 0, 0, 0, 0, meta.creation_timestamp, meta.namespace, meta.name, index, 0, "TLSRoute")
        entries.append((key, route_ir))
    return tuple(entries)


def refresh_backends(result: RouteResult, entries: tuple[RankedRoute, ...],
                     backends: Backends) -> tuple[RankedRoute, ...]:
    """``entries`` (from :func:`route_entries` for ``result``) with their backends built again."""
    return httproute.refresh_backends(result, entries, backends, backends_of=_backends, mirrors_of=_no_mirrors)
