"""The Load Reporting Service: a Python client playing Envoy over loopback, then a real Envoy reporting the
traffic it proxied to two local backends."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import load_report_pb2
from envoy.service.load_stats.v3 import lrs_pb2
from google.protobuf import duration_pb2
from prometheus_client import generate_latest

from mcgw.app.echo import FAULT_PATH, make_app
from mcgw.dataplane.process import EnvoyProcess
from mcgw.support.netutil import free_port
from tests.e2e.testbed.pki import CertificateAuthority
from tests.xdsserver.conftest import (
    GROUP,
    NODE,
    TLS_NAME,
    StartServer,
    XdsHarness,
    client_credentials,
    server_tls,
)
from tests.xdsserver.resources_fixture import HCM, gateway_resources
from xdsserver import (
    ClusterLoad,
    LoadReport,
    LoadReporting,
    LocalityLoad,
    NodeGroup,
    Snapshot,
    SnapshotCache,
    XdsLimits,
    XdsServer,
    spiffe_id,
)

METHOD = "/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats"
WEST = ("west", "infra/gw")
WEST_NODE = base_pb2.Node(id="infra/gw/0", cluster="west")


def _serialise(request: lrs_pb2.LoadStatsRequest | bytes) -> bytes:
    return request if isinstance(request, bytes) else request.SerializeToString()


class LoadStream:
    """One LRS stream: send requests (or raw bytes), await responses, or prove that none came."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.requests: asyncio.Queue[lrs_pb2.LoadStatsRequest | bytes] = asyncio.Queue()
        self.responses: asyncio.Queue[lrs_pb2.LoadStatsResponse | grpc.aio.AioRpcError] = asyncio.Queue()

        async def generate() -> AsyncIterator[lrs_pb2.LoadStatsRequest | bytes]:
            while True:
                yield await self.requests.get()

        call = channel.stream_stream(METHOD, request_serializer=_serialise,
                                     response_deserializer=lrs_pb2.LoadStatsResponse.FromString)
        self.call = call(generate())
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self.call:
                self.responses.put_nowait(response)
        except grpc.aio.AioRpcError as error:
            self.responses.put_nowait(error)

    def send(self, request: lrs_pb2.LoadStatsRequest | bytes) -> None:
        self.requests.put_nowait(request)

    async def recv(self, within: float = 5.0) -> lrs_pb2.LoadStatsResponse:
        item = await asyncio.wait_for(self.responses.get(), within)
        if isinstance(item, Exception):
            raise item
        return item

    async def refusal(self, within: float = 5.0) -> grpc.aio.AioRpcError:
        """The error that ends the stream, skipping responses before it."""
        while True:
            try:
                await self.recv(within)
            except grpc.aio.AioRpcError as error:
                return error

    async def assert_silent(self, seconds: float = 0.3) -> None:
        await asyncio.sleep(seconds)
        assert self.responses.empty(), f"unexpected response: {self.responses.get_nowait()}"

    def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def locality_stats(sub_zone: str, priority: int = 0, succeeded: int = 0, errors: int = 0, in_progress: int = 0,
                   issued: int = 0, region: str = "", zone: str = "") -> load_report_pb2.UpstreamLocalityStats:
    return load_report_pb2.UpstreamLocalityStats(
        locality=base_pb2.Locality(region=region, zone=zone, sub_zone=sub_zone), priority=priority,
        total_successful_requests=succeeded, total_error_requests=errors, total_requests_in_progress=in_progress,
        total_issued_requests=issued)


def cluster_stats(name: str, *localities: load_report_pb2.UpstreamLocalityStats, interval: float = 1.0,
                  dropped: int = 0, service_name: str = "") -> load_report_pb2.ClusterStats:
    return load_report_pb2.ClusterStats(cluster_name=name, cluster_service_name=service_name,
                                        upstream_locality_stats=localities, total_dropped_requests=dropped,
                                        load_report_interval=_duration(interval))


def report(*clusters: load_report_pb2.ClusterStats) -> lrs_pb2.LoadStatsRequest:
    return lrs_pb2.LoadStatsRequest(cluster_stats=clusters)


@dataclasses.dataclass
class Lrs:
    """A server with load reporting, the reports its sink received, and LRS streams to it."""

    harness: XdsHarness
    reports: list[LoadReport]
    streams: list[LoadStream]

    @property
    def server(self) -> XdsServer:
        return self.harness.server

    def open(self, node: base_pb2.Node | None = NODE) -> LoadStream:
        """A stream that has sent its first request (with ``node``, as Envoy does)."""
        stream = LoadStream(self.harness.channel)
        self.streams.append(stream)
        if node is not None:
            stream.send(lrs_pb2.LoadStatsRequest(node=node))
        return stream

    def metrics(self) -> str:
        return generate_latest(self.server.metrics.registry).decode()

    async def reported(self, count: int, within: float = 5.0) -> list[LoadReport]:
        deadline = time.monotonic() + within
        while len(self.reports) < count:
            assert time.monotonic() < deadline, f"{len(self.reports)} reports reached the sink, not {count}"
            await asyncio.sleep(0.02)
        return self.reports


StartLrs = Callable[..., Any]


@pytest.fixture
async def start_lrs(start_xds: StartServer) -> AsyncIterator[StartLrs]:
    """Start an XdsServer with load reporting; ``sink`` wraps the list the reports go to."""
    opened: list[Lrs] = []

    async def start(clusters: Callable[[NodeGroup], Any] | None = lambda group: ["c1"], interval: float = 1.0,
                    sink: Callable[[list[LoadReport]], Callable[[LoadReport], None]] | None = None,
                    **server_args: Any) -> Lrs:
        reports: list[LoadReport] = []
        reporting = LoadReporting(sink(reports) if sink else reports.append, clusters, interval)
        lrs = Lrs(await start_xds(load_reporting=reporting, **server_args), reports, [])
        opened.append(lrs)
        return lrs

    yield start
    for lrs in opened:
        for stream in lrs.streams:
            stream.close()


@pytest.fixture
async def lrs(start_lrs: StartLrs) -> Lrs:
    result: Lrs = await start_lrs()
    return result


async def test_the_first_response_names_the_clusters_and_the_interval(start_lrs: StartLrs) -> None:
    asked: list[NodeGroup] = []

    def clusters(group: NodeGroup) -> list[str]:
        asked.append(group)
        return ["serviceimport/shop/cart/80", "serviceimport/shop/api/443", "serviceimport/shop/cart/80"]

    lrs = await start_lrs(clusters=clusters, interval=0.25)
    first = await lrs.open().recv()
    assert list(first.clusters) == ["serviceimport/shop/api/443", "serviceimport/shop/cart/80"]
    assert not first.send_all_clusters
    assert first.load_reporting_interval.ToNanoseconds() == 250_000_000
    assert asked == [GROUP]


async def test_the_interval_is_one_second_unless_configured_and_none_asks_for_every_cluster(
    start_lrs: StartLrs,
) -> None:
    lrs = await start_lrs(clusters=None, interval=LoadReporting(print).interval)
    first = await lrs.open().recv()
    assert first.send_all_clusters
    assert list(first.clusters) == []
    assert first.load_reporting_interval.ToNanoseconds() == 1_000_000_000


async def test_reports_reach_the_sink_converted_exactly(lrs: Lrs) -> None:
    stream = lrs.open()
    await stream.recv()
    opened = time.monotonic()
    stream.send(report(
        cluster_stats("serviceimport/shop/cart/80",
                      locality_stats("east", 0, succeeded=17, errors=2, in_progress=4, issued=23, region="eu",
                                     zone="eu-1"),
                      locality_stats("west", 1, succeeded=5, in_progress=1, issued=6),
                      interval=1.5, dropped=3, service_name="cart-eds"),
        cluster_stats("c1", interval=0.25),
        cluster_stats("c2", interval=0.25, dropped=2),
    ))
    (received,) = await lrs.reported(1)
    assert dataclasses.replace(received, received_at=0.0, interval_s=0.0) == LoadReport(
        node_id="infra/gw/0", group=GROUP, received_at=0.0, interval_s=0.0, clusters=(
            ClusterLoad("serviceimport/shop/cart/80", "cart-eds", dropped=3, interval_s=1.5, localities=(
                LocalityLoad("eu", "eu-1", "east", priority=0, succeeded=17, errors=2, in_progress=4, issued=23),
                LocalityLoad("", "", "west", priority=1, succeeded=5, errors=0, in_progress=1, issued=6),
            )),
            ClusterLoad("c2", "", dropped=2, interval_s=0.25, localities=()),
        ), idle=("c1",))
    assert opened <= received.received_at <= time.monotonic()
    assert 0 < received.interval_s <= received.received_at - opened + 1.0
    # The next report's interval is the time since this one, on the server's clock.
    await asyncio.sleep(0.2)
    stream.send(report(cluster_stats("c1")))
    second = (await lrs.reported(2))[1]
    assert 0.2 <= second.interval_s <= second.received_at - received.received_at + 1e-6
    assert 'xds_lrs_reports_total 2.0' in lrs.metrics()


async def test_the_same_server_serves_ads_and_lrs(lrs: Lrs) -> None:
    from tests.xdsserver.conftest import names_of
    from xdsserver import CLUSTER

    ads = lrs.harness.open()
    ads.send(node=NODE, type_url=CLUSTER)
    assert names_of(await ads.recv()) == ["c1"]
    assert list((await lrs.open().recv()).clusters) == ["c1"]


async def test_mtls_refuses_reports_from_another_identity(start_lrs: StartLrs, ca: CertificateAuthority) -> None:
    lrs = await start_lrs(tls=server_tls(ca, mutual=True), credentials=client_credentials(ca, spiffe_id(WEST)),
                          channel_options=TLS_NAME)
    lrs.harness.cache.set_snapshot(WEST, Snapshot.from_messages(gateway_resources()))
    stream = lrs.open()  # a west gateway reporting as east's
    stream.send(report(cluster_stats("c1", locality_stats("east", succeeded=1))))
    refused = await stream.refusal()
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "spiffe://mcgw/west/infra/gw" in (refused.details() or "")
    assert "east/infra/gw" in (refused.details() or "")
    assert lrs.reports == []
    assert 'xds_denied_streams_total{reason="identity"} 1.0' in lrs.metrics()
    # Its own group is served.
    assert list((await lrs.open(WEST_NODE).recv()).clusters) == ["c1"]


async def test_mtls_accepts_the_identity_of_the_node_group(start_lrs: StartLrs, ca: CertificateAuthority) -> None:
    lrs = await start_lrs(tls=server_tls(ca, mutual=True), credentials=client_credentials(ca, spiffe_id(GROUP)),
                          channel_options=TLS_NAME)
    stream = lrs.open()
    await stream.recv()
    stream.send(report(cluster_stats("c1", locality_stats("east", succeeded=1))))
    (received,) = await lrs.reported(1)
    assert received.group == GROUP


@pytest.mark.parametrize(("node", "code", "detail"), [
    (base_pb2.Node(id="infra/other/0", cluster="east"), grpc.StatusCode.NOT_FOUND, "east/infra/other"),
    (base_pb2.Node(id="just-a-name", cluster="east"), grpc.StatusCode.INVALID_ARGUMENT, "<namespace>/<gateway>"),
    (base_pb2.Node(), grpc.StatusCode.INVALID_ARGUMENT, "node.cluster"),
])
async def test_an_unknown_or_malformed_node_gets_a_clear_error(
    lrs: Lrs, node: base_pb2.Node, code: grpc.StatusCode, detail: str,
) -> None:
    refused = await lrs.open(node).refusal()
    assert refused.code() == code
    assert detail in (refused.details() or "")
    assert lrs.server.lrs is not None
    assert lrs.server.lrs.streams() == 0


async def test_a_sink_that_raises_does_not_end_the_stream(start_lrs: StartLrs,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    def failing_once(reports: list[LoadReport]) -> Callable[[LoadReport], None]:
        def sink(received: LoadReport) -> None:
            reports.append(received)
            if len(reports) == 1:
                raise RuntimeError("the tracker is broken")
        return sink

    lrs = await start_lrs(sink=failing_once)
    stream = lrs.open()
    await stream.recv()
    with caplog.at_level(logging.WARNING, logger="xdsserver.lrs"):
        stream.send(report(cluster_stats("c1", locality_stats("east", succeeded=1))))
        stream.send(report(cluster_stats("c1", locality_stats("east", succeeded=2))))
        first, second = await lrs.reported(2)
    assert [r.clusters[0].localities[0].succeeded for r in (first, second)] == [1, 2]
    assert any("load report sink failed" in r.getMessage() and "infra/gw/0" in r.getMessage()
               and r.exc_info is not None for r in caplog.records)
    exposition = lrs.metrics()
    assert 'xds_lrs_report_errors_total{reason="sink"} 1.0' in exposition
    assert 'xds_lrs_reports_total 2.0' in exposition
    assert "xds_lrs_streams 1.0" in exposition
    assert lrs.server.lrs is not None
    assert lrs.server.lrs.update_interest(interval=0.5) == 1
    assert (await stream.recv()).load_reporting_interval.ToNanoseconds() == 500_000_000


async def test_update_interest_reaches_the_open_streams_of_the_group(start_lrs: StartLrs) -> None:
    asked = {GROUP: ["c1"], WEST: ["w1"]}
    lrs = await start_lrs(clusters=lambda group: asked[group], interval=2.0)
    lrs.harness.cache.set_snapshot(WEST, Snapshot.from_messages(gateway_resources()))
    service = lrs.server.lrs
    assert service is not None
    east, west = lrs.open(), lrs.open(WEST_NODE)
    assert list((await east.recv()).clusters) == ["c1"]
    assert list((await west.recv()).clusters) == ["w1"]

    asked[GROUP] = ["c2", "c1"]
    assert service.update_interest(GROUP) == 1
    changed = await east.recv()
    assert (list(changed.clusters), changed.load_reporting_interval.ToNanoseconds()) == (["c1", "c2"], 2_000_000_000)
    await west.assert_silent()

    assert service.update_interest(interval=0.5) == 2  # every group, at a new interval
    for stream in (east, west):
        assert (await stream.recv()).load_reporting_interval.ToNanoseconds() == 500_000_000
    assert service.update_interest() == 0  # nothing changed: nothing is sent
    await east.assert_silent()
    await west.assert_silent()
    # A stream opened now is asked at the new interval, and reports keep flowing on the others.
    assert (await lrs.open(base_pb2.Node(id="infra/gw/1", cluster="east")).recv()
            ).load_reporting_interval.ToNanoseconds() == 500_000_000
    east.send(report(cluster_stats("c2", locality_stats("east", succeeded=3))))
    (received,) = await lrs.reported(1)
    assert received.clusters[0].name == "c2"


async def test_clusters_that_cannot_be_named_refuse_the_stream_until_they_can(start_lrs: StartLrs) -> None:
    ready = {"clusters": False}

    def clusters(group: NodeGroup) -> list[str]:
        if not ready["clusters"]:
            raise LookupError("the controller has not translated yet")
        return ["c1"]

    lrs = await start_lrs(clusters=clusters)
    refused = await lrs.open().refusal()
    assert refused.code() == grpc.StatusCode.UNAVAILABLE
    ready["clusters"] = True
    stream = lrs.open()
    assert list((await stream.recv()).clusters) == ["c1"]
    # A failure on update keeps what the open stream was asked for.
    ready["clusters"] = False
    assert lrs.server.lrs is not None
    assert lrs.server.lrs.update_interest() == 0
    await stream.assert_silent()


async def test_garbage_gets_a_clear_error(lrs: Lrs) -> None:
    first = lrs.open(node=None)
    first.send(b"\xff\xff\xff\xff\xff")
    refused = await first.refusal()
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a LoadStatsRequest" in (refused.details() or "")

    later = lrs.open()
    await later.recv()
    later.send(b"\x12\x05\x0a\x03")  # cluster_stats that ends mid-field
    refused = await later.refusal()
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "4 bytes" in (refused.details() or "")
    assert 'xds_lrs_report_errors_total{reason="malformed"} 2.0' in lrs.metrics()
    assert lrs.reports == []


async def test_a_negative_interval_is_malformed(lrs: Lrs) -> None:
    """Only a cluster with traffic has its interval read: an idle one's is never used."""
    stream = lrs.open()
    await stream.recv()
    stream.send(report(cluster_stats("c1", interval=-1.0)))
    stream.send(report(cluster_stats("c1", locality_stats("east"), interval=-1.0)))
    refused = await stream.refusal()
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "negative load_report_interval" in (refused.details() or "")


async def test_a_report_with_too_many_localities_or_clusters_is_refused(start_lrs: StartLrs) -> None:
    lrs = await start_lrs(limits=XdsLimits(max_report_localities=4, max_report_clusters=3))
    stream = lrs.open()
    await stream.recv()
    stream.send(report(cluster_stats("a", *(locality_stats(f"z{i}") for i in range(3))),
                       cluster_stats("b", *(locality_stats(f"z{i}") for i in range(2)))))
    refused = await stream.refusal()
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "5 localities in one load report; at most 4" in (refused.details() or "")

    stream = lrs.open()
    await stream.recv()
    stream.send(report(*(cluster_stats(name) for name in "abcd")))
    refused = await stream.refusal()
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "4 clusters" in (refused.details() or "")
    exposition = lrs.metrics()
    assert 'xds_limited_streams_total{limit="report_localities"} 1.0' in exposition
    assert 'xds_limited_streams_total{limit="report_clusters"} 1.0' in exposition
    assert lrs.reports == []


async def test_reports_faster_than_the_interval_end_the_stream_after_the_burst(start_lrs: StartLrs) -> None:
    lrs = await start_lrs(interval=60.0, limits=XdsLimits(max_report_burst=3))
    stream = lrs.open()
    await stream.recv()
    for _ in range(4):  # the burst, and one more: none still in flight when the server closes the stream
        stream.send(report(cluster_stats("c1")))
    refused = await stream.refusal()
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "faster than one per 60 s" in (refused.details() or "")
    assert len(lrs.reports) == 3
    assert 'xds_limited_streams_total{limit="report_rate"} 1.0' in lrs.metrics()


async def test_reports_at_the_interval_are_never_refused(start_lrs: StartLrs) -> None:
    lrs = await start_lrs(interval=0.05, limits=XdsLimits(max_report_burst=1))
    stream = lrs.open()
    await stream.recv()
    for _ in range(12):
        await asyncio.sleep(0.06)
        stream.send(report(cluster_stats("c1")))
    await lrs.reported(12)
    await stream.assert_silent(0.1)


async def test_a_stream_without_a_first_request_is_closed(start_lrs: StartLrs) -> None:
    lrs = await start_lrs(limits=XdsLimits(first_request_timeout=0.3))
    refused = await lrs.open(node=None).refusal()
    assert refused.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_open_streams_are_counted_and_a_closed_one_leaves_nothing(lrs: Lrs) -> None:
    stream = lrs.open()
    await stream.recv()
    assert "xds_lrs_streams 1.0" in lrs.metrics()
    stream.close()
    assert lrs.server.lrs is not None
    for _ in range(100):
        if lrs.server.lrs.streams() == 0:
            break
        await asyncio.sleep(0.02)
    assert lrs.server.lrs.streams() == 0
    assert "xds_lrs_streams 0.0" in lrs.metrics()
    assert lrs.server.lrs.update_interest(interval=2.0) == 0


async def test_without_load_reporting_the_service_is_not_offered(xds: XdsHarness) -> None:
    stream = LoadStream(xds.channel)
    stream.send(lrs_pb2.LoadStatsRequest(node=NODE))
    try:
        refused = await stream.refusal()
    finally:
        stream.close()
    assert refused.code() == grpc.StatusCode.UNIMPLEMENTED
    assert xds.server.lrs is None


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoadReporting(print, interval=0)


# --- a real Envoy -------------------------------------------------------------------------------------------

ENVOY_INTERVAL = 0.5


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _endpoint(port: int, health: str = "HEALTHY") -> dict[str, Any]:
    return {"endpoint": {"address": _address(port)}, "health_status": health}


def _bootstrap(admin: int, listen: int, xds: int, east: int, west: int, nowhere: int) -> dict[str, Any]:
    """A static listener to cluster ``backend``: locality east (priority 0, healthy), north (priority 0,
    unhealthy: it halves priority 0's health, so part of the traffic spills over) and west (priority 1).
    Load reports go to the xDS server over gRPC, as a gateway's bootstrap sends them."""
    router = {"name": "envoy.filters.http.router",
              "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    manager = {
        "@type": HCM, "stat_prefix": "ingress", "http_filters": [router],
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
    }
    http2 = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}
    return {
        "node": {"id": "infra/gw/0", "cluster": "east"},
        "admin": {"address": _address(admin)},
        "cluster_manager": {"load_stats_config": {
            "api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only": True,
            "grpc_services": [{"envoy_grpc": {"cluster_name": "mcgw-xds"}}]}},
        "static_resources": {
            "listeners": [{"name": "ingress", "address": _address(listen), "filter_chains": [{"filters": [
                {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}]}],
            "clusters": [
                {"name": "backend", "type": "STATIC", "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
                 "load_assignment": {"cluster_name": "backend", "endpoints": [
                     {"locality": {"region": "eu", "zone": "eu-1", "sub_zone": "east"}, "priority": 0,
                      "lb_endpoints": [_endpoint(east)]},
                     {"locality": {"region": "eu", "zone": "eu-1", "sub_zone": "north"}, "priority": 0,
                      "lb_endpoints": [_endpoint(nowhere, "UNHEALTHY")]},
                     {"locality": {"region": "eu", "zone": "eu-2", "sub_zone": "west"}, "priority": 1,
                      "lb_endpoints": [_endpoint(west)]},
                 ]}},
                {"name": "mcgw-xds", "type": "STATIC", "connect_timeout": "1s",
                 "typed_extension_protocol_options": http2,
                 "load_assignment": {"cluster_name": "mcgw-xds",
                                     "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(xds)}}]}]}},
            ],
        },
    }


async def _serve_echo(cluster: str) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(make_app(cluster, "infra", f"echo-{cluster}"), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def _totals(reports: list[LoadReport]) -> dict[tuple[str, int], collections.Counter[str]]:
    """Per (sub_zone, priority) of cluster ``backend``, the counts summed over every report."""
    totals: dict[tuple[str, int], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for received in reports:
        for cluster in received.clusters:
            for locality in cluster.localities:
                totals[(locality.sub_zone, locality.priority)].update(
                    succeeded=locality.succeeded, errors=locality.errors, issued=locality.issued)
    return dict(totals)


async def test_envoy_reports_the_requests_it_sent_per_locality() -> None:
    reports: list[LoadReport] = []
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, Snapshot.from_messages(gateway_resources()))  # the node group is a known one
    server = XdsServer(cache, load_reporting=LoadReporting(reports.append, lambda group: ["backend"],
                                                           ENVOY_INTERVAL))
    xds_port = await server.start("127.0.0.1:0")
    east_runner, east = await _serve_echo("east")
    west_runner, west = await _serve_echo("west")
    listen, admin = free_port(), free_port()
    envoy: EnvoyProcess | None = None
    with tempfile.TemporaryDirectory(prefix="mcgw-lrs-") as workdir:
        try:
            envoy = EnvoyProcess("envoy-lrs", _bootstrap(admin, listen, xds_port, east, west, free_port()), admin,
                                 Path(workdir))
            await asyncio.to_thread(envoy.wait_live, 30)
            # Envoy counts from the response that asks for the cluster: traffic starts after its first report.
            deadline = time.monotonic() + 15
            while not reports:
                assert time.monotonic() < deadline, f"no load report from Envoy:\n{envoy.log_tail()}"
                await asyncio.sleep(0.05)
            first = reports[0]
            assert (first.node_id, first.group) == ("infra/gw/0", GROUP)
            assert first.interval_s >= ENVOY_INTERVAL * 0.8  # Envoy reports after the first interval only

            answered: collections.Counter[tuple[str, int]] = collections.Counter()
            async with aiohttp.ClientSession() as client:
                async def send(count: int) -> None:
                    for _ in range(count):
                        async with client.get(f"http://127.0.0.1:{listen}/lrs") as response:
                            answered[((await response.json())["cluster"], response.status)] += 1

                await send(60)
                # The second half goes into later reports: the totals are sums over several intervals.
                before, deadline = len(reports), time.monotonic() + 10
                while not any(cluster.localities for received in reports[before:] for cluster in received.clusters):
                    assert time.monotonic() < deadline, "the first half of the traffic was never reported"
                    await asyncio.sleep(0.05)
                # West now fails: its requests are errors in its locality.
                async with client.post(f"http://127.0.0.1:{west}{FAULT_PATH}", json={"mode": "503"}) as response:
                    assert response.status == 200
                await send(60)
            sent_at = time.monotonic()
            east_ok, west_ok, west_failed = answered[("east", 200)], answered[("west", 200)], answered[("west", 503)]
            assert east_ok + west_ok + west_failed == 120
            assert min(east_ok, west_ok, west_failed) > 0, f"traffic did not reach both priorities: {answered}"

            expected = {("east", 0): collections.Counter(succeeded=east_ok, issued=east_ok),
                        ("west", 1): collections.Counter(succeeded=west_ok, errors=west_failed,
                                                         issued=west_ok + west_failed)}
            # Every request is in the report of the interval it completed in: two intervals after the last.
            deadline = sent_at + 2 * ENVOY_INTERVAL + 5
            while _totals(reports) != expected:
                assert time.monotonic() < deadline, f"reported {_totals(reports)}, sent {expected}"
                await asyncio.sleep(0.05)
            await asyncio.sleep(2 * ENVOY_INTERVAL)
            assert _totals(reports) == expected  # and nothing is counted twice

            assert sum(1 for received in reports if any(c.localities for c in received.clusters)) >= 2
            clusters = [cluster for received in reports for cluster in received.clusters]
            reported = {cluster.name for cluster in clusters} | {name for received in reports for name in received.idle}
            assert reported == {"backend"}  # only what the server asked for
            assert all(ENVOY_INTERVAL * 0.5 <= cluster.interval_s <= ENVOY_INTERVAL * 6 for cluster in clusters)
            localities = [locality for cluster in clusters for locality in cluster.localities]
            assert {(loc.region, loc.zone, loc.sub_zone) for loc in localities} == {("eu", "eu-1", "east"),
                                                                                  ("eu", "eu-2", "west")}
            assert localities[-1].in_progress == 0
            assert 'xds_lrs_streams 1.0' in generate_latest(server.metrics.registry).decode()
        finally:
            if envoy is not None:
                envoy.stop()
            await server.stop(0)
            await east_runner.cleanup()
            await west_runner.cleanup()
