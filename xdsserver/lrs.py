"""The Load Reporting Service (LRS): Envoy tells its management server, per cluster and locality, the
requests it completed, failed and holds in flight.

Envoy opens ``StreamLoadStats`` with its node; the server answers with the clusters to report and the
interval; from then on Envoy sends one report per interval (only for the clusters asked for, only after
the first interval, only localities that saw traffic). Each report reaches the owner's sink as plain frozen
data (:class:`LoadReport`); no proto leaves this module. Most clusters of most reports carry nothing (Envoy
reports every cluster asked for, traffic or not): those become a bare name, which keeps a report's cost on
the server proportional to the traffic it describes. The owner can change what is asked for on open
streams with :meth:`LoadReportingService.update_interest`.

Streams are admitted exactly as ADS streams are (:mod:`xdsserver.admission`). Reports are handled as they
are read, one at a time, so nothing queues up behind a slow or chatty client; what one report may carry
and how often reports may come are bounded (:class:`XdsLimits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from envoy.config.endpoint.v3 import load_report_pb2
from envoy.service.load_stats.v3 import lrs_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, message_factory
from google.protobuf.message import DecodeError, Message

from .admission import Admission
from .cache import NodeGroup
from .limits import XdsLimits
from .metrics import XdsMetrics

log = logging.getLogger(__name__)

_LRS_SERVICE = "envoy.service.load_stats.v3.LoadReportingService"
# Sink failures logged per stream before only every hundredth is: a broken sink fails on every report.
_LOG_SINK_FAILURES = 10


@dataclass(frozen=True, slots=True)
class LocalityLoad:
    """One locality at one priority of a cluster, over the report's interval (``in_progress``: at its end)."""

    region: str
    zone: str
    sub_zone: str
    priority: int
    succeeded: int
    errors: int
    in_progress: int
    issued: int


@dataclass(frozen=True, slots=True)
class ClusterLoad:
    """One cluster in a report. ``interval_s`` is Envoy's own measure of the time its counts cover (a cluster
    asked for anew covers the time since it was asked for); ``dropped`` counts requests Envoy dropped itself."""

    name: str
    service_name: str
    dropped: int
    interval_s: float
    localities: tuple[LocalityLoad, ...]


@dataclass(frozen=True, slots=True)
class LoadReport:
    """One load report of one Envoy. ``received_at`` is ``time.monotonic()`` on arrival; ``interval_s`` is the
    time since the stream's previous report (for the first, since the server asked), on the server's clock.
    ``clusters`` are those with requests (completed, in flight or dropped) in the interval; ``idle`` names the
    clusters reported with none."""

    node_id: str
    group: NodeGroup
    received_at: float
    interval_s: float
    clusters: tuple[ClusterLoad, ...]
    idle: tuple[str, ...] = ()


# Called on the event loop with every report; it must be quick and must not block. What it raises is logged
# and counted (``xds_lrs_report_errors_total{reason="sink"}``) and the stream goes on.
LoadReportSink = Callable[[LoadReport], None]
# The names of the clusters the Envoys of a node group are to report.
ClusterNames = Callable[[NodeGroup], Iterable[str]]


@dataclass(frozen=True)
class LoadReporting:
    """Load reporting on an :class:`~xdsserver.XdsServer`: where reports go, which clusters are asked for
    (``None``: every cluster the Envoy has, with ``send_all_clusters``), and how often Envoy reports."""

    sink: LoadReportSink
    clusters: ClusterNames | None = None
    interval: float = 1.0

    def __post_init__(self) -> None:
        _check_interval(self.interval)


def _check_interval(interval: float) -> None:
    if not interval > 0:
        raise ValueError(f"the load reporting interval must be a positive number of seconds, not {interval!r}")


@dataclass(frozen=True)
class _Interest:
    clusters: tuple[str, ...]
    all_clusters: bool
    interval: float

    def response(self) -> lrs_pb2.LoadStatsResponse:
        interval = duration_pb2.Duration()
        interval.FromNanoseconds(round(self.interval * 1e9))
        return lrs_pb2.LoadStatsResponse(clusters=self.clusters, send_all_clusters=self.all_clusters,
                                         load_reporting_interval=interval)


class _Refusal(Exception):
    """A request that ends the stream: the status code, the reason the client reads, and the metric labels."""

    def __init__(self, code: grpc.StatusCode, message: str, error: str, limit: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.error = error
        self.limit = limit


@dataclass
class _Stream:
    stream_id: int
    node_id: str
    group: NodeGroup
    peer: str
    wanted: _Interest
    allowance: float  # reports the stream may still send ahead of its interval
    refilled_at: float
    last_report_at: float
    sent: _Interest | None = None
    woken: bool = False
    sink_failures: int = 0
    # Interest changes (at most one queued, see ``woken``) and the end of the reader (once): never more than two.
    events: asyncio.Queue[object] = field(default_factory=asyncio.Queue)


@dataclass(frozen=True)
class _Ended:
    refusal: _Refusal | None


_CHANGED = object()


class _Reports(Protocol):
    cluster_stats: Sequence[load_report_pb2.ClusterStats]


def _reports_only() -> type[Message]:
    """A message with LoadStatsRequest's ``cluster_stats`` and nothing else. Envoy repeats its node (some 60 KB,
    its extension list) in every report, whatever ``set_node_on_first_message_only`` says; parsed as this, the
    node is skipped as an unknown field instead of decoded (about ten times faster to decode a report of 50
    clusters). The first request is parsed in full."""
    pool = descriptor_pool.Default()
    name = "xdsserver.lrs.ClusterStatsOnly"
    try:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto(name="xdsserver/lrs_cluster_stats_only.proto",
                                              package="xdsserver.lrs", syntax="proto3",
                                              dependency=["envoy/config/endpoint/v3/load_report.proto"])
    message = file.message_type.add(name="ClusterStatsOnly")
    message.field.add(name="cluster_stats", number=lrs_pb2.LoadStatsRequest.CLUSTER_STATS_FIELD_NUMBER,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
                      type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                      type_name=".envoy.config.endpoint.v3.ClusterStats")
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


_REPORTS_ONLY = _reports_only()


def _seconds(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def _locality(stats: load_report_pb2.UpstreamLocalityStats) -> LocalityLoad:
    where = stats.locality
    return LocalityLoad(where.region, where.zone, where.sub_zone, stats.priority, stats.total_successful_requests,
                        stats.total_error_requests, stats.total_requests_in_progress, stats.total_issued_requests)


def _cluster(stats: load_report_pb2.ClusterStats,
             localities: Iterable[load_report_pb2.UpstreamLocalityStats]) -> ClusterLoad:
    interval = _seconds(stats.load_report_interval)
    if interval < 0:
        raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT,
                       f"cluster {stats.cluster_name!r} reports a negative load_report_interval", "malformed")
    return ClusterLoad(stats.cluster_name, stats.cluster_service_name, stats.total_dropped_requests, interval,
                       tuple(_locality(locality) for locality in localities))


class LoadReportingService:
    """The ``StreamLoadStats`` servicer. :class:`~xdsserver.XdsServer` builds one when given
    :class:`LoadReporting` and serves it on the ADS port, behind the same admission."""

    def __init__(self, reporting: LoadReporting, admission: Admission, metrics: XdsMetrics,
                 limits: XdsLimits) -> None:
        self.sink = reporting.sink
        self.clusters = reporting.clusters
        self._interval = reporting.interval
        self.admission = admission
        self.metrics = metrics
        self.limits = limits
        self._streams: dict[int, _Stream] = {}
        self._stream_ids = itertools.count(1)

    @property
    def interval(self) -> float:
        """Seconds between reports that the server asks of new streams (open ones: see :meth:`update_interest`)."""
        return self._interval

    def streams(self) -> int:
        """Load reporting streams open now."""
        return len(self._streams)

    def _interest(self, group: NodeGroup) -> _Interest:
        if self.clusters is None:
            return _Interest((), True, self._interval)
        return _Interest(tuple(sorted(set(self.clusters(group)))), False, self._interval)

    def update_interest(self, group: NodeGroup | None = None, interval: float | None = None) -> int:
        """Ask the open streams of ``group`` (``None``: of every group) again which clusters to report, and
        with ``interval`` at that interval from now on (new streams too). Each stream whose clusters or
        interval changed is sent a new ``LoadStatsResponse``; returns how many. Call it on the event loop."""
        if interval is not None:
            _check_interval(interval)
            self._interval = interval
        interests: dict[NodeGroup, _Interest] = {}
        told = 0
        for stream in list(self._streams.values()):
            if group is not None and stream.group != group:
                continue
            if stream.group not in interests:
                try:
                    interests[stream.group] = self._interest(stream.group)
                except Exception:
                    log.exception("load reporting: the clusters of node group %s/%s are unknown; its streams keep "
                                  "reporting what they were asked for", *stream.group)
                    interests[stream.group] = stream.wanted
            stream.wanted = interests[stream.group]
            if stream.wanted != stream.sent:
                told += 1
                if not stream.woken:
                    stream.woken = True
                    stream.events.put_nowait(_CHANGED)
        return told

    def _parse(self, raw: bytes) -> lrs_pb2.LoadStatsRequest:
        try:
            return lrs_pb2.LoadStatsRequest.FromString(raw)
        except DecodeError as error:
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT,
                           f"a message of {len(raw)} bytes on this stream is not a LoadStatsRequest: {error}",
                           "malformed") from None

    def _parse_report(self, raw: bytes) -> _Reports:
        """A later request: only its reports are read (the node was the first request's)."""
        try:
            return _REPORTS_ONLY.FromString(raw)  # type: ignore[return-value]
        except DecodeError as error:
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT,
                           f"a message of {len(raw)} bytes on this stream is not a LoadStatsRequest: {error}",
                           "malformed") from None

    def _convert(self, request: _Reports) -> tuple[tuple[ClusterLoad, ...], tuple[str, ...]]:
        """The clusters with traffic, converted, and the names of the idle ones, within the limits."""
        limits = self.limits
        clusters = len(request.cluster_stats)
        if clusters > limits.max_report_clusters:
            raise _Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{clusters} clusters in one load report; at most "
                           f"{limits.max_report_clusters} are accepted", "limit", "report_clusters")
        loaded: list[ClusterLoad] = []
        idle: list[str] = []
        localities = 0
        for stats in request.cluster_stats:
            upstream = stats.upstream_locality_stats
            if not upstream and not stats.total_dropped_requests:
                idle.append(stats.cluster_name)
                continue
            localities += len(upstream)
            if localities > limits.max_report_localities:
                total = sum(len(cluster.upstream_locality_stats) for cluster in request.cluster_stats)
                raise _Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{total} localities in one load report; at "
                               f"most {limits.max_report_localities} are accepted", "limit", "report_localities")
            loaded.append(_cluster(stats, upstream))
        return tuple(loaded), tuple(idle)

    def _spend_allowance(self, stream: _Stream, now: float) -> None:
        interval = stream.sent.interval if stream.sent is not None else self._interval
        burst = self.limits.max_report_burst
        stream.allowance = min(burst, stream.allowance + (now - stream.refilled_at) / interval)
        stream.refilled_at = now
        if stream.allowance < 1:
            raise _Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"load reports arrive faster than one per {interval:g} s (the interval asked for), "
                           f"beyond a burst of {burst}", "limit", "report_rate")
        stream.allowance -= 1

    def _receive(self, stream: _Stream, request: _Reports) -> None:
        """Check, convert and deliver one report; raises :class:`_Refusal` when it must end the stream."""
        now = time.monotonic()
        self._spend_allowance(stream, now)
        loaded, idle = self._convert(request)
        report = LoadReport(stream.node_id, stream.group, now, now - stream.last_report_at, loaded, idle)
        stream.last_report_at = now
        self.metrics.lrs_reports.inc()
        try:
            self.sink(report)
        except Exception:
            self.metrics.lrs_report_errors.labels("sink").inc()
            stream.sink_failures += 1
            if stream.sink_failures <= _LOG_SINK_FAILURES or stream.sink_failures % 100 == 0:
                log.warning("load report sink failed (%d times on this stream): node %s group %s/%s",
                            stream.sink_failures, stream.node_id, *stream.group, exc_info=True)

    async def _read(self, stream: _Stream, requests: AsyncIterator[bytes]) -> None:
        refusal = None
        try:
            async for raw in requests:
                self._receive(stream, self._parse_report(raw))
        except _Refusal as error:
            refusal = error
        finally:
            stream.events.put_nowait(_Ended(refusal))

    async def _refuse(self, stream: _Stream | None, refusal: _Refusal,
                      context: grpc.aio.ServicerContext) -> None:
        self.metrics.lrs_report_errors.labels(refusal.error).inc()
        if refusal.limit:
            self.metrics.limited.labels(refusal.limit).inc()
        if stream is not None:
            log.warning("load reporting stream refused: node %s group %s/%s: %s", stream.node_id, *stream.group,
                        refusal)
        await context.abort(refusal.code, str(refusal))

    async def stream_load_stats(self, request_iterator: AsyncIterator[bytes],
                                context: grpc.aio.ServicerContext) -> AsyncIterator[lrs_pb2.LoadStatsResponse]:
        requests = aiter(request_iterator)
        raw = await self.admission.first_request(requests, context)
        if raw is None:
            return
        try:
            first = self._parse(raw)
        except _Refusal as refusal:
            await self._refuse(None, refusal, context)
            return
        group = await self.admission.admit(first.node, context)
        try:
            wanted = self._interest(group)
        except Exception:
            log.exception("load reporting: the clusters of node group %s/%s are unknown", *group)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the server cannot say yet which clusters to report")
            return
        now = time.monotonic()
        stream = _Stream(next(self._stream_ids), first.node.id, group, context.peer(), wanted,
                         float(self.limits.max_report_burst), now, now)
        self._streams[stream.stream_id] = stream
        self.metrics.lrs_streams.inc()
        log.info("load reporting stream opened: node %s group %s/%s peer %s", stream.node_id, *group, stream.peer)
        reader: asyncio.Task[None] | None = None
        try:
            stream.sent = stream.wanted
            stream.last_report_at = time.monotonic()
            yield stream.sent.response()
            if first.cluster_stats:
                try:
                    self._receive(stream, first)
                except _Refusal as refusal:
                    await self._refuse(stream, refusal, context)
            reader = asyncio.create_task(self._read(stream, requests))
            while True:
                event = await stream.events.get()
                if isinstance(event, _Ended):
                    if event.refusal is not None:
                        await self._refuse(stream, event.refusal, context)
                    return
                stream.woken = False
                if stream.wanted != stream.sent:
                    stream.sent = stream.wanted
                    yield stream.sent.response()
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
            del self._streams[stream.stream_id]
            self.metrics.lrs_streams.dec()
            log.info("load reporting stream closed: node %s group %s/%s", stream.node_id, *group)

    def handler(self) -> grpc.GenericRpcHandler:
        """The LRS service; requests arrive as bytes and are parsed here, so a malformed one gets a clear error."""
        return grpc.method_handlers_generic_handler(_LRS_SERVICE, {
            "StreamLoadStats": grpc.stream_stream_rpc_method_handler(
                self.stream_load_stats,
                response_serializer=lrs_pb2.LoadStatsResponse.SerializeToString,
            ),
        })
