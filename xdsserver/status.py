"""What the server knows about each connected Envoy, per resource type: the Python status API.

Streams update these records as they push and as Envoy ACKs or NACKs; the admin API and tests read
them. Rejections are also kept after a stream closes, so an operator can see why a node refused config.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from .cache import NodeGroup


@dataclass
class TypeStatus:
    """One resource type on one stream."""

    sent_version: str = ""
    acked_version: str = ""
    nacked_version: str = ""
    nack_message: str = ""
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

    def of_type(self, type_url: str) -> TypeStatus:
        return self.types.setdefault(type_url, TypeStatus())


@dataclass(frozen=True)
class Rejection:
    """A NACK: which node refused which version of which type, and Envoy's reason."""

    at: float
    node_id: str
    group: NodeGroup
    type_url: str
    version: str
    message: str


class StatusRegistry:
    """Connected nodes and recent rejections."""

    def __init__(self, keep_rejections: int = 256) -> None:
        self._streams: dict[int, NodeStatus] = {}
        self._rejections: deque[Rejection] = deque(maxlen=keep_rejections)

    def open(self, stream_id: int, status: NodeStatus) -> None:
        self._streams[stream_id] = status

    def close(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    def reject(self, rejection: Rejection) -> None:
        self._rejections.append(rejection)

    def nodes(self) -> list[NodeStatus]:
        """Every connected stream, oldest first."""
        return [self._streams[k] for k in sorted(self._streams)]

    def rejections(self) -> list[Rejection]:
        return list(self._rejections)
