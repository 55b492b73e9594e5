"""Immutable, versioned snapshots per node group, checked for consistency before they are published.

A node group is whatever key the server derives from an Envoy's node (for mcgw: member cluster and
gateway). Publishing a snapshot wakes only the streams of that group that read what changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf.message import Message

from .resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, Resource

# Names held by a snapshot's cache of subscription views, oldest views dropped first: streams ask for what
# they like, and every distinct set of names would otherwise stay until the next publish.
_VIEW_CACHE_NAMES = 100_000


class InconsistentSnapshotError(ValueError):
    """A snapshot names resources it does not carry, or carries resources nothing names."""


@dataclass(frozen=True)
class Snapshot:
    """Resources by type URL and name. Build with :meth:`from_messages`, which checks consistency: every
    EDS, RDS and SDS name a cluster or listener uses is carried, and nothing is carried that none uses."""

    resources: Mapping[str, Mapping[str, Resource]]
    versions: Mapping[str, str] = field(default_factory=dict)
    # Versions of subscription views, shared by every stream that asks for the same names.
    _view_versions: dict[tuple[str, frozenset[str]], str] = field(default_factory=dict, compare=False, repr=False)
    _view_names: list[int] = field(default_factory=lambda: [0], compare=False, repr=False)  # names in those keys

    @classmethod
    def from_messages(cls, messages: Iterable[Message], previous: Snapshot | None = None) -> Snapshot:
        """Serialise and check ``messages``. With ``previous`` (the group's current snapshot), unchanged
        resources are reused instead of hashed and encoded again."""
        return cls._checked((Resource.from_message(message, previous.of_type(_type_url(message)) if previous else None)
                             for message in messages), previous)

    @classmethod
    def from_resources(cls, resources: Iterable[Resource], previous: Snapshot | None = None) -> Snapshot:
        """Check already serialised ``resources``. A resource equal to one of ``previous`` is replaced by
        that one, which keeps its encoded response entries."""
        if previous is None:
            return cls._checked(resources)

        def reused(resource: Resource) -> Resource:
            known = previous.of_type(resource.type_url).get(resource.name)
            if known is not None and known is not resource and known.payload == resource.payload:
                return known
            return resource

        return cls._checked((reused(resource) for resource in resources), previous)

    @classmethod
    def _checked(cls, resources: Iterable[Resource], previous: Snapshot | None = None) -> Snapshot:
        """Check consistency; a type whose resources are all those of ``previous`` keeps its mapping and
        version (no sorting or hashing: after a route change, clusters, endpoints and listeners are as they were)."""
        by_type: dict[str, dict[str, Resource]] = {}
        eds_refs: set[str] = set()
        rds_refs: set[str] = set()
        sds_refs: set[str] = set()
        for resource in resources:
            type_url = resource.type_url
            bucket = by_type.setdefault(type_url, {})
            if resource.name in bucket:
                raise InconsistentSnapshotError(f"duplicate {type_url.rsplit('.', 1)[-1]} {resource.name!r}")
            bucket[resource.name] = resource
            if type_url == CLUSTER:
                eds_refs |= resource.references
                sds_refs |= resource.secret_references
            elif type_url == LISTENER:
                rds_refs |= resource.references
                sds_refs |= resource.secret_references
        problems = []
        # A Secret nothing uses is refused too: private keys go only to the node groups whose listeners need them.
        for kind, refs, type_url, parent in (("ClusterLoadAssignment", eds_refs, ENDPOINT, "cluster"),
                                             ("RouteConfiguration", rds_refs, ROUTE, "listener"),
                                             ("Secret", sds_refs, SECRET, "listener or cluster")):
            present = set(by_type.get(type_url, {}))
            if missing := sorted(refs - present):
                problems.append(f"{kind} referenced but missing: {', '.join(missing)}")
            if orphans := sorted(present - refs):
                problems.append(f"{kind} not referenced by any {parent}: {', '.join(orphans)}")
        if problems:
            raise InconsistentSnapshotError("; ".join(problems))
        frozen: dict[str, Mapping[str, Resource]] = {}
        versions: dict[str, str] = {}
        prior, prior_versions = (previous.resources, previous.versions) if previous is not None else ({}, {})
        for type_url, of_type in by_type.items():
            known = prior.get(type_url)
            if known is not None and len(known) == len(of_type) and all(
                    known.get(name) is resource for name, resource in of_type.items()):
                frozen[type_url], versions[type_url] = known, prior_versions[type_url]
            else:
                frozen[type_url] = MappingProxyType(dict(sorted(of_type.items())))
                versions[type_url] = content_version(frozen[type_url].values())
        return cls(MappingProxyType(frozen), MappingProxyType(versions))

    def of_type(self, type_url: str) -> Mapping[str, Resource]:
        return self.resources.get(type_url, MappingProxyType({}))

    def version(self, type_url: str, names: Iterable[str] | None = None) -> str:
        """The version of a type, or of just ``names`` of it (what a non-wildcard subscriber sees)."""
        if names is None:
            return self.versions.get(type_url, content_version([]))
        requested = frozenset(names)
        version = self._view_versions.get((type_url, requested))
        if version is not None:
            return version
        # Kept under the names that exist: names a client made up change no version and cost no memory.
        of_type = self.of_type(type_url)
        key = (type_url, frozenset(n for n in requested if n in of_type))
        version = self._view_versions.get(key)
        if version is None:
            version = content_version(of_type[n] for n in sorted(key[1]))
            self._view_versions[key] = version
            self._view_names[0] += len(key[1])
            while self._view_names[0] > _VIEW_CACHE_NAMES and len(self._view_versions) > 1:
                evicted = next(iter(self._view_versions))
                self._view_names[0] -= len(evicted[1])
                del self._view_versions[evicted]
        return version

    def changed_names(self, newer: Snapshot) -> dict[str, frozenset[str]]:
        """Per type, the names that were added, removed or changed going from ``self`` to ``newer``."""
        changed = {}
        for type_url in set(self.resources) | set(newer.resources):
            if self.versions.get(type_url) == newer.versions.get(type_url):
                continue
            old, new = self.of_type(type_url), newer.of_type(type_url)
            names = {n for n in set(old) | set(new)
                     if (old[n].version if n in old else None) != (new[n].version if n in new else None)}
            changed[type_url] = frozenset(names)
        return changed


def _type_url(message: Message) -> str:
    return "type.googleapis.com/" + message.DESCRIPTOR.full_name


def content_version(resources: Iterable[Resource]) -> str:
    """A version for a set of resources: a hash of their names and versions, in the order given."""
    digest = hashlib.sha256()
    for resource in resources:
        digest.update(f"{resource.name}\0{resource.version}\0".encode())
    return digest.hexdigest()[:16]


NodeGroup = tuple[str, str]
ChangedNames = Mapping[str, frozenset[str]]


class Watch:
    """A stream's interest in one node group. When a publish touches what it reads, the changed names
    accumulate and ``wake`` is called once, until the stream takes them."""

    def __init__(self, interest: Callable[[ChangedNames], bool], wake: Callable[[], None]) -> None:
        self.interest = interest
        self._wake = wake
        self._changed: dict[str, set[str]] = {}
        self._woken = False

    def notify(self, changed: ChangedNames) -> None:
        for type_url, names in changed.items():
            self._changed.setdefault(type_url, set()).update(names)
        if not self._woken:
            self._woken = True
            self._wake()

    def take(self) -> ChangedNames:
        """The names changed since the last call, per type."""
        changed = {t: frozenset(n) for t, n in self._changed.items()}
        self._changed.clear()
        self._woken = False
        return changed


class SnapshotCache:
    """The latest snapshot per node group. Publishing wakes only the watches whose resources changed."""

    def __init__(self) -> None:
        self._snapshots: dict[NodeGroup, Snapshot] = {}
        self._watches: dict[NodeGroup, set[Watch]] = {}

    def set_snapshot(self, group: NodeGroup, snapshot: Snapshot) -> None:
        previous = self._snapshots.get(group)
        self._snapshots[group] = snapshot
        if previous is None:
            changed: ChangedNames = {t: frozenset(r) for t, r in snapshot.resources.items()}
        else:
            changed = previous.changed_names(snapshot)
            if not changed:
                return
        for watch in self._watches.get(group, ()):
            if previous is None or watch.interest(changed):
                watch.notify(changed)

    def remove(self, group: NodeGroup) -> None:
        self._snapshots.pop(group, None)

    def get(self, group: NodeGroup) -> Snapshot | None:
        return self._snapshots.get(group)

    def groups(self) -> list[NodeGroup]:
        return sorted(self._snapshots)

    def watch(self, group: NodeGroup, interest: Callable[[ChangedNames], bool], wake: Callable[[], None]) -> Watch:
        """Follow ``group``: ``wake`` is called (once until :meth:`Watch.take`) when a publish changes a name
        for which ``interest`` is true."""
        watch = Watch(interest, wake)
        self._watches.setdefault(group, set()).add(watch)
        return watch

    def unwatch(self, group: NodeGroup, watch: Watch) -> None:
        watches = self._watches.get(group)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._watches[group]
