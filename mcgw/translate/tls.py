"""TLS listener IR → Envoy ``Listener``: one per Gateway TLS port, a filter chain per route chosen by SNI.

Envoy's TLS inspector reads the SNI from the ClientHello; the filter chain whose ``server_names`` match
takes the connection (an exact name before the longest wildcard, before a chain without names), so the
most specific hostname wins as the spec asks. A connection whose SNI no chain matches is closed.

A passthrough chain forwards the bytes untouched (the client sees the backend's own certificate); a
terminate chain completes the handshake with its listener's certificates (by SDS name, as HTTPS does),
then forwards the decrypted bytes. Both reach their backends through ``tcp_proxy``, weighted; a backend
that did not resolve keeps its share under a cluster name that no cluster has, so its share of
connections is closed, as the spec wants for a backend that cannot be reached. With a ServiceImport
backend, a failed connect is tried again (``max_connect_attempts``, after a short backoff) on the next
healthy host, which is the next priority's once the local cluster's hosts are down.

Each connection is written to the Gateway's access log (if it has one) when it closes, naming the route
its SNI chose; a connection that no chain takes is logged by the listener itself (flag ``NR``).
"""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from mcgw import ir
from mcgw.translate.accesslog import access_logs
from mcgw.translate.listeners import ADS, pack
from mcgw.translate.streams import tcp_proxy

_TLS_INSPECTOR = {"name": "envoy.filters.listener.tls_inspector",
                  "typed_config": pack(tls_inspector_pb2.TlsInspector())}


def _chain(route: ir.TLSRouteIR | ir.TLSTerminateRouteIR, access_log: ir.AccessLogIR | None,
           listener: str) -> dict[str, object]:
    # Named by mode too: one TLSRoute may win names through a passthrough and a terminate listener of the port.
    mode = "terminate" if isinstance(route, ir.TLSTerminateRouteIR) else "passthrough"
    chain: dict[str, object] = {"name": f"{mode}/{route.name}",
                                "filters": [tcp_proxy(route.name, route.backends, access_log, listener, "TLS")]}
    if route.server_names:
        chain["filter_chain_match"] = {"server_names": list(route.server_names)}
    if isinstance(route, ir.TLSTerminateRouteIR):
        context = tls_pb2.DownstreamTlsContext(common_tls_context={
            "tls_certificate_sds_secret_configs": [{"name": name, "sds_config": ADS} for name in route.certificates]})
        chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": pack(context)}
    return chain


def tls_ports(gateway: ir.GatewayIR) -> dict[int, tuple[ir.TLSPassthroughListenerIR | None,
                                                         ir.TLSTerminateListenerIR | None]]:
    """The Gateway's TLS ports in port order, each with its passthrough and its terminate listener (or None)."""
    passthrough = {item.port: item for item in gateway.tls_passthrough if item.routes}
    terminate = {item.port: item for item in gateway.tls_terminate if item.routes}
    # A port without routes has no Envoy listener: connections to it are refused.
    return {port: (passthrough.get(port), terminate.get(port)) for port in sorted({*passthrough, *terminate})}


def listener_name(gateway: ir.GatewayIR, port: int) -> str:
    return f"{gateway.namespace}/{gateway.name}/{port}"


def tls_listener(gateway: ir.GatewayIR, port: int, passthrough: ir.TLSPassthroughListenerIR | None,
                 terminate: ir.TLSTerminateListenerIR | None) -> listener_pb2.Listener:
    """The Envoy listener of one TLS port, its chains in the IR's order (Envoy matches by SNI, not order)."""
    routes: list[ir.TLSRouteIR | ir.TLSTerminateRouteIR] = []
    if passthrough is not None:
        routes += passthrough.routes
    if terminate is not None:
        routes += terminate.routes
    name = listener_name(gateway, port)
    return listener_pb2.Listener(
        name=name,
        address={"socket_address": {"address": gateway.address, "port_value": port}},
        listener_filters=[_TLS_INSPECTOR],
        filter_chains=[_chain(route, gateway.access_log, name) for route in routes],
        access_log=access_logs(gateway.access_log, "TLS-unmatched", name),
    )


def tls_backends(gateway: ir.GatewayIR) -> dict[str, ir.BackendIR]:
    """Every usable backend the TLS listeners send to, by cluster name, in the order routes first name them."""
    found: dict[str, ir.BackendIR] = {}
    routes: list[ir.TLSRouteIR | ir.TLSTerminateRouteIR] = [r for item in gateway.tls_passthrough for r in item.routes]
    routes += [r for item in gateway.tls_terminate for r in item.routes]
    for route in routes:
        for backend in route.backends:
            if backend.valid and backend.name not in found:
                found[backend.name] = backend
    return found
