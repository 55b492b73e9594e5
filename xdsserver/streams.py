"""The protocol state of one ADS stream, free of gRPC: requests and snapshots in, responses out.

Keeping the state machines pure makes every protocol rule testable on its own, and leaves the
server with nothing but transport.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2

from . import wire
from .cache import ChangedNames, Snapshot, content_version
from .limits import XdsLimits
from .metrics import XdsMetrics, type_label
from .resources import CLUSTER, ENDPOINT, FULL_STATE_TYPES, LISTENER, PUSH_ORDER, ROUTE, SECRET, Resource
from .status import NodeStatus, Rejection, StatusRegistry

log = logging.getLogger(__name__)

# Removals go last, parents first: a listener before the routes it names, a cluster before its endpoints.
REMOVAL_ORDER = (LISTENER, ROUTE, CLUSTER, ENDPOINT, SECRET)
_nonces = itertools.count(1)
_SERVED_TYPES = frozenset(PUSH_ORDER)
# Pushes remembered for push→ACK latency and for naming what a NACK rejected; a client that never ACKs
# must not make the list grow.
_KEEP_PUSHES = 64
# Rejections logged per stream before only every hundredth is: a client can NACK as fast as it likes.
_LOG_REJECTIONS = 10


class StreamLimitError(Exception):
    """A client went past one of :class:`XdsLimits`; the server closes the stream with RESOURCE_EXHAUSTED."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit  # a fixed name, used as a metric label

# Called as observer(event, node, type_url, size) with event "push", "ack" or "nack": a hook for tracing
# and benchmarks that must not slow the stream down.
StreamObserver = Callable[[str, NodeStatus, str, int], None]


def _ordered(types: Iterable[str], order: tuple[str, ...]) -> list[str]:
    present = set(types)
    return [t for t in order if t in present] + sorted(present - set(order))


class _StreamBase:
    """Status, metrics and nonce bookkeeping shared by both protocol variants."""

    def __init__(self, status: NodeStatus, registry: StatusRegistry, metrics: XdsMetrics,
                 observer: StreamObserver | None = None, limits: XdsLimits | None = None) -> None:
        self.status = status
        self.registry = registry
        self.metrics = metrics
        self.observer = observer
        self.limits = limits or XdsLimits()
        # nonce -> (type, monotonic time, the resources pushed: a reference, never a copy)
        self._pushed_at: dict[str, tuple[str, float, Collection[Resource]]] = {}
        self._unknown_types_answered = 0
        self._rejections = 0

    @staticmethod
    def _nonce() -> str:
        return str(next(_nonces))

    @staticmethod
    def _served(snapshot: Snapshot, type_url: str) -> bool:
        """A type the server keeps state for: one it knows or one the snapshot carries, never one made up."""
        return type_url in _SERVED_TYPES or type_url in snapshot.resources

    def _check_names(self, count: int) -> None:
        if count > self.limits.max_resource_names:
            raise StreamLimitError("resource_names", f"{count} resource names in one request or subscription; "
                                   f"at most {self.limits.max_resource_names} are accepted")

    def _unknown_type(self, type_url: str) -> None:
        """Count a first request for a type the server does not serve; past the limit, refuse the stream."""
        self._unknown_types_answered += 1
        if self._unknown_types_answered > self.limits.max_unknown_types:
            raise StreamLimitError("unknown_types", f"more than {self.limits.max_unknown_types} requests for "
                                   "resource types this server does not serve")
        self.metrics.pushes.labels("unknown").inc()

    def _record_push(self, type_url: str, version: str, nonce: str, size: int,
                     resources: Collection[Resource]) -> None:
        status = self.status.of_type(type_url)
        status.sent_version, status.last_push = version, time.time()
        status.pushes += 1
        status.bytes_sent += size
        label = type_label(type_url)
        self.metrics.pushes.labels(label).inc()
        self.metrics.bytes_sent.labels(label).inc(size)
        self._pushed_at[nonce] = (type_url, time.monotonic(), resources)
        if len(self._pushed_at) > _KEEP_PUSHES:
            del self._pushed_at[next(iter(self._pushed_at))]
        if self.observer is not None:
            self.observer("push", self.status, type_url, size)

    def _record_ack(self, type_url: str, version: str, nonce: str) -> None:
        self.status.of_type(type_url).acked_version = version
        if self.observer is not None:
            self.observer("ack", self.status, type_url, 0)
        if nonce not in self._pushed_at:
            return
        self.metrics.push_to_ack.labels(type_label(type_url)).observe(time.monotonic() - self._pushed_at[nonce][1])
        # Pushes of this type before the ACKed one will never be ACKed on their own (dicts keep push order).
        for pushed in list(self._pushed_at):
            if self._pushed_at[pushed][0] == type_url:
                del self._pushed_at[pushed]
            if pushed == nonce:
                break

    def _record_nack(self, type_url: str, version: str, nonce: str, message: str) -> None:
        """Record and log a rejection as an event: who, which type and version, which resources; of Envoy's
        message (which echoes the rejected resource, keys included) only a sanitised excerpt."""
        pushed = self._pushed_at.get(nonce)  # kept: Envoy may NACK the same response again
        resources: Collection[Resource] = pushed[2] if pushed is not None else ()
        names = tuple(itertools.islice((r.name for r in resources), self.registry.keep_names))
        kept = self.registry.reject(Rejection(time.time(), self.status.node_id, self.status.group, type_url,
                                              version, message, nonce, self.status.cluster, names, len(resources)))
        status = self.status.of_type(type_url)
        status.nacked_version, status.nack_message = version, kept.message
        self.metrics.nacks.labels(type_label(type_url)).inc()
        if self.observer is not None:
            self.observer("nack", self.status, type_url, 0)
        self._rejections += 1
        if self._rejections <= _LOG_REJECTIONS or self._rejections % 100 == 0:
            more = f" ({kept.resource_count} in all)" if kept.resource_count > len(kept.resource_names) else ""
            log.warning("xds rejection %d on this stream: node %s cluster %s rejected %s version %s nonce %s; "
                        "resources %s%s; reason: %s", self._rejections, kept.node_id, kept.cluster,
                        type_label(type_url), version, kept.nonce, ", ".join(kept.resource_names) or "none",
                        more, kept.message)


@dataclass
class _SotwType:
    names: set[str] | None = None  # None: wildcard
    nonce: str = ""
    sent_version: str = ""
    nacked_version: str = ""
    pending: dict[str, dict[str, Resource]] = field(default_factory=dict)  # nonce -> resources sent
    held: dict[str, Resource] = field(default_factory=dict)  # what Envoy last ACKed


class SotwStream(_StreamBase):
    """State of the world: every response carries the full view of its type for this subscriber."""

    def __init__(self, status: NodeStatus, registry: StatusRegistry, metrics: XdsMetrics,
                 observer: StreamObserver | None = None, limits: XdsLimits | None = None) -> None:
        super().__init__(status, registry, metrics, observer, limits)
        self.types: dict[str, _SotwType] = {}

    def interested(self, changed: ChangedNames) -> bool:
        for type_url, state in self.types.items():
            names = changed.get(type_url)
            if names and (state.names is None or names & state.names):
                return True
        return False

    def _view(self, snapshot: Snapshot, type_url: str, state: _SotwType) -> dict[str, Resource]:
        of_type = snapshot.of_type(type_url)
        if state.names is None:
            return dict(of_type)
        return {n: of_type[n] for n in sorted(state.names) if n in of_type}

    def _respond(self, type_url: str, state: _SotwType, resources: Mapping[str, Resource], version: str) -> bytes:
        state.nonce, state.sent_version = self._nonce(), version
        sent = state.pending[state.nonce] = dict(resources)
        response = wire.sotw_response(version, type_url, state.nonce, (r.sotw_field for r in resources.values()))
        self._record_push(type_url, version, state.nonce, len(response), sent.values())
        return response

    def on_request(self, snapshot: Snapshot,
                   request: discovery_pb2.DiscoveryRequest) -> list[bytes]:
        """Answer a request; raises :class:`StreamLimitError` past a limit."""
        type_url = request.type_url
        self._check_names(len(request.resource_names))
        if not self._served(snapshot, type_url):
            if request.response_nonce:
                return []  # an ACK or NACK of the empty answer: nothing is kept to compare it with
            self._unknown_type(type_url)
            return [wire.sotw_response(content_version([]), type_url, self._nonce(), ())]
        state = self.types.setdefault(type_url, _SotwType())
        if request.response_nonce and request.response_nonce != state.nonce:
            return []  # stale: it answers a response that a newer one already superseded
        if request.HasField("error_detail"):
            state.nacked_version = state.sent_version
            state.pending.pop(request.response_nonce, None)
            self._record_nack(type_url, state.sent_version, request.response_nonce, request.error_detail.message)
        elif request.response_nonce:
            state.held = state.pending.pop(request.response_nonce, state.held)
            state.pending.clear()
            self._record_ack(type_url, request.version_info, request.response_nonce)
        wildcard = type_url in FULL_STATE_TYPES and not request.resource_names
        names = None if wildcard else set(request.resource_names)
        newly_asked = names is not None and state.names is not None and not names <= state.names
        first_ask = not request.response_nonce
        state.names = names
        version = snapshot.version(type_url, state.names)
        if not (first_ask or newly_asked) and version in (state.sent_version, state.nacked_version):
            return []
        return [self._respond(type_url, state, self._view(snapshot, type_url, state), version)]

    def on_snapshot(self, snapshot: Snapshot, changed: ChangedNames | None = None) -> list[bytes]:
        """Push what changed, make-before-break: additions in warming order, then removals.

        ``changed`` (names per type since the last call) lets untouched types be skipped; ``None`` checks all.
        A changed cluster that Envoy holds warms anew and waits for its endpoints (15 s, Envoy's initial fetch
        timeout, if none come), so the endpoints are sent again after it even when they did not change.
        """
        responses, removals = [], []
        endpoints_again = False  # a cluster Envoy holds changed: it warms anew, waiting for its endpoints
        for type_url in _ordered(self.types, PUSH_ORDER):
            state = self.types[type_url]
            again = endpoints_again and type_url == ENDPOINT
            if changed is not None and not again:
                names = changed.get(type_url)
                if not names or (state.names is not None and not names & state.names):
                    continue
            view = self._view(snapshot, type_url, state)
            version = snapshot.version(type_url, state.names)
            if version in (state.sent_version, state.nacked_version) and not again:
                continue
            if type_url == CLUSTER:
                before = state.pending.get(state.nonce, state.held)
                endpoints_again = any(name in before and before[name].version != resource.version
                                      for name, resource in view.items())
            stale = {n: r for n, r in state.held.items() if n not in view} if type_url in FULL_STATE_TYPES else {}
            if stale:
                # Keep what is going away until everything that replaces it is in place.
                keep = {**view, **stale}
                responses.append(self._respond(type_url, state, keep, content_version(keep.values())))
                removals.append((type_url, state, view, version))
            else:
                responses.append(self._respond(type_url, state, view, version))
        for type_url, state, view, version in sorted(removals, key=lambda r: REMOVAL_ORDER.index(r[0])):
            responses.append(self._respond(type_url, state, view, version))
        return responses


@dataclass
class _DeltaType:
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    known: dict[str, str] = field(default_factory=dict)  # name -> version the client holds (or was sent)
    told_absent: set[str] = field(default_factory=set)


class DeltaStream(_StreamBase):
    """Incremental xDS: only changed resources, and removals by name."""

    def __init__(self, status: NodeStatus, registry: StatusRegistry, metrics: XdsMetrics,
                 observer: StreamObserver | None = None, limits: XdsLimits | None = None) -> None:
        super().__init__(status, registry, metrics, observer, limits)
        self.types: dict[str, _DeltaType] = {}

    def interested(self, changed: ChangedNames) -> bool:
        for type_url, state in self.types.items():
            names = changed.get(type_url)
            if names and (state.wildcard or not names.isdisjoint(state.names)
                          or any(name in state.known for name in names)):
                return True
        return False

    def on_request(self, snapshot: Snapshot,
                   request: discovery_pb2.DeltaDiscoveryRequest) -> list[bytes]:
        """Answer a request; raises :class:`StreamLimitError` past a limit."""
        type_url = request.type_url
        self._check_names(len(request.resource_names_subscribe) + len(request.resource_names_unsubscribe)
                          + len(request.initial_resource_versions))
        if not self._served(snapshot, type_url):
            if request.response_nonce:
                return []
            self._unknown_type(type_url)
            absent = sorted(set(request.resource_names_subscribe) - {"*"})
            return [wire.delta_response(content_version([]), type_url, self._nonce(), (), absent)]
        first_ask = type_url not in self.types
        state = self.types.setdefault(type_url, _DeltaType())
        subscribe = set(request.resource_names_subscribe)
        unsubscribe = set(request.resource_names_unsubscribe)
        if first_ask:
            state.known.update(request.initial_resource_versions)
            # Legacy wildcard: a first request for LDS/CDS that names nothing.
            state.wildcard = "*" in subscribe or (not subscribe and type_url in FULL_STATE_TYPES)
        if "*" in subscribe:
            state.wildcard = True
        if "*" in unsubscribe:
            state.wildcard = False
            # What only the wildcard covered is the client's to drop; nothing is sent for it.
            state.known = {n: v for n, v in state.known.items() if n in state.names | subscribe}
        state.names |= subscribe - {"*"}
        self._check_names(len(state.names))
        for name in unsubscribe - {"*"}:
            if name in state.names:
                state.names.discard(name)
                state.told_absent.discard(name)
                # The client dropped it; if the wildcard still covers it, it must be sent again.
                state.known.pop(name, None)
        status = self.status.of_type(type_url)
        if request.HasField("error_detail"):
            self._record_nack(type_url, status.sent_version, request.response_nonce, request.error_detail.message)
            return []
        if request.response_nonce:
            self._record_ack(type_url, status.sent_version, request.response_nonce)
        # Only what this request touched can need an answer; publishes reach the stream through on_snapshot.
        if first_ask or "*" in subscribe:
            candidates = None
        else:
            candidates = frozenset((subscribe | unsubscribe) - {"*"})
            if not candidates:
                return []
        updated, removed = self._diff(snapshot, type_url, state, candidates)
        if not (updated or removed or first_ask):
            return []
        return [self._respond(snapshot, type_url, state, updated, removed)]

    def on_snapshot(self, snapshot: Snapshot, changed: ChangedNames | None = None) -> list[bytes]:
        """Updates in warming order, then removals, parents first.

        ``changed`` (names per type since the last call) limits the work to those names; ``None`` checks all.
        A changed cluster that Envoy holds warms anew and waits for its endpoints (15 s, Envoy's initial fetch
        timeout, if none come), so its endpoints are sent again after it even when they did not change.
        """
        responses, removals = [], []
        changed_clusters: frozenset[str] = frozenset()  # clusters Envoy holds that changed: they warm anew
        for type_url in _ordered(self.types, PUSH_ORDER):
            again = changed_clusters if type_url == ENDPOINT else frozenset()
            if changed is not None and type_url not in changed and not again:
                continue
            state = self.types[type_url]
            candidates = None if changed is None else changed.get(type_url, frozenset()) | again
            updated, removed = self._diff(snapshot, type_url, state, candidates)
            if again:
                of_type, fresh = snapshot.of_type(type_url), {resource.name for resource in updated}
                updated += [of_type[name] for name in sorted(again)
                            if name in of_type and name in state.known and name not in fresh]
            if type_url == CLUSTER:
                changed_clusters = frozenset(resource.name for resource in updated if resource.name in state.known)
            if updated:
                responses.append(self._respond(snapshot, type_url, state, updated, []))
            if removed:
                removals.append((type_url, removed))
        for type_url, removed in sorted(removals, key=lambda r: REMOVAL_ORDER.index(r[0])):
            responses.append(self._respond(snapshot, type_url, self.types[type_url], [], removed))
        return responses

    @staticmethod
    def _diff(snapshot: Snapshot, type_url: str, state: _DeltaType,
              candidates: frozenset[str] | None = None) -> tuple[list[Resource], list[str]]:
        """What to send and what to remove, looking only at ``candidates`` when given."""
        of_type = snapshot.of_type(type_url)
        if candidates is None:
            wanted = (set(of_type) if state.wildcard else set()) | state.names
            looked_at = wanted | set(state.known)
        else:
            looked_at = set(candidates)
            wanted = {n for n in looked_at if (state.wildcard and n in of_type) or n in state.names}
        updated = [of_type[n] for n in sorted(wanted) if n in of_type and state.known.get(n) != of_type[n].version]
        removed = {n for n in looked_at if n in state.known and (n not in of_type or n not in wanted)}
        removed |= {n for n in looked_at & state.names if n not in of_type and n not in state.told_absent}
        return updated, sorted(removed)

    def _respond(self, snapshot: Snapshot, type_url: str, state: _DeltaType, updated: list[Resource],
                 removed: list[str]) -> bytes:
        for resource in updated:
            state.known[resource.name] = resource.version
            state.told_absent.discard(resource.name)
        for name in removed:
            state.known.pop(name, None)
            if name in state.names:
                state.told_absent.add(name)
        # Informational only in delta (Envoy tracks per-resource versions): the type's version will do.
        version = snapshot.version(type_url)
        nonce = self._nonce()
        response = wire.delta_response(version, type_url, nonce, (r.delta_field for r in updated), removed)
        self._record_push(type_url, version, nonce, len(response), updated)
        return response

