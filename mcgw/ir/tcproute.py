"""TCPRoute → route IR: its one rule's backends, ranked by age, for the TCP listeners it binds to.

A TCP listener forwards every connection to one backend list, so where several routes bind to one
listener the oldest (creationTimestamp, then namespace/name) is served and the others, still accepted
and counted in ``attachedRoutes``, carry nothing until it goes (the spec's conflict rule). The route IR
carries just a name and the backends (its match, every request, is never read); the Gateway IR turns the
first route of each TCP listener into :class:`mcgw.ir.TCPListenerIR`.

Backends have clusters of their own (:meth:`mcgw.ir.backends.Backends.as_stream`): a ServiceImport's keeps
its priorities and failover settings, with TCP connect health checks; the translator retries a failed
connect (``max_connect_attempts``), so a refused connection goes on to the next priority.
"""

from __future__ import annotations

from typing import Literal

from mcgw import ir
from mcgw.ir.backends import Backends
from mcgw.ir.httproute import PrecedenceKey, RankedRoute
from mcgw.semantics.gateway.evaluate import RouteResult

_new = tuple.__new__
_EVERY_CONNECTION = ir.MatchIR("PathPrefix", "/")


def stream_entries(result: RouteResult, backends: Backends,
                   protocol: Literal["TCP", "UDP"]) -> tuple[RankedRoute, ...]:
    """The route's kept rule (a TCPRoute or UDPRoute has one) as ranked route IR; none if it was dropped."""
    if not result.kept_rules:
        return ()
    route = result.route
    meta = route.metadata
    ns, name = meta.namespace, meta.name
    index = result.kept_rules[0]
    resolved = result.backends[index]
    backend_irs = tuple([backends.as_stream(b, protocol)
                         for b in backends.of_rule(resolved, (route.kind, ns, name), index)]) if resolved else ()
    route_ir = ir.RouteIR(f"{route.kind.lower()}/{ns}/{name}/rule/{index}", _EVERY_CONNECTION, backend_irs)
    key = _new(PrecedenceKey, (0, 0, 0, 0, 0, meta.creation_timestamp, ns, name, index, 0, route.kind))
    return ((key, route_ir),)


def route_entries(result: RouteResult, backends: Backends) -> tuple[RankedRoute, ...]:
    return stream_entries(result, backends, "TCP")


def refresh_backends(result: RouteResult, entries: tuple[RankedRoute, ...],
                     backends: Backends) -> tuple[RankedRoute, ...]:
    """The route's IR built again (it is one backend list: rebuilding it is the refresh)."""
    return route_entries(result, backends)
