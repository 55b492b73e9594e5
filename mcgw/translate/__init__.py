"""IR → Envoy resources. Pure, and the only place that knows Envoy's API.

Per Gateway port: one Listener and one RouteConfiguration (named ``<ns>/<gateway>/<port>``), a virtual
host per hostname (the Host header's port is ignored), and one EDS cluster with its
ClusterLoadAssignment per backend Service port (shared by every route that uses it).

Route tables are encoded straight to bytes (:mod:`.routes`); listeners and clusters, a few per backend,
are built with protobuf constructors. :func:`translate` builds a Gateway's resources from scratch;
:class:`GatewayResources` builds the same resources reusing the unchanged parts of its previous result.
"""

from __future__ import annotations

from mcgw import ir

from .cache import Built, GatewayResources

__all__ = ["Built", "GatewayResources", "translate"]


def translate(gateway: ir.GatewayIR) -> tuple[Built, ...]:
    """Every Envoy resource one Gateway's Envoys receive: route tables, listeners, then clusters with
    their endpoints."""
    return GatewayResources().update(gateway)
