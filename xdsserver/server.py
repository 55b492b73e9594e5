"""ADS over gRPC, state-of-the-world and delta, serving snapshots from a :class:`SnapshotCache`.

Rules that matter to Envoy (see the protocol checklist): the node is cached from the first message,
stale nonces get no answer, NACKs are detected by ``error_detail`` and never answered with the same
config again, LDS/CDS carry full state, EDS/RDS only the names asked for, and types are pushed in
make-before-break order (clusters, endpoints, listeners, routes).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from .cache import NodeGroup, Snapshot, SnapshotCache
from .resources import FULL_STATE_TYPES, PUSH_ORDER, Resource

log = logging.getLogger(__name__)

# Envoy gateways send HTTP/2 keepalive pings (every 30 s in deploy/envoy); grpcio's defaults would
# answer them with a too_many_pings GOAWAY.
KEEPALIVE_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_ping_strikes", 0),
]


def default_node_group(node: base_pb2.Node) -> NodeGroup:
    """``node.cluster`` is the member cluster; ``node.id`` is ``<namespace>/<gateway>/<instance>``."""
    parts = node.id.split("/")
    if not node.cluster or len(parts) != 3 or not all(parts):
        raise ValueError(
            f"node id {node.id!r} in cluster {node.cluster!r} is not <namespace>/<gateway>/<instance> with "
            "node.cluster set to the member cluster ID; fix the gateway's Envoy bootstrap"
        )
    return node.cluster, f"{parts[0]}/{parts[1]}"


@dataclass
class TypeStatus:
    """What one stream knows about one resource type, for the API and for tests."""

    sent_version: str = ""
    acked_version: str = ""
    nacked_version: str = ""
    nack_message: str = ""
    pushes: int = 0


@dataclass
class StreamStatus:
    node_id: str
    group: NodeGroup
    mode: str
    types: dict[str, TypeStatus] = field(default_factory=dict)


@dataclass
class _SotwType:
    names: set[str] | None = None  # None: wildcard
    nonce: str = ""
    sent_version: str = ""
    nacked_version: str = ""


@dataclass
class _DeltaType:
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    known: dict[str, str] = field(default_factory=dict)  # what the client holds (or was last sent)
    told_absent: set[str] = field(default_factory=set)


class AggregatedDiscoveryService(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """The ADS servicer. ``node_group`` maps an Envoy node to the key of its snapshot."""

    def __init__(self, cache: SnapshotCache,
                 node_group: Callable[[base_pb2.Node], NodeGroup] = default_node_group) -> None:
        self.cache = cache
        self.node_group = node_group
        self.streams: dict[int, StreamStatus] = {}
        self._nonces = itertools.count(1)
        self._stream_ids = itertools.count(1)

    # -- shared plumbing -------------------------------------------------------------------------

    async def _open(self, first: Any, context: grpc.aio.ServicerContext, mode: str) -> tuple[int, NodeGroup]:
        try:
            group = self.node_group(first.node)
        except ValueError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        if self.cache.get(group) is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no configuration for node group {group[0]}/{group[1]} (node {first.node.id!r}); "
                "check node.cluster and node.id in the Envoy bootstrap",
            )
        stream_id = next(self._stream_ids)
        self.streams[stream_id] = StreamStatus(first.node.id, group, mode)
        log.info("xds stream opened", extra={"node": first.node.id, "group": group, "mode": mode})
        return stream_id, group

    @staticmethod
    async def _events(request_iterator: AsyncIterator[Any], cache: SnapshotCache, group: NodeGroup,
                      first: Any) -> AsyncIterator[Any]:
        """Requests and snapshot changes, merged; ``None`` stands for "the snapshot changed"."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    queue.put_nowait(request)
            finally:
                queue.put_nowait(done)

        async def watch() -> None:
            while True:
                await cache.changed(group).wait()
                queue.put_nowait(None)

        tasks = [asyncio.create_task(read()), asyncio.create_task(watch())]
        try:
            yield first
            while (item := await queue.get()) is not done:
                yield item
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _nonce(self) -> str:
        return str(next(self._nonces))

    def _type_status(self, stream_id: int, type_url: str) -> TypeStatus:
        return self.streams[stream_id].types.setdefault(type_url, TypeStatus())

    # -- state of the world ----------------------------------------------------------------------

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        stream_id, group = await self._open(first, context, "sotw")
        states: dict[str, _SotwType] = {}
        try:
            async for event in self._events(request_iterator, self.cache, group, first):
                snapshot = self.cache.get(group)
                if snapshot is None:
                    continue
                if event is None:
                    types = [t for t in PUSH_ORDER if t in states] + sorted(set(states) - set(PUSH_ORDER))
                    for type_url in types:
                        response = self._sotw_response(stream_id, snapshot, type_url, states[type_url], False)
                        if response is not None:
                            yield response
                    continue
                response = self._sotw_request(stream_id, snapshot, event, states)
                if response is not None:
                    yield response
        finally:
            self.streams.pop(stream_id, None)

    def _sotw_request(self, stream_id: int, snapshot: Snapshot, request: discovery_pb2.DiscoveryRequest,
                      states: dict[str, _SotwType]) -> discovery_pb2.DiscoveryResponse | None:
        type_url = request.type_url
        state = states.setdefault(type_url, _SotwType())
        if request.response_nonce and request.response_nonce != state.nonce:
            return None  # stale: an answer to a response that was already superseded
        status = self._type_status(stream_id, type_url)
        if request.HasField("error_detail"):
            state.nacked_version = state.sent_version
            status.nacked_version, status.nack_message = state.sent_version, request.error_detail.message
            log.warning("xds NACK", extra={"node": self.streams[stream_id].node_id, "type_url": type_url,
                                           "version": state.sent_version, "error": request.error_detail.message})
        elif request.response_nonce:
            status.acked_version = request.version_info
        wildcard = type_url in FULL_STATE_TYPES and not request.resource_names
        names = None if wildcard else set(request.resource_names)
        new_names = names is not None and state.names is not None and not names <= state.names
        first_ask = not request.response_nonce
        state.names = names
        return self._sotw_response(stream_id, snapshot, type_url, state, first_ask or new_names)

    def _sotw_response(self, stream_id: int, snapshot: Snapshot, type_url: str, state: _SotwType,
                       must_answer: bool) -> discovery_pb2.DiscoveryResponse | None:
        version = snapshot.version(type_url, state.names)
        if not must_answer and version in (state.sent_version, state.nacked_version):
            return None
        of_type = snapshot.of_type(type_url)
        chosen: Iterable[Resource] = (
            of_type.values() if state.names is None else (of_type[n] for n in sorted(state.names) if n in of_type)
        )
        state.nonce, state.sent_version = self._nonce(), version
        status = self._type_status(stream_id, type_url)
        status.sent_version = version
        status.pushes += 1
        return discovery_pb2.DiscoveryResponse(
            version_info=version, type_url=type_url, nonce=state.nonce, resources=[r.packed for r in chosen]
        )

    # -- delta -----------------------------------------------------------------------------------

    async def DeltaAggregatedResources(
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        stream_id, group = await self._open(first, context, "delta")
        states: dict[str, _DeltaType] = {}
        try:
            async for event in self._events(request_iterator, self.cache, group, first):
                snapshot = self.cache.get(group)
                if snapshot is None:
                    continue
                if event is None:
                    types = [t for t in PUSH_ORDER if t in states] + sorted(set(states) - set(PUSH_ORDER))
                    for type_url in types:
                        response = self._delta_response(stream_id, snapshot, type_url, states[type_url], False)
                        if response is not None:
                            yield response
                    continue
                response = self._delta_request(stream_id, snapshot, event, states)
                if response is not None:
                    yield response
        finally:
            self.streams.pop(stream_id, None)

    def _delta_request(self, stream_id: int, snapshot: Snapshot, request: discovery_pb2.DeltaDiscoveryRequest,
                       states: dict[str, _DeltaType]) -> discovery_pb2.DeltaDiscoveryResponse | None:
        type_url = request.type_url
        first_ask = type_url not in states
        state = states.setdefault(type_url, _DeltaType())
        subscribe, unsubscribe = set(request.resource_names_subscribe), set(request.resource_names_unsubscribe)
        if first_ask:
            state.known.update(request.initial_resource_versions)
            state.wildcard = "*" in subscribe or (not subscribe and type_url in FULL_STATE_TYPES)
        if "*" in subscribe:
            state.wildcard = True
        if "*" in unsubscribe:
            state.wildcard = False
        state.names |= subscribe - {"*"}
        for name in unsubscribe - {"*"}:
            state.names.discard(name)
            state.told_absent.discard(name)
            # Still covered by the wildcard: the client dropped it, so it must be sent again.
            state.known.pop(name, None)
        status = self._type_status(stream_id, type_url)
        if request.HasField("error_detail"):
            status.nacked_version, status.nack_message = status.sent_version, request.error_detail.message
            log.warning("xds NACK", extra={"node": self.streams[stream_id].node_id, "type_url": type_url,
                                           "error": request.error_detail.message})
            return None
        if request.response_nonce:
            status.acked_version = status.sent_version
        return self._delta_response(stream_id, snapshot, type_url, state, first_ask)

    def _delta_response(self, stream_id: int, snapshot: Snapshot, type_url: str, state: _DeltaType,
                        must_answer: bool) -> discovery_pb2.DeltaDiscoveryResponse | None:
        of_type = snapshot.of_type(type_url)
        wanted = (set(of_type) if state.wildcard else set()) | state.names
        updated = [of_type[n] for n in sorted(wanted) if n in of_type and state.known.get(n) != of_type[n].version]
        removed = sorted(
            {n for n in state.known if n not in of_type or n not in wanted}
            | {n for n in state.names if n not in of_type and n not in state.told_absent}
        )
        if not (updated or removed or must_answer):
            return None
        for resource in updated:
            state.known[resource.name] = resource.version
            state.told_absent.discard(resource.name)
        for name in removed:
            state.known.pop(name, None)
            if name in state.names:
                state.told_absent.add(name)
        status = self._type_status(stream_id, type_url)
        status.sent_version = snapshot.version(type_url, None if state.wildcard else state.names)
        status.pushes += 1
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=status.sent_version,
            type_url=type_url,
            nonce=self._nonce(),
            resources=[
                discovery_pb2.Resource(name=r.name, version=r.version, resource=r.packed) for r in updated
            ],
            removed_resources=removed,
        )


class XdsServer:
    """A grpc.aio server carrying the ADS service, with Envoy-compatible keepalive settings."""

    def __init__(self, cache: SnapshotCache,
                 node_group: Callable[[base_pb2.Node], NodeGroup] = default_node_group) -> None:
        self.ads = AggregatedDiscoveryService(cache, node_group)
        self._server: grpc.aio.Server | None = None

    async def start(self, address: str = "127.0.0.1:0") -> int:
        """Listen on ``address`` (host:port, port 0 picks one) and return the bound port."""
        self._server = grpc.aio.server(options=KEEPALIVE_OPTIONS)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self.ads, self._server)
        port = self._server.add_insecure_port(address)
        await self._server.start()
        return int(port)

    async def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
