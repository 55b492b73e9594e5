"""What the xDS server serves one node group, as an operator reads it (``/api/config_dump``, and
``mcgw config-dump`` on top of it): each type's version and resources as JSON, decoded from the bytes the
snapshot actually sends, so what is shown is what Envoy gets. Private keys are replaced by
``[redacted]`` (``mcgw.translate.redacted``): the dump is for reading, never a way to fetch a key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from mcgw.translate import redacted
from xdsserver import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, SnapshotCache

# The short names operators type (as ``istioctl proxy-config`` and Envoy's own dump sections use them).
TYPES: dict[str, tuple[str, type[Message]]] = {
    "lds": (LISTENER, listener_pb2.Listener),
    "rds": (ROUTE, route_pb2.RouteConfiguration),
    "cds": (CLUSTER, cluster_pb2.Cluster),
    "eds": (ENDPOINT, endpoint_pb2.ClusterLoadAssignment),
    "sds": (SECRET, secret_pb2.Secret),
}


class UnknownNodeGroup(LookupError):
    """No snapshot for the asked group; the message lists the groups there are."""


def node_groups(cache: SnapshotCache) -> list[str]:
    """Every group with a snapshot, as ``<cluster>:<namespace>/<gateway>``."""
    return sorted(f"{cluster}:{gateway}" for cluster, gateway in cache.groups())


def config_dump(cache: SnapshotCache, cluster: str, gateway: str, types: Iterable[str] = TYPES) -> dict[str, Any]:
    """The current snapshot of node group ``(cluster, gateway)``, the ``types`` asked for (short names)."""
    asked = list(types)
    if unknown := [name for name in asked if name not in TYPES]:
        raise ValueError(f"unknown type {', '.join(unknown)}: the types are {', '.join(TYPES)}")
    snapshot = cache.get((cluster, gateway))
    if snapshot is None:
        raise UnknownNodeGroup(f"no configuration for gateway {gateway} of cluster {cluster}; there is for: "
                               f"{', '.join(node_groups(cache)) or 'none'}")
    dumped: dict[str, Any] = {}
    for name in asked:
        type_url, message_type = TYPES[name]
        resources = []
        for resource in snapshot.of_type(type_url).values():
            message = message_type()
            message.ParseFromString(resource.payload)
            resources.append(json_format.MessageToDict(redacted(message)))
        dumped[name] = {"version": snapshot.version(type_url), "resources": resources}
    return {"cluster": cluster, "gateway": gateway, "types": dumped}
