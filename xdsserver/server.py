"""ADS over gRPC (state of the world and delta): transport, identity and stream lifecycle.

The protocol rules live in :mod:`xdsserver.streams`; this module reads requests, wakes streams when
their resources change, checks who is asking, and writes responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from prometheus_client import CollectorRegistry

from .admission import Admission, NodeGrouper, default_node_group
from .auth import Authorizer, ServerTls, spiffe_authorizer
from .cache import SnapshotCache
from .limits import XdsLimits
from .lrs import LoadReporting, LoadReportingService
from .metrics import XdsMetrics
from .status import NodeStatus, StatusRegistry
from .streams import DeltaStream, SotwStream, StreamLimitError, StreamObserver

__all__ = ["AggregatedDiscoveryService", "NodeGrouper", "XdsServer", "default_node_group"]

log = logging.getLogger(__name__)

# Envoy gateways send HTTP/2 keepalive pings (every 30 s in deploy/envoy); grpcio's defaults would
# answer a ping without data more often than every 5 minutes with a too_many_pings GOAWAY. The server
# pings too: an Envoy whose pod (and network namespace) vanished sends no FIN, and its stream would
# otherwise count as a connected, current Envoy until TCP gives up, many minutes later.
KEEPALIVE_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_ping_strikes", 0),
]

_ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


def _already_serialised(response: bytes) -> bytes:
    return response


class AggregatedDiscoveryService:
    """The ADS servicer over a :class:`SnapshotCache`. It yields responses already serialised (see ``wire``)."""

    def __init__(self, cache: SnapshotCache, node_group: NodeGrouper = default_node_group,
                 metrics: XdsMetrics | None = None, authorizer: Authorizer | None = None,
                 observer: StreamObserver | None = None, limits: XdsLimits | None = None) -> None:
        self.cache = cache
        self.limits = limits or XdsLimits()
        self.observer = observer
        self.metrics = metrics or XdsMetrics()
        self.status = StatusRegistry()
        self.admission = Admission(cache, node_group, self.metrics, authorizer, self.limits)
        self._stream_ids = itertools.count(1)

    async def _admit(self, first: Any, context: grpc.aio.ServicerContext, mode: str) -> NodeStatus:
        """Check the node and the caller's identity; abort the RPC with a precise reason otherwise."""
        group = await self.admission.admit(first.node, context)
        return NodeStatus(first.node.id, first.node.cluster, group, mode, context.peer())

    async def _serve(self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext,
                     mode: str) -> AsyncIterator[Any]:
        limits = self.limits
        requests_in = aiter(request_iterator)
        first = await self.admission.first_request(requests_in, context)
        if first is None:
            return
        node = await self._admit(first, context, mode)
        stream_type = SotwStream if mode == "sotw" else DeltaStream
        stream: SotwStream | DeltaStream = stream_type(node, self.status, self.metrics, self.observer, limits)
        stream_id = next(self._stream_ids)
        # Requests take a slot before they are queued: with none free, reading stops and HTTP/2 flow control
        # holds the client back. The wake-up and the end take no slot; each is queued at most once.
        requests: asyncio.Queue[Any] = asyncio.Queue()
        slots = asyncio.Semaphore(limits.max_queued_requests)
        done, changed = object(), object()
        watch = self.cache.watch(node.group, stream.interested, lambda: requests.put_nowait(changed))

        async def read() -> None:
            try:
                async for request in requests_in:
                    await slots.acquire()
                    node.queued_requests += 1
                    requests.put_nowait(request)
            finally:
                requests.put_nowait(done)

        self.status.open(stream_id, node)
        self.metrics.streams.labels(mode).inc()
        log.info("xds stream opened: node %s group %s/%s mode %s peer %s", node.node_id, *node.group, mode,
                 node.peer)
        tasks = [asyncio.create_task(read())]
        try:
            event: Any = first
            while event is not done:
                names_changed = watch.take() if event is changed else None
                snapshot = self.cache.get(node.group)
                if snapshot is not None:
                    try:
                        responses = (stream.on_snapshot(snapshot, names_changed) if names_changed is not None
                                     else stream.on_request(snapshot, event))
                    except StreamLimitError as error:
                        self.metrics.limited.labels(error.limit).inc()
                        log.warning("xds stream refused: node %s group %s/%s: %s", node.node_id, *node.group, error)
                        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
                    for response in responses:
                        yield response
                event = await requests.get()
                if event is not changed and event is not done:
                    node.queued_requests -= 1
                    slots.release()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.cache.unwatch(node.group, watch)
            self.status.close(stream_id)
            self.metrics.streams.labels(mode).dec()
            log.info("xds stream closed: node %s group %s/%s", node.node_id, *node.group)

    async def stream_aggregated_resources(
        self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for response in self._serve(request_iterator, context, "sotw"):
            yield response

    async def delta_aggregated_resources(
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[bytes]:
        async for response in self._serve(request_iterator, context, "delta"):
            yield response

    def handler(self) -> grpc.GenericRpcHandler:
        """The ADS service with pass-through response serialisation."""
        return grpc.method_handlers_generic_handler(_ADS_SERVICE, {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self.stream_aggregated_resources,
                request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=_already_serialised,
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self.delta_aggregated_resources,
                request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                response_serializer=_already_serialised,
            ),
        })


class XdsServer:
    """A grpc.aio server carrying ADS, with Envoy-compatible keepalive and optional (m)TLS; with
    ``load_reporting``, also the Load Reporting Service (LRS, see :mod:`xdsserver.lrs`) on the same port,
    behind the same admission: Envoy reports there with the identity it reads its configuration with.

    When ``tls`` verifies clients (``TlsConfig`` with ``client_ca``, or ``RotatingTls``), every stream must
    present a client certificate whose SPIFFE URI names the node group it asks for (see
    :mod:`xdsserver.auth`; ``spiffe_authorizer()`` unless ``authorizer`` is given), in SotW and delta alike.
    ``max_connection_age`` closes connections after that many seconds (plus ``max_connection_age_grace``)
    so Envoys rebalance across replicas.
    ``limits`` bounds what one client can make the server hold (see :class:`XdsLimits`).
    """

    def __init__(self, cache: SnapshotCache, node_group: NodeGrouper = default_node_group,
                 registry: CollectorRegistry | None = None, tls: ServerTls | None = None,
                 authorizer: Authorizer | None = None, max_connection_age: float | None = None,
                 max_connection_age_grace: float = 5.0, observer: StreamObserver | None = None,
                 limits: XdsLimits | None = None, load_reporting: LoadReporting | None = None) -> None:
        if tls is not None and tls.verifies_clients and authorizer is None:
            authorizer = spiffe_authorizer()
        self.metrics = XdsMetrics(registry)
        self.limits = limits or XdsLimits()
        self.ads = AggregatedDiscoveryService(cache, node_group, self.metrics, authorizer, observer, self.limits)
        self.lrs = (LoadReportingService(load_reporting, self.ads.admission, self.metrics, self.limits)
                    if load_reporting is not None else None)
        self.tls = tls
        self.options = [*KEEPALIVE_OPTIONS, ("grpc.max_receive_message_length", self.limits.max_request_bytes)]
        if max_connection_age is not None:
            self.options += [("grpc.max_connection_age_ms", int(max_connection_age * 1000)),
                             ("grpc.max_connection_age_grace_ms", int(max_connection_age_grace * 1000))]
        self._server: grpc.aio.Server | None = None

    @property
    def status(self) -> StatusRegistry:
        """Connected nodes with their per-type ACK/NACK state, and recent rejections."""
        return self.ads.status

    async def start(self, address: str = "127.0.0.1:0") -> int:
        """Listen on ``address`` (host:port; port 0 picks one) and return the bound port."""
        self._server = grpc.aio.server(options=self.options)
        handlers = [self.ads.handler(), *([self.lrs.handler()] if self.lrs is not None else [])]
        self._server.add_generic_rpc_handlers(handlers)
        if self.tls is None:
            port = self._server.add_insecure_port(address)
        else:
            port = self._server.add_secure_port(address, self.tls.credentials())
        await self._server.start()
        return int(port)

    async def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
