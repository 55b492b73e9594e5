"""What the server knows about each connected Envoy, per resource type: the Python status API.

Streams update these records as they push and as Envoy ACKs or NACKs; the admin API and tests read
them. Rejections are also kept after a stream closes, so an operator can see why a node refused config;
what a client can make the server keep is bounded (nodes, rejections per node, message excerpts), and a
message is reduced to a short excerpt without key material, because Envoy's rejection text echoes the
rejected resource, private keys included.
"""

from __future__ import annotations

import heapq
import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace

from .cache import NodeGroup

EXCERPT_CHARS = 256
# Node ids and names kept after a stream closes come from the client: cut them.
_NAME_CHARS = 256
_REDACTED = "[redacted]"
# Looked at before redaction; a longer message is cut first, so the work per rejection is bounded.
_SCAN_CHARS = 8 * EXCERPT_CHARS
_SECRET_FIELD = re.compile(
    r"""((?:private_key|inline_(?:string|bytes)|password|secret|token|key)["']?\s*[:=]?\s*)("[^"]*"?|'[^']*'?|[^\s,}]+)""",
    re.IGNORECASE)
_LONG_BASE64 = re.compile(r"[A-Za-z0-9+/=_-]{40,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def excerpt(message: str, limit: int = EXCERPT_CHARS) -> str:
    """A short, single-line excerpt of a rejection message with PEM blocks, key-like fields and long
    base64 runs replaced: safe to log and to show on a status page."""
    text = message[:_SCAN_CHARS]
    begin = text.find("-----BEGIN")
    if begin >= 0:
        text = text[:begin] + _REDACTED
    text = _SECRET_FIELD.sub(lambda m: m.group(1) + _REDACTED, text)
    text = _LONG_BASE64.sub(_REDACTED, text)
    text = _CONTROL.sub(" ", text)
    if len(text) > limit or len(message) > _SCAN_CHARS:
        text = text[:limit - 1] + "…"
    return text


@dataclass
class TypeStatus:
    """One resource type on one stream."""

    sent_version: str = ""
    acked_version: str = ""
    nacked_version: str = ""
    nack_message: str = ""  # an excerpt (see :func:`excerpt`)
    last_push: float = 0.0  # wall-clock seconds
    pushes: int = 0
    bytes_sent: int = 0


@dataclass
class NodeStatus:
    """One stream from one Envoy."""

    node_id: str
    cluster: str
    group: NodeGroup
    mode: str  # "sotw" or "delta"
    peer: str
    connected_at: float = field(default_factory=time.time)
    types: dict[str, TypeStatus] = field(default_factory=dict)
    queued_requests: int = 0  # read from the client, not yet handled

    def of_type(self, type_url: str) -> TypeStatus:
        return self.types.setdefault(type_url, TypeStatus())


@dataclass(frozen=True)
class Rejection:
    """A NACK: which node refused which version of which type, an excerpt of Envoy's reason, and the
    names of the rejected response's resources (at most :attr:`StatusRegistry.keep_names`)."""

    at: float
    node_id: str
    group: NodeGroup
    type_url: str
    version: str
    message: str
    nonce: str = ""
    cluster: str = ""
    resource_names: tuple[str, ...] = ()
    resource_count: int = 0


@dataclass
class NodeRejections:
    """A node's rejections: counts, and the most recent few."""

    cluster: str
    node_id: str
    count: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    recent: deque[Rejection] = field(default_factory=deque)

    @property
    def last(self) -> Rejection:
        return self.recent[-1]


class StatusRegistry:
    """Connected nodes, and each node's recent rejections (bounded in nodes, entries and size)."""

    def __init__(self, keep_rejections: int = 8, keep_nodes: int = 1024, keep_names: int = 16) -> None:
        self.keep_rejections = keep_rejections
        self.keep_nodes = keep_nodes
        self.keep_names = keep_names
        self._streams: dict[int, NodeStatus] = {}
        self._rejected: OrderedDict[tuple[str, str], NodeRejections] = OrderedDict()

    def open(self, stream_id: int, status: NodeStatus) -> None:
        self._streams[stream_id] = status

    def close(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    def reject(self, rejection: Rejection) -> Rejection:
        """Keep a bounded copy of ``rejection`` (message excerpt, cut names) and return it."""
        cluster = (rejection.cluster or rejection.group[0])[:_NAME_CHARS]
        kept = replace(rejection, message=excerpt(rejection.message), node_id=rejection.node_id[:_NAME_CHARS],
                       cluster=cluster, nonce=rejection.nonce[:_NAME_CHARS],
                       resource_names=tuple(n[:_NAME_CHARS] for n in rejection.resource_names[:self.keep_names]),
                       resource_count=max(rejection.resource_count, len(rejection.resource_names)))
        key = (kept.cluster, kept.node_id)
        node = self._rejected.pop(key, None) or NodeRejections(kept.cluster, kept.node_id,
                                                                recent=deque(maxlen=self.keep_rejections))
        self._rejected[key] = node  # most recently rejecting last
        while len(self._rejected) > self.keep_nodes:
            self._rejected.popitem(last=False)
        node.count += 1
        node.by_type[kept.type_url] = node.by_type.get(kept.type_url, 0) + 1
        node.recent.append(kept)
        return kept

    def nodes(self) -> list[NodeStatus]:
        """Every connected stream, oldest first."""
        return [self._streams[k] for k in sorted(self._streams)]

    def rejected_nodes(self) -> list[NodeRejections]:
        """Nodes that rejected configuration, by cluster and node id."""
        return [self._rejected[key] for key in sorted(self._rejected)]

    def rejections(self) -> list[Rejection]:
        """Every kept rejection, oldest first."""
        return list(heapq.merge(*(node.recent for node in self._rejected.values()), key=lambda r: r.at))
