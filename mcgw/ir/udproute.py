"""UDPRoute → route IR: as TCPRoute's (:mod:`mcgw.ir.tcproute`), for UDP listeners.

Backends get ``…/udp`` clusters without active health checks: Envoy has no UDP health checker, and the
UDP proxy reports no outcome that outlier detection could count. What moves a UDPRoute's datagrams to
the next priority of a ServiceImport is the endpoints' own health: EndpointSlice readiness in each
exporting cluster, and the ClusterSet view (a cluster that stops exporting, or whose API server is
unreachable long enough to be dropped, leaves the priorities), which mcgw sends as EDS updates.
"""

from __future__ import annotations

from mcgw.ir.backends import Backends
from mcgw.ir.httproute import RankedRoute
from mcgw.ir.tcproute import stream_entries
from mcgw.semantics.gateway.evaluate import RouteResult


def route_entries(result: RouteResult, backends: Backends) -> tuple[RankedRoute, ...]:
    return stream_entries(result, backends, "UDP")


def refresh_backends(result: RouteResult, entries: tuple[RankedRoute, ...],
                     backends: Backends) -> tuple[RankedRoute, ...]:
    return route_entries(result, backends)
