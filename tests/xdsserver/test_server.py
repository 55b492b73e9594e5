"""ADS protocol rules, with a Python gRPC client playing Envoy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from tests.xdsserver.resources_fixture import gateway_resources
from xdsserver import CLUSTER, ENDPOINT, ROUTE, Snapshot, SnapshotCache, XdsServer

GROUP = ("east", "infra/gw")
NODE = base_pb2.Node(id="infra/gw/0", cluster="east")


class Stream:
    """One ADS stream: send requests, await responses, or prove that none came."""

    def __init__(self, call: Any, requests: asyncio.Queue[Any]) -> None:
        self.call, self.requests = call, requests
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self.call:
                self.responses.put_nowait(response)
        except grpc.aio.AioRpcError as error:
            self.responses.put_nowait(error)

    def send(self, request: Any) -> None:
        self.requests.put_nowait(request)

    async def recv(self, within: float = 5.0) -> Any:
        item = await asyncio.wait_for(self.responses.get(), within)
        if isinstance(item, Exception):
            raise item
        return item

    async def assert_silent(self, seconds: float = 0.3) -> None:
        await asyncio.sleep(seconds)
        assert self.responses.empty(), f"unexpected response: {self.responses.get_nowait()}"

    def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()


@pytest.fixture
async def xds() -> AsyncIterator[tuple[SnapshotCache, grpc.aio.Channel]]:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, Snapshot.from_messages(gateway_resources()))
    server = XdsServer(cache)
    port = await server.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield cache, channel
    await channel.close()
    await server.stop(0)


def _open(channel: grpc.aio.Channel, delta: bool) -> Stream:
    requests: asyncio.Queue[Any] = asyncio.Queue()

    async def generate() -> AsyncIterator[Any]:
        while True:
            yield await requests.get()

    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    call = (stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources)(generate())
    return Stream(call, requests)


async def test_sotw_ack_is_not_answered_and_change_is_pushed(xds: tuple[SnapshotCache, grpc.aio.Channel]) -> None:
    cache, channel = xds
    stream = _open(channel, delta=False)
    stream.send(discovery_pb2.DiscoveryRequest(node=NODE, type_url=CLUSTER))
    first = await stream.recv()
    assert first.nonce
    assert first.type_url == CLUSTER
    assert len(first.resources) == 1
    stream.send(discovery_pb2.DiscoveryRequest(type_url=CLUSTER, version_info=first.version_info,
                                               response_nonce=first.nonce))
    await stream.assert_silent()
    # Only the route changes: a CDS subscriber hears nothing, an RDS subscriber hears the new route.
    stream.send(discovery_pb2.DiscoveryRequest(type_url=ROUTE, resource_names=["r1"]))
    route_v1 = await stream.recv()
    stream.send(discovery_pb2.DiscoveryRequest(type_url=ROUTE, resource_names=["r1"],
                                               version_info=route_v1.version_info, response_nonce=route_v1.nonce))
    cache.set_snapshot(GROUP, Snapshot.from_messages(gateway_resources(header="v2")))
    route_v2 = await stream.recv()
    assert route_v2.type_url == ROUTE
    assert route_v2.version_info != route_v1.version_info
    stream.close()


async def test_sotw_nacked_version_is_never_resent(xds: tuple[SnapshotCache, grpc.aio.Channel]) -> None:
    cache, channel = xds
    stream = _open(channel, delta=False)
    stream.send(discovery_pb2.DiscoveryRequest(node=NODE, type_url=ENDPOINT, resource_names=["c1"]))
    sent = await stream.recv()
    stream.send(discovery_pb2.DiscoveryRequest(
        type_url=ENDPOINT, resource_names=["c1"], response_nonce=sent.nonce,
        error_detail=status_pb2.Status(code=3, message="bad endpoint")))
    await stream.assert_silent()
    # The same content published again is still the NACKed version: silence.
    cache.set_snapshot(GROUP, Snapshot.from_messages(gateway_resources()))
    await stream.assert_silent()
    # New content is sent.
    cache.set_snapshot(GROUP, Snapshot.from_messages(gateway_resources(port=9090)))
    fixed = await stream.recv()
    assert fixed.version_info != sent.version_info
    stream.close()


async def test_sotw_stale_nonce_gets_no_answer(xds: tuple[SnapshotCache, grpc.aio.Channel]) -> None:
    _, channel = xds
    stream = _open(channel, delta=False)
    stream.send(discovery_pb2.DiscoveryRequest(node=NODE, type_url=ROUTE, resource_names=["r1"]))
    first = await stream.recv()
    stream.send(discovery_pb2.DiscoveryRequest(type_url=ROUTE, resource_names=["r1", "r2"], response_nonce="stale"))
    await stream.assert_silent()
    stream.send(discovery_pb2.DiscoveryRequest(type_url=ROUTE, resource_names=["r1", "r2"],
                                               response_nonce=first.nonce, version_info=first.version_info))
    assert (await stream.recv()).nonce != first.nonce
    stream.close()


async def test_unknown_node_gets_clear_error(xds: tuple[SnapshotCache, grpc.aio.Channel]) -> None:
    _, channel = xds
    stream = _open(channel, delta=False)
    stream.send(discovery_pb2.DiscoveryRequest(node=base_pb2.Node(id="infra/other/0", cluster="east"),
                                               type_url=CLUSTER))
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stream.recv()
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert "east/infra/other" in (failure.value.details() or "")


async def test_delta_skips_known_versions_and_reports_missing(xds: tuple[SnapshotCache, grpc.aio.Channel]) -> None:
    cache, channel = xds
    snapshot = cache.get(GROUP)
    assert snapshot is not None
    known = {"c1": snapshot.of_type(ENDPOINT)["c1"].version}
    stream = _open(channel, delta=True)
    stream.send(discovery_pb2.DeltaDiscoveryRequest(
        node=NODE, type_url=ENDPOINT, resource_names_subscribe=["c1", "nope"], initial_resource_versions=known))
    response = await stream.recv()
    assert [r.name for r in response.resources] == []
    assert list(response.removed_resources) == ["nope"]
    stream.send(discovery_pb2.DeltaDiscoveryRequest(type_url=ENDPOINT, response_nonce=response.nonce))
    await stream.assert_silent()
    cache.set_snapshot(GROUP, Snapshot.from_messages(gateway_resources(port=9090)))
    pushed = await stream.recv()
    assert [r.name for r in pushed.resources] == ["c1"]
    stream.close()
