"""TLS, mTLS identity checks, keepalive tolerance, connection age, and what operators can observe."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from prometheus_client import generate_latest

from tests.e2e.testbed.pki import CertificateAuthority
from tests.xdsserver.conftest import (
    NODE,
    TLS_NAME,
    StartServer,
    XdsHarness,
    client_credentials,
    names_of,
    server_tls,
)
from xdsserver import CLUSTER, ENDPOINT, spiffe_id


async def test_tls_serves_config(start_xds: StartServer, ca: CertificateAuthority) -> None:
    harness = await start_xds(tls=server_tls(ca, mutual=False), credentials=client_credentials(ca, None),
                              channel_options=TLS_NAME)
    stream = harness.open()
    stream.send(node=NODE, type_url=CLUSTER)
    assert names_of(await stream.recv()) == ["c1"]


async def test_mtls_accepts_the_identity_of_the_node_group(start_xds: StartServer, ca: CertificateAuthority) -> None:
    identity = spiffe_id(("east", "infra/gw"))
    assert identity == "spiffe://mcgw/east/infra/gw"
    harness = await start_xds(tls=server_tls(ca, mutual=True), credentials=client_credentials(ca, identity),
                              channel_options=TLS_NAME)
    stream = harness.open()
    stream.send(node=NODE, type_url=CLUSTER)
    assert names_of(await stream.recv()) == ["c1"]


async def test_mtls_refuses_another_clusters_config(start_xds: StartServer, ca: CertificateAuthority) -> None:
    west_identity = spiffe_id(("west", "infra/gw"))
    harness = await start_xds(tls=server_tls(ca, mutual=True), credentials=client_credentials(ca, west_identity),
                              channel_options=TLS_NAME)
    stream = harness.open()
    stream.send(node=NODE, type_url=CLUSTER)  # a west gateway asking for east's config
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stream.recv()
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "east/infra/gw" in (refused.value.details() or "")
    assert "spiffe://mcgw/west/infra/gw" in (refused.value.details() or "")


async def test_mtls_refuses_a_client_without_certificate(start_xds: StartServer, ca: CertificateAuthority) -> None:
    harness = await start_xds(tls=server_tls(ca, mutual=True), credentials=client_credentials(ca, None),
                              channel_options=TLS_NAME)
    stream = harness.open()
    stream.send(node=NODE, type_url=CLUSTER)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stream.recv()
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake itself fails


async def test_frequent_keepalive_pings_do_not_earn_a_goaway(start_xds: StartServer) -> None:
    # Much more often than Envoy's 30 s: grpcio's defaults would close this connection with too_many_pings.
    pings = [("grpc.keepalive_time_ms", 200), ("grpc.keepalive_permit_without_calls", 1),
             ("grpc.http2.max_pings_without_data", 0), ("grpc.keepalive_timeout_ms", 1000)]
    harness = await start_xds(channel_options=pings)
    stream = harness.open()
    stream.send(node=NODE, type_url=ENDPOINT, resource_names=["c1"])
    stream.ack(await stream.recv(), ["c1"])
    await asyncio.sleep(3)
    harness.publish(port=9090)
    assert names_of(await stream.recv()) == ["c1"]


async def test_max_connection_age_closes_streams_so_envoys_rebalance(start_xds: StartServer) -> None:
    harness = await start_xds(max_connection_age=0.5, max_connection_age_grace=0.5)
    stream = harness.open()
    stream.send(node=NODE, type_url=CLUSTER)
    await stream.recv()
    with pytest.raises(grpc.aio.AioRpcError) as closed:
        await stream.recv(within=15)
    assert closed.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_status_api_and_metrics_show_pushes_acks_and_nacks(xds: XdsHarness) -> None:
    stream = xds.open()
    stream.send(node=NODE, type_url=CLUSTER)
    clusters = await stream.recv()
    stream.ack(clusters)
    stream.send(type_url=ENDPOINT, resource_names=["c1"])
    endpoints = await stream.recv()
    stream.send(type_url=ENDPOINT, resource_names=["c1"], response_nonce=endpoints.nonce, nack="no such port")
    await stream.assert_silent()

    (node,) = xds.server.status.nodes()
    assert (node.node_id, node.cluster, node.group, node.mode) == ("infra/gw/0", "east", ("east", "infra/gw"), "sotw")
    assert node.types[CLUSTER].acked_version == clusters.version_info
    assert node.types[CLUSTER].bytes_sent == clusters.ByteSize()
    assert node.types[CLUSTER].last_push > 0
    assert node.types[ENDPOINT].nacked_version == endpoints.version_info
    assert node.types[ENDPOINT].nack_message == "no such port"

    exposition = generate_latest(xds.server.metrics.registry).decode()
    assert 'xds_streams{mode="sotw"} 1.0' in exposition
    assert 'xds_pushes_total{type="Cluster"} 1.0' in exposition
    assert 'xds_nacks_total{type="ClusterLoadAssignment"} 1.0' in exposition
    assert 'xds_push_ack_seconds_count{type="Cluster"} 1.0' in exposition
    assert f'xds_sent_bytes_total{{type="Cluster"}} {float(clusters.ByteSize())}' in exposition

    stream.close()
    for _ in range(50):
        if not xds.server.status.nodes():
            break
        await asyncio.sleep(0.05)
    assert xds.server.status.nodes() == []
    assert 'xds_streams{mode="sotw"} 0.0' in generate_latest(xds.server.metrics.registry).decode()
    assert [r.message for r in xds.server.status.rejections()] == ["no such port"]


async def test_denied_streams_are_counted_by_reason(xds: XdsHarness) -> None:
    stream = xds.open()
    stream.send(node=base_pb2.Node(id="infra/unknown/0", cluster="east"), type_url=CLUSTER)
    with pytest.raises(grpc.aio.AioRpcError):
        await stream.recv()
    assert 'xds_denied_streams_total{reason="unknown_group"} 1.0' in generate_latest(
        xds.server.metrics.registry).decode()
