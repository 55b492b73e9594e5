"""SDS over ADS: Secrets named by listeners are served in SotW and delta, and a Secret's new content is
pushed alone, leaving listeners as they were."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from tests.xdsserver.conftest import GROUP, NODE, StartServer, names_of
from tests.xdsserver.resources_fixture import HCM, ROUTER, eds_cluster, endpoints, route
from xdsserver import LISTENER, SECRET, Snapshot, message_from_dict

TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
ADS = {"ads": {}, "resource_api_version": "V3"}


def _https_listener(secret: str) -> Message:
    return message_from_dict({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "l1",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10443}},
        "filter_chains": [{
            "filters": [{"name": "hcm", "typed_config": {
                "@type": HCM, "stat_prefix": "t", "rds": {"route_config_name": "r1", "config_source": ADS},
                "http_filters": [{"name": "router", "typed_config": {"@type": ROUTER}}]}}],
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": TLS, "common_tls_context": {"tls_certificate_sds_secret_configs": [
                    {"name": secret, "sds_config": ADS}]}}}}],
    })


def _secret(name: str, key: str) -> Message:
    return message_from_dict({"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                              "name": name, "tls_certificate": {"certificate_chain": {"inline_string": "CERT"},
                                                                "private_key": {"inline_string": key}}})


def _snapshot(key: str) -> Snapshot:
    return Snapshot.from_messages([eds_cluster("c1"), endpoints("c1"), _https_listener("secret/infra/cert"),
                                   route("r1", "c1"), _secret("secret/infra/cert", key)])


def _secret_key(response: Any) -> str:
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

    packed = response.resources[0]
    message = secret_pb2.Secret()
    (packed.resource if hasattr(packed, "resource") else packed).Unpack(message)
    return str(message.tls_certificate.private_key.inline_string)


async def test_sotw_serves_secrets_by_name_and_pushes_a_rotation_alone(start_xds: StartServer) -> None:
    xds = await start_xds()
    xds.cache.set_snapshot(GROUP, _snapshot("KEY1"))
    stream = xds.open()
    stream.send(node=NODE, type_url=LISTENER)
    listeners = await stream.recv()
    stream.ack(listeners)
    stream.send(type_url=SECRET, resource_names=["secret/infra/cert"])
    secrets = await stream.recv()
    assert names_of(secrets) == ["secret/infra/cert"]
    assert _secret_key(secrets) == "KEY1"
    stream.ack(secrets, ["secret/infra/cert"])
    xds.cache.set_snapshot(GROUP, _snapshot("KEY2"))
    rotated = await stream.recv()
    assert rotated.type_url == SECRET
    assert _secret_key(rotated) == "KEY2"
    await stream.assert_silent()  # no listener push


async def test_delta_serves_secrets_and_pushes_a_rotation_alone(start_xds: StartServer) -> None:
    xds = await start_xds()
    xds.cache.set_snapshot(GROUP, _snapshot("KEY1"))
    stream = xds.open(delta=True)
    stream.send(node=NODE, type_url=LISTENER)
    stream.ack(await stream.recv())
    stream.send(type_url=SECRET, resource_names_subscribe=["secret/infra/cert"])
    secrets = await stream.recv()
    assert names_of(secrets) == ["secret/infra/cert"]
    stream.ack(secrets)
    xds.cache.set_snapshot(GROUP, _snapshot("KEY2"))
    rotated = await stream.recv()
    assert rotated.type_url == SECRET
    assert names_of(rotated) == ["secret/infra/cert"]
    assert _secret_key(rotated) == "KEY2"
    await stream.assert_silent()
