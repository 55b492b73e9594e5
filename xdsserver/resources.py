"""xDS resources serialised once: a name, a type URL, the bytes, and a version that is their hash.

Marshalling dominates a control plane's CPU under load, so a resource is serialised when it is built
and every stream reuses the same ``Any``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

from google.protobuf import any_pb2
from google.protobuf.message import Message

from . import wire

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

# Make-before-break: a cluster warms until its endpoints arrive, a listener until its routes do.
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)
# For these types a response carries the full state and absence means delete.
FULL_STATE_TYPES = frozenset({CLUSTER, LISTENER})


def resource_name(message: Message) -> str:
    """The xDS name of a resource: ``cluster_name`` for a ClusterLoadAssignment, else ``name``."""
    if message.DESCRIPTOR.full_name == "envoy.config.endpoint.v3.ClusterLoadAssignment":
        return str(message.cluster_name)  # type: ignore[attr-defined]
    return str(message.name)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Resource:
    """One serialised resource. ``version`` is a hash of the bytes, so equal content means equal version.

    ``sotw_field`` and ``delta_field`` are the resource already encoded as an entry of a SotW or delta
    response, so every stream reuses the same bytes.
    """

    name: str
    type_url: str
    payload: bytes
    version: str
    sotw_field: bytes = field(repr=False)

    @classmethod
    def from_message(cls, message: Message) -> Resource:
        payload = message.SerializeToString(deterministic=True)
        type_url = _PREFIX + message.DESCRIPTOR.full_name
        packed = wire.any_type_url(type_url) + wire.field(2, payload)  # google.protobuf.Any
        return cls(resource_name(message), type_url, payload, hashlib.sha256(payload).hexdigest()[:16],
                   wire.field(2, packed))

    @cached_property
    def delta_field(self) -> bytes:
        """This resource as a ``DeltaDiscoveryResponse.resources`` entry (an xDS ``Resource``)."""
        packed = wire.any_type_url(self.type_url) + wire.field(2, self.payload)
        entry = wire.field(3, self.name.encode()) + wire.field(1, self.version.encode()) + wire.field(2, packed)
        return wire.field(2, entry)

    @property
    def packed(self) -> any_pb2.Any:
        """The resource as an ``Any`` message (for callers that want protobuf objects, not bytes)."""
        return any_pb2.Any(type_url=self.type_url, value=self.payload)
