"""Envoy resources from plain data (YAML/JSON with ``"@type"``), as Envoy's own config files write them.

Only the message types registered with protobuf's default pool can be parsed; importing this module
registers the ones a gateway uses (listeners, routes, clusters, endpoints, HTTP connection manager,
router, TLS).
"""

from __future__ import annotations

from typing import Any

# Imported for their side effect: they register the descriptors that ParseDict resolves by type URL.
from envoy.config.cluster.v3 import cluster_pb2  # noqa: F401
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: F401
from envoy.config.listener.v3 import listener_pb2  # noqa: F401
from envoy.config.route.v3 import route_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from google.protobuf import json_format, symbol_database
from google.protobuf.message import Message


def message_from_dict(data: dict[str, Any]) -> Message:
    """Parse one resource; ``data["@type"]`` names its message, as in Envoy's YAML config."""
    type_url = data.get("@type")
    if not isinstance(type_url, str):
        raise ValueError("a resource needs an '@type' such as type.googleapis.com/envoy.config.cluster.v3.Cluster")
    full_name = type_url.rsplit("/", 1)[-1]
    try:
        message_class = symbol_database.Default().GetSymbol(full_name)
    except KeyError as error:
        raise ValueError(f"unknown resource type {full_name!r}") from error
    body = {k: v for k, v in data.items() if k != "@type"}
    message: Message = message_class()
    json_format.ParseDict(body, message)
    return message
