"""IR → Envoy resources. Pure, and the only place that knows Envoy's API.

Every listener kind of the IR is translated. A TLS port (passthrough, terminate, or both) is one Listener
with a filter chain per route, chosen by SNI (:mod:`.tls`); TCP and UDP listeners get one Envoy listener
each (:mod:`.streams`), named ``<ns>/<gateway>/<port>`` (UDP: ``…/<port>/udp``), and their backends'
clusters like HTTP routes'.

Per HTTP listener (one per Gateway port): one Listener and one RouteConfiguration (named
``<ns>/<gateway>/<port>``; where HTTPS listeners share the port, one each, named
``<ns>/<gateway>/<port>/<listener>``, answering 421 for the other listeners' hostnames), a virtual host per
hostname (the Host header's port is ignored), and one EDS cluster with its ClusterLoadAssignment per
backend Service port (shared by every route that uses it);
per certificate the Gateway's listeners use, per CA bundle its HTTPS ports verify client certificates
against, and for its client certificate toward backends reached over TLS, one SDS Secret
(:mod:`.secrets`), which only this Gateway's Envoys receive; so a backend's cluster is per Gateway too.
Every listener writes the Gateway's access log, if it has one, to Envoy's stdout (:mod:`.accesslog`).
Show resources through :func:`redacted`: Secrets hold private keys.

Route tables are encoded straight to bytes (:mod:`.routes`); listeners and clusters, a few per backend,
are built with protobuf constructors. :func:`translate` builds a Gateway's resources from scratch;
:class:`GatewayResources` builds the same resources, in the same order, keeping the encoded pieces so
that the next call reuses whatever did not change.
"""

from __future__ import annotations

from mcgw import ir
from mcgw.translate.cache import Built, GatewayResources
from mcgw.translate.clusters import cluster, load_assignment
from mcgw.translate.listeners import listener
from mcgw.translate.routes import (
    listener_tables,
    route_field,
    route_table,
    virtual_host_field,
    virtual_host_fields,
)
from mcgw.translate.secrets import delivered, redacted, secret, trusted_ca
from mcgw.translate.streams import stream_clusters, tcp_listener, udp_listener
from mcgw.translate.tls import tls_backends, tls_listener, tls_ports

__all__ = ["Built", "GatewayResources", "redacted", "translate"]


def translate(gateway: ir.GatewayIR) -> tuple[Built, ...]:
    """Every Envoy resource one Gateway's Envoys receive: route tables, listeners, clusters with their
    endpoints (in the order routes first name them), then the secrets and trusted CAs the listeners name."""
    tables: list[Built] = []
    backends: dict[str, ir.BackendIR] = {}
    # A route bound under several hostnames is encoded once; one that redirects once per listener (its port).
    encoded: dict[object, bytes] = {}
    for port in gateway.http:
        vhosts = []
        where = (port.port, port.protocol)
        for vhost in port.virtual_hosts:
            parts = virtual_host_fields(vhost)
            for route in vhost.routes:
                key = id(route) if route.redirect is None else (id(route), where)
                field = encoded.get(key)
                if field is None:
                    field = encoded[key] = route_field(route, *where)
                    # route_clusters(route), unrolled: this runs once per route of a full translation.
                    if route.redirect is None:
                        for backend in route.backends:
                            if backend.valid and backend.name not in backends:
                                backends[backend.name] = backend
                        for backend in route.mirrors:
                            if backend.valid and backend.name not in backends:
                                backends[backend.name] = backend
                parts.append(field)
            vhosts.append(virtual_host_field(parts))
        tables += [Built(name, payload=route_table(name, fields)) for name, fields in listener_tables(port, vhosts)]
    out = tables + [Built(port.name, listener(gateway.address, port, gateway.access_log)) for port in gateway.http]
    streams: list[ir.TCPListenerIR | ir.UDPListenerIR] = [*gateway.tcp, *gateway.udp]
    for stream in streams:
        built = tcp_listener(gateway.address, stream, gateway.access_log) if isinstance(stream, ir.TCPListenerIR) \
            else udp_listener(gateway.address, stream, gateway.access_log)
        if built is not None:
            out.append(Built(stream.name, built))
            for backend in stream_clusters(stream):
                backends.setdefault(backend.name, backend)
    for number, (passthrough, terminate) in tls_ports(gateway).items():
        built = tls_listener(gateway, number, passthrough, terminate)
        out.append(Built(built.name, built))
    for name, backend in tls_backends(gateway).items():
        backends.setdefault(name, backend)
    for name, backend in backends.items():
        out += (Built(name, cluster(backend, gateway.client_certificate)), Built(name, load_assignment(backend)))
    tls_clusters = any(backend.tls is not None for backend in backends.values())
    out += [Built(item.name, secret(item)) for item in delivered(gateway, tls_clusters)]
    out += [Built(item.name, trusted_ca(item)) for item in gateway.trusted_cas]
    return tuple(out)
