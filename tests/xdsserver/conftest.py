"""A Python gRPC client that plays Envoy against a real ``XdsServer`` on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from tests.e2e.testbed.pki import CertificateAuthority
from tests.xdsserver.resources_fixture import gateway_resources
from xdsserver import Snapshot, SnapshotCache, TlsConfig, XdsServer

GROUP = ("east", "infra/gw")
NODE = base_pb2.Node(id="infra/gw/0", cluster="east")
# The server certificate's name, which clients connecting to 127.0.0.1 check.
TLS_NAME = [("grpc.ssl_target_name_override", "mcgw-xds.test")]


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki", "xds-test-ca")


def server_tls(ca: CertificateAuthority, mutual: bool) -> TlsConfig:
    """The server's TLS; ``mutual``: clients must present a certificate from ``ca``."""
    server = ca.issue("xds", "mcgw-xds", dns=("mcgw-xds.test",), server=True)
    return TlsConfig(server.cert, server.key, ca.cert_path if mutual else None)


def client_credentials(ca: CertificateAuthority, spiffe: str | None) -> grpc.ChannelCredentials:
    """Trust in ``ca``; with ``spiffe``, a client certificate carrying that URI SAN."""
    if spiffe is None:
        return grpc.ssl_channel_credentials(root_certificates=ca.cert_path.read_bytes())
    client = ca.issue("client", "gateway", uris=(spiffe,), client=True)
    return grpc.ssl_channel_credentials(ca.cert_path.read_bytes(), client.key.read_bytes(), client.cert.read_bytes())


class Stream:
    """One ADS stream: send requests, await responses, or prove that none came."""

    def __init__(self, channel: grpc.aio.Channel, delta: bool) -> None:
        self.delta = delta
        self.requests: asyncio.Queue[Any] = asyncio.Queue()
        self.responses: asyncio.Queue[Any] = asyncio.Queue()

        async def generate() -> AsyncIterator[Any]:
            while True:
                yield await self.requests.get()

        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self.call = (stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources)(generate())
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self.call:
                self.responses.put_nowait(response)
        except grpc.aio.AioRpcError as error:
            self.responses.put_nowait(error)

    def send(self, **fields: Any) -> None:
        fields = {**fields}
        error = fields.pop("nack", None)
        if error:
            fields["error_detail"] = status_pb2.Status(code=3, message=error)
        cls = discovery_pb2.DeltaDiscoveryRequest if self.delta else discovery_pb2.DiscoveryRequest
        self.requests.put_nowait(cls(**fields))

    async def recv(self, within: float = 5.0) -> Any:
        item = await asyncio.wait_for(self.responses.get(), within)
        if isinstance(item, Exception):
            raise item
        return item

    async def recv_all(self, count: int) -> list[Any]:
        return [await self.recv() for _ in range(count)]

    async def assert_silent(self, seconds: float = 0.3) -> None:
        await asyncio.sleep(seconds)
        assert self.responses.empty(), f"unexpected response: {self.responses.get_nowait()}"

    def ack(self, response: Any, names: list[str] | None = None) -> None:
        """ACK ``response`` the way Envoy does."""
        if self.delta:
            self.send(type_url=response.type_url, response_nonce=response.nonce)
        else:
            self.send(type_url=response.type_url, version_info=response.version_info,
                      response_nonce=response.nonce, resource_names=names or [])

    def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()


def names_of(response: Any) -> list[str]:
    """Resource names in a SotW or delta response."""
    from xdsserver.loader import message_from_dict  # noqa: F401 - registers the message types
    from xdsserver.resources import resource_name

    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return [r.name for r in response.resources]
    names = []
    for packed in response.resources:
        names.append(resource_name(_unpack(packed)))
    return names


def _unpack(packed: any_pb2.Any) -> Any:
    from google.protobuf import symbol_database

    message = symbol_database.Default().GetSymbol(packed.type_url.rsplit("/", 1)[-1])()
    packed.Unpack(message)
    return message


@dataclass
class XdsHarness:
    cache: SnapshotCache
    server: XdsServer
    channel: grpc.aio.Channel
    streams: list[Stream]

    def open(self, delta: bool = False) -> Stream:
        stream = Stream(self.channel, delta)
        self.streams.append(stream)
        return stream

    def publish(self, **kwargs: Any) -> None:
        self.cache.set_snapshot(GROUP, Snapshot.from_messages(gateway_resources(**kwargs)))


StartServer = Callable[..., Awaitable[XdsHarness]]


@pytest.fixture
async def start_xds() -> AsyncIterator[StartServer]:
    """Start an XdsServer (keyword arguments go to it) with the default gateway snapshot published."""
    harnesses: list[XdsHarness] = []

    async def start(channel_options: list[tuple[str, Any]] | None = None,
                    credentials: grpc.ChannelCredentials | None = None, target_host: str = "127.0.0.1",
                    **server_args: Any) -> XdsHarness:
        cache = SnapshotCache()
        cache.set_snapshot(GROUP, Snapshot.from_messages(gateway_resources()))
        server = XdsServer(cache, **server_args)
        port = await server.start("127.0.0.1:0")
        target = f"{target_host}:{port}"
        channel = (grpc.aio.secure_channel(target, credentials, options=channel_options) if credentials
                   else grpc.aio.insecure_channel(target, options=channel_options))
        harness = XdsHarness(cache, server, channel, [])
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        for stream in harness.streams:
            stream.close()
        await harness.channel.close()
        await harness.server.stop(0)


@pytest.fixture
async def xds(start_xds: StartServer) -> XdsHarness:
    return await start_xds()
