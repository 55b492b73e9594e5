"""IR → Envoy resources. Pure, and the only place that knows Envoy's API.

Per Gateway port: one Listener and one RouteConfiguration (named ``<ns>/<gateway>/<port>``), a virtual
host per hostname (the Host header's port is ignored), and one EDS cluster with its
ClusterLoadAssignment per backend Service port (shared by every route that uses it).

Every resource is built with protobuf constructors, never through JSON: at thousands of routes the
JSON parser alone would cost more than everything else. :func:`translate` builds a Gateway's
resources from scratch; :mod:`mcgw.translate.cache` builds the same resources reusing the unchanged
parts of the previous result.
"""

from __future__ import annotations

from google.protobuf.message import Message

from mcgw import ir

from .clusters import cluster, load_assignment
from .listeners import listener
from .routes import duration, route_clusters, route_configuration

__all__ = ["duration", "gateway_clusters", "translate"]


def gateway_clusters(gateway: ir.GatewayIR) -> dict[str, ir.BackendIR]:
    """The backends that get an Envoy cluster, by name, in the order routes first name them."""
    clusters: dict[str, ir.BackendIR] = {}
    for port in gateway.ports:
        for vhost in port.virtual_hosts:
            for route in vhost.routes:
                for backend in route_clusters(route):
                    clusters.setdefault(backend.name, backend)
    return clusters


def translate(gateway: ir.GatewayIR) -> list[Message]:
    """Every Envoy resource one Gateway's Envoys receive: route tables, listeners, then clusters with
    their endpoints."""
    resources: list[Message] = [route_configuration(port) for port in gateway.ports]
    resources += [listener(gateway.address, port) for port in gateway.ports]
    for backend in gateway_clusters(gateway).values():
        resources += (cluster(backend), load_assignment(backend))
    return resources
