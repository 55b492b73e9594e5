"""Immutable, versioned snapshots per node group, checked for consistency before they are published.

A node group is whatever key the server derives from an Envoy's node (for mcgw: member cluster and
gateway). Publishing a snapshot wakes only the streams of that group.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf.message import Message

from .resources import ENDPOINT, ROUTE, Resource

_HCM_TYPE = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name


class InconsistentSnapshotError(ValueError):
    """A snapshot names resources it does not carry, or carries resources nothing names."""


def _eds_names(cluster: cluster_pb2.Cluster) -> set[str]:
    if cluster.WhichOneof("cluster_discovery_type") == "type" and cluster.type == cluster_pb2.Cluster.EDS:
        return {cluster.eds_cluster_config.service_name or cluster.name}
    return set()


def _rds_names(listener: listener_pb2.Listener) -> set[str]:
    names = set()
    chains = [*listener.filter_chains, *([listener.default_filter_chain] if listener.HasField("default_filter_chain")
                                         else [])]
    for chain in chains:
        for network_filter in chain.filters:
            if network_filter.typed_config.type_url != _HCM_TYPE:
                continue
            hcm = hcm_pb2.HttpConnectionManager()
            network_filter.typed_config.Unpack(hcm)
            if hcm.HasField("rds"):
                names.add(hcm.rds.route_config_name)
    return names


@dataclass(frozen=True)
class Snapshot:
    """Resources by type URL and name. Build with :meth:`from_messages`, which checks consistency."""

    resources: Mapping[str, Mapping[str, Resource]]
    versions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_messages(cls, messages: Iterable[Message]) -> Snapshot:
        by_type: dict[str, dict[str, Resource]] = {}
        eds_refs: set[str] = set()
        rds_refs: set[str] = set()
        for message in messages:
            resource = Resource.from_message(message)
            bucket = by_type.setdefault(resource.type_url, {})
            if resource.name in bucket:
                raise InconsistentSnapshotError(f"duplicate {resource.type_url.rsplit('.', 1)[-1]} {resource.name!r}")
            bucket[resource.name] = resource
            if isinstance(message, cluster_pb2.Cluster):
                eds_refs |= _eds_names(message)
            elif isinstance(message, listener_pb2.Listener):
                rds_refs |= _rds_names(message)
        problems = []
        for kind, refs, type_url in (("ClusterLoadAssignment", eds_refs, ENDPOINT), ("RouteConfiguration", rds_refs,
                                                                                        ROUTE)):
            present = set(by_type.get(type_url, {}))
            if missing := sorted(refs - present):
                problems.append(f"{kind} referenced but missing: {', '.join(missing)}")
            if orphans := sorted(present - refs):
                parent = "cluster" if type_url == ENDPOINT else "listener"
                problems.append(f"{kind} not referenced by any {parent}: {', '.join(orphans)}")
        if problems:
            raise InconsistentSnapshotError("; ".join(problems))
        frozen = {t: MappingProxyType(dict(sorted(r.items()))) for t, r in by_type.items()}
        versions = {t: _type_version(r.values()) for t, r in frozen.items()}
        return cls(MappingProxyType(frozen), MappingProxyType(versions))

    def of_type(self, type_url: str) -> Mapping[str, Resource]:
        return self.resources.get(type_url, MappingProxyType({}))

    def version(self, type_url: str, names: Iterable[str] | None = None) -> str:
        """The version of a type, or of just ``names`` of it (what a non-wildcard subscriber sees)."""
        if names is None:
            return self.versions.get(type_url, _type_version([]))
        of_type = self.of_type(type_url)
        return _type_version(of_type[n] for n in sorted(set(names)) if n in of_type)


def _type_version(resources: Iterable[Resource]) -> str:
    digest = hashlib.sha256()
    for resource in resources:
        digest.update(f"{resource.name}\0{resource.version}\0".encode())
    return digest.hexdigest()[:16]


NodeGroup = tuple[str, str]


class SnapshotCache:
    """The latest snapshot per node group, and a way for streams to wait for the next one."""

    def __init__(self) -> None:
        self._snapshots: dict[NodeGroup, Snapshot] = {}
        self._changed: dict[NodeGroup, asyncio.Event] = {}

    def set_snapshot(self, group: NodeGroup, snapshot: Snapshot) -> None:
        self._snapshots[group] = snapshot
        event = self._changed.pop(group, None)
        if event is not None:
            event.set()

    def remove(self, group: NodeGroup) -> None:
        self._snapshots.pop(group, None)

    def get(self, group: NodeGroup) -> Snapshot | None:
        return self._snapshots.get(group)

    def groups(self) -> list[NodeGroup]:
        return sorted(self._snapshots)

    def changed(self, group: NodeGroup) -> asyncio.Event:
        """An event that is set the next time ``group`` gets a snapshot."""
        event = self._changed.get(group)
        if event is None:
            event = self._changed[group] = asyncio.Event()
        return event
