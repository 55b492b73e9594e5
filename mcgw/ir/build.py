"""From evaluated Gateways and routes to the IR of every Gateway of one member cluster.

The pieces live beside this module so that the incremental translator can reuse them:
:mod:`mcgw.ir.gateway` (a Gateway's ports and TLS chains), :mod:`mcgw.ir.httproute` (one route's
IR in precedence order), :mod:`mcgw.ir.backends` (shared backend IR). :func:`build_gateways`
composes them for a whole cluster, from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping

from mcgw import ir
from mcgw.ir.backends import Backends
from mcgw.ir.failover import FailoverContext
from mcgw.ir.gateway import StreamKey, gateway_ir, gateway_shape
from mcgw.ir.httproute import PrecedenceKey, RankedRoute, virtual_host
from mcgw.ir.routekinds import ROUTE_BUILDERS
from mcgw.objects.model import Secret
from mcgw.semantics.endpoints import EndpointLookup
from mcgw.semantics.gateway.backends import AppProtocolLookup, PortNameLookup
from mcgw.semantics.gateway.evaluate import Evaluation, GatewayKey
from mcgw.semantics.gateway.routes import RouteKey
from mcgw.semantics.policy.backendtls import NO_BACKEND_TLS, BackendTLSResolution


def _by_precedence(entry: RankedRoute) -> PrecedenceKey:
    return entry[0]


def build_gateways(cluster: str, evaluation: Evaluation, endpoints: EndpointLookup,
                   secrets: Mapping[tuple[str, str], Secret],
                   bind_addresses: Mapping[tuple[str, str], str] | None = None,
                   failover: FailoverContext | None = None,
                   app_protocols: AppProtocolLookup | None = None,
                   backend_tls: BackendTLSResolution = NO_BACKEND_TLS,
                   port_names: PortNameLookup | None = None) -> list[ir.GatewayIR]:
    """The IR of every Gateway of one member cluster. One without a usable listener has no listeners in
    its IR: its Envoys get an empty configuration, so they turn ready and serve nothing.

    ``bind_addresses`` says where each Gateway's Envoy listens (default ``0.0.0.0``); ``app_protocols``
    gives Service ports' appProtocols (without it every Service backend speaks HTTP/1.1); ``backend_tls``
    the BackendTLSPolicies, matched to Service ports by the names ``port_names`` gives.
    """
    shapes = {key: gateway_shape(key, gateway, secrets, bind_addresses)
              for key, gateway in sorted(evaluation.gateways.items())}
    # gateway -> port -> hostname -> routes bound there (a route bound through two listeners counts once)
    members: dict[GatewayKey, dict[int, dict[str, dict[RouteKey, None]]]] = {key: {} for key in shapes}
    # gateway -> (protocol, port) of a TCP or UDP listener -> routes bound there
    streams: dict[GatewayKey, dict[StreamKey, dict[RouteKey, None]]] = {key: {} for key in shapes}
    for route_key, result in evaluation.routes.items():
        protocol = ROUTE_BUILDERS[route_key[0]].listener
        for parent in result.parents:
            for binding in parent.bindings:
                if binding.usable and binding.gateway in members:
                    if protocol != "HTTP":
                        streams[binding.gateway].setdefault((protocol, binding.port), {})[route_key] = None
                        continue
                    per_port = members[binding.gateway].setdefault(binding.port, {})
                    for hostname in binding.hostnames:
                        per_port.setdefault(hostname, {})[route_key] = None
    backends = Backends(cluster, endpoints, failover, app_protocols, backend_tls, port_names)
    entries: dict[RouteKey, tuple[RankedRoute, ...]] = {}

    def of(route_key: RouteKey) -> tuple[RankedRoute, ...]:
        found = entries.get(route_key)
        if found is None:
            found = entries[route_key] = ROUTE_BUILDERS[route_key[0]].entries(evaluation.routes[route_key], backends)
        return found

    gateways = []
    for key, shape in shapes.items():
        ns, name = key
        vhosts = {port: tuple(virtual_host(f"{ns}/{name}/{port}", hostname, (e for r in routes for e in of(r)))
                              for hostname, routes in sorted(per_port.items()))
                  for port, per_port in members[key].items()}
        stream_routes = {where: tuple(route for _, route in sorted((e for r in routes for e in of(r)),
                                                                   key=_by_precedence))
                         for where, routes in streams[key].items()}
        gateways.append(gateway_ir(cluster, shape, vhosts, stream_routes))
    return gateways
