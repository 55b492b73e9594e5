"""The readiness probe of provisioned Envoys means "has mcgw's configuration", checked with real Envoy.

The kubelet asks ``GET /ready`` on the bootstrap's readiness listener; it must not answer 200 while
Envoy waits for its first configuration (however long that takes), and must once it has it. Nothing
but that one request reaches the admin interface.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path

from mcgw.dataplane.bootstrap import read_template
from mcgw.dataplane.process import EnvoyProcess
from mcgw.provisioning import ProxySettings, Target, provisioned_bootstrap
from mcgw.provisioning.bootstrap import XdsTarget
from mcgw.support.netutil import free_port
from tests.xdsserver.resources_fixture import gateway_resources
from xdsserver import Snapshot, SnapshotCache, XdsServer


def _ask(port: int, path: str = "/ready", method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, response.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError as error:
        return 0, str(error)


async def test_ready_only_once_the_first_configuration_arrived(tmp_path: Path) -> None:
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    admin_port, ready_port, listen_port = free_port(), free_port(), free_port()
    target = Target("east", XdsTarget("127.0.0.1", xds_port), read_template())
    bootstrap = provisioned_bootstrap(target, "infra", "gw", ProxySettings(), admin_port=admin_port,
                                      ready_address="127.0.0.1", ready_port=ready_port)
    envoy = EnvoyProcess(f"ready-{ready_port}", bootstrap, admin_port, tmp_path)
    try:
        # No configuration for this Gateway yet: for longer than Envoy's default initial fetch timeout
        # would allow (15 s is too long for a unit test; 6 s covers several xDS retries), never ready.
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert envoy.alive(), envoy.log_tail()
            status, _ = await asyncio.to_thread(_ask, ready_port)
            assert status != 200
            await asyncio.sleep(0.25)
        cache.set_snapshot(("east", "infra/gw"), Snapshot.from_messages(gateway_resources(listen_port=listen_port)))
        deadline = time.monotonic() + 40
        while (answer := await asyncio.to_thread(_ask, ready_port)) != (200, "LIVE"):
            assert time.monotonic() < deadline, f"not ready after the configuration arrived: {answer}"
            await asyncio.sleep(0.2)
        # The readiness listener forwards GET /ready and nothing else to the admin interface.
        assert (await asyncio.to_thread(_ask, ready_port, "/config_dump"))[0] == 404
        assert (await asyncio.to_thread(_ask, ready_port, "/quitquitquit", "POST"))[0] == 404
        assert (await asyncio.to_thread(_ask, ready_port, "/ready", "POST"))[0] == 404
        assert envoy.alive()
    finally:
        envoy.stop()
        await server.stop(0)


async def test_an_empty_configuration_makes_envoy_ready_too(tmp_path: Path) -> None:
    """A Gateway whose listeners are all invalid is still provisioned; its Envoys get an empty
    configuration and must turn Ready (the conformance suite waits for every pod of its namespace)."""
    import yaml

    from mcgw.objects.model import Gateway, parse_object
    from mcgw.runtime.pipeline import translate_cluster

    documents = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
         "spec": {"controllerName": "mcgw.io/gateway-controller"}},
        yaml.safe_load("""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: mcgw
  listeners: [{name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: missing}]}}]
"""),
    ]
    objects = [parse_object(d, f"document {i}") for i, d in enumerate(documents)]
    result = translate_cluster("east", objects, {("infra", "gw"): ["198.18.0.10"]})
    assert next(o for o in objects if isinstance(o, Gateway)).spec.listeners[0].tls is not None
    assert ("infra", "gw") in result.resources
    assert not result.resources[("infra", "gw")]
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    admin_port, ready_port = free_port(), free_port()
    target = Target("east", XdsTarget("127.0.0.1", xds_port), read_template())
    bootstrap = provisioned_bootstrap(target, "infra", "gw", ProxySettings(), admin_port=admin_port,
                                      ready_address="127.0.0.1", ready_port=ready_port)
    envoy = EnvoyProcess(f"empty-{ready_port}", bootstrap, admin_port, tmp_path)
    try:
        cache.set_snapshot(("east", "infra/gw"), result.snapshot(("infra", "gw"), None))
        deadline = time.monotonic() + 40
        while (answer := await asyncio.to_thread(_ask, ready_port)) != (200, "LIVE"):
            assert envoy.alive(), envoy.log_tail()
            assert time.monotonic() < deadline, f"not ready with an empty configuration: {answer}"
            await asyncio.sleep(0.2)
    finally:
        envoy.stop()
        await server.stop(0)
