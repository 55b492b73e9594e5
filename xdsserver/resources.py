"""xDS resources serialised once: a name, a type URL, the bytes, and a version that is their hash.

Marshalling dominates a control plane's CPU under load, so a resource is serialised when it is built
and every stream reuses the same ``Any``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from . import wire

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

# Make-before-break: a cluster warms until its endpoints arrive, a listener until its routes and secrets do.
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)
# For these types a response carries the full state and absence means delete.
FULL_STATE_TYPES = frozenset({CLUSTER, LISTENER})
_HCM_TYPE = _PREFIX + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_DOWNSTREAM_TLS = _PREFIX + tls_pb2.DownstreamTlsContext.DESCRIPTOR.full_name
_UPSTREAM_TLS = _PREFIX + tls_pb2.UpstreamTlsContext.DESCRIPTOR.full_name


def resource_name(message: Message) -> str:
    """The xDS name of a resource: ``cluster_name`` for a ClusterLoadAssignment, else ``name``."""
    if message.DESCRIPTOR.full_name == "envoy.config.endpoint.v3.ClusterLoadAssignment":
        return str(message.cluster_name)  # type: ignore[attr-defined]
    return str(message.name)  # type: ignore[attr-defined]


def _references(message: Message) -> frozenset[str]:
    """The EDS names a cluster needs, or the RDS names a listener needs; nothing for other types."""
    if isinstance(message, cluster_pb2.Cluster):
        if message.WhichOneof("cluster_discovery_type") == "type" and message.type == cluster_pb2.Cluster.EDS:
            return frozenset({message.eds_cluster_config.service_name or message.name})
        return frozenset()
    if not isinstance(message, listener_pb2.Listener):
        return frozenset()
    names = set()
    for chain in _filter_chains(message):
        for network_filter in chain.filters:
            if network_filter.typed_config.type_url != _HCM_TYPE:
                continue
            hcm = hcm_pb2.HttpConnectionManager()
            network_filter.typed_config.Unpack(hcm)
            if hcm.HasField("rds"):
                names.add(hcm.rds.route_config_name)
    return frozenset(names)


def _filter_chains(message: listener_pb2.Listener) -> list[listener_pb2.FilterChain]:
    chains = [*message.filter_chains]
    if message.HasField("default_filter_chain"):
        chains.append(message.default_filter_chain)
    return chains


def _secret_references(message: Message) -> frozenset[str]:
    """The SDS names a listener's or a cluster's TLS transport sockets need (certificates and validation
    contexts), so that a snapshot carries exactly the secrets its listeners and clusters use."""
    sockets: list[base_pb2.TransportSocket] = []
    if isinstance(message, listener_pb2.Listener):
        sockets = [chain.transport_socket for chain in _filter_chains(message) if chain.HasField("transport_socket")]
    elif isinstance(message, cluster_pb2.Cluster) and message.HasField("transport_socket"):
        sockets = [message.transport_socket]
    names: set[str] = set()
    for socket in sockets:
        common = _common_tls_context(socket)
        if common is None:
            continue
        names.update(config.name for config in common.tls_certificate_sds_secret_configs)
        if common.HasField("validation_context_sds_secret_config"):
            names.add(common.validation_context_sds_secret_config.name)
        if common.HasField("combined_validation_context"):
            names.add(common.combined_validation_context.validation_context_sds_secret_config.name)
    names.discard("")
    return frozenset(names)


def _common_tls_context(socket: base_pb2.TransportSocket) -> tls_pb2.CommonTlsContext | None:
    context: tls_pb2.DownstreamTlsContext | tls_pb2.UpstreamTlsContext
    if socket.typed_config.type_url == _DOWNSTREAM_TLS:
        context = tls_pb2.DownstreamTlsContext()
    elif socket.typed_config.type_url == _UPSTREAM_TLS:
        context = tls_pb2.UpstreamTlsContext()
    else:
        return None
    socket.typed_config.Unpack(context)
    return context.common_tls_context


@dataclass(frozen=True)
class Resource:
    """One serialised resource. ``version`` is a hash of the bytes, so equal content means equal version.

    ``sotw_field`` and ``delta_field`` are the resource encoded as an entry of a SotW or delta response,
    computed once on first use and then shared by every stream. ``references`` are the EDS or RDS names
    it needs and ``secret_references`` the SDS names, for the snapshot's consistency check.
    """

    name: str
    type_url: str
    payload: bytes
    version: str
    references: frozenset[str] = frozenset()
    secret_references: frozenset[str] = frozenset()

    @classmethod
    def from_message(cls, message: Message, previous: Mapping[str, Resource] | None = None) -> Resource:
        """Serialise ``message``; if ``previous`` (same type, by name) holds the same bytes, reuse that resource,
        and with it the hash, the references and the encoded fields."""
        payload = message.SerializeToString(deterministic=True)
        name = resource_name(message)
        if previous is not None:
            known = previous.get(name)
            if known is not None and known.payload == payload:
                return known
        type_url = _PREFIX + message.DESCRIPTOR.full_name
        return cls(name, type_url, payload, hashlib.sha256(payload).hexdigest()[:16], _references(message),
                   _secret_references(message))

    @classmethod
    def from_payload(cls, type_url: str, name: str, payload: bytes,
                     references: frozenset[str] = frozenset()) -> Resource:
        """A resource whose serialised bytes the caller already has (``payload`` must be the deterministic
        serialisation of a ``type_url`` message named ``name``, and ``references`` its EDS/RDS names):
        large route tables assembled from cached pieces skip a parse and a re-serialisation."""
        return cls(name, type_url, payload, hashlib.sha256(payload).hexdigest()[:16], references)

    @cached_property
    def sotw_field(self) -> bytes:
        """This resource as a ``DiscoveryResponse.resources`` entry (a ``google.protobuf.Any``)."""
        return wire.field(2, wire.any_type_url(self.type_url) + wire.field(2, self.payload))

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
