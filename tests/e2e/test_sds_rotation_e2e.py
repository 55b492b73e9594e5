"""Certificate rotation through SDS, end to end: ``mcgw run`` on a test-bed cluster, a real Envoy, a real
Kubernetes Secret updated under load.

Rotating an HTTPS listener's Secret under 200 requests/s (each a new TLS handshake) fails no request,
leaves the Envoy listener untouched (``listener_manager`` stats and the listener's config_dump version
as they were) and new handshakes from a Python ``ssl`` client see the new certificate.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes.aio import client, config

from mcgw.app.config import load_run_config
from mcgw.app.run import Controller
from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget
from mcgw.dataplane.process import EnvoyProcess
from mcgw.support.netutil import free_port
from tests.e2e.testbed import ClusterSet
from tests.e2e.testbed.load import OpenLoopLoad, failures
from tests.e2e.xds_credentials import host_envoy_tls
from tests.mcgw.certs import self_signed

GW = "gateway.networking.k8s.io"
INFRA, SHOP = "infra-sds", "shop-sds"
HOSTNAME = "sds.example.com"
RATE = 200.0
LISTENER_STATS = ("listener_manager.listener_added", "listener_manager.listener_modified",
                  "listener_manager.listener_removed", "listener_manager.listener_in_place_updated",
                  "listener_manager.total_listeners_draining", "listener_manager.total_listeners_warming",
                  "listener_manager.lds.update_success", "listener_manager.lds.update_rejected")


def _served_certificate(port: int) -> bytes:
    """The DER certificate a new TLS handshake (Python ``ssl``, SNI ``HOSTNAME``) gets from the gateway."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # self-signed test certificates; the test compares them itself
    with socket.create_connection(("127.0.0.1", port), timeout=3) as raw, \
            context.wrap_socket(raw, server_hostname=HOSTNAME) as tls:
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def _der(data: dict[str, str]) -> bytes:
    return x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"])).public_bytes(
        serialization.Encoding.DER)


def _listener_state(envoy: EnvoyProcess, name: str) -> tuple[dict[str, int], tuple[str, str]]:
    """Envoy's listener_manager figures, and (version_info, last_updated) of the listener ``name``."""
    stats = envoy.stats("listener_manager.")
    figures = {stat: int(stats.get(stat, "0")) for stat in LISTENER_STATS}
    for entry in envoy.config_dump()["configs"]:
        for listener in entry.get("dynamic_listeners", []):
            if listener["name"] == name:
                active = listener["active_state"]
                return figures, (active["version_info"], active["last_updated"])
    raise AssertionError(f"no active listener {name} in Envoy's config_dump")


def _secret_versions(envoy: EnvoyProcess) -> dict[str, str]:
    """The listener certificates mcgw serves over ADS (``secret/...``), not the xDS client's own file-based ones."""
    return {secret["name"]: secret.get("version_info", "")
            for entry in envoy.config_dump()["configs"] for secret in entry.get("dynamic_active_secrets", [])
            if secret["name"].startswith("secret/")}


async def _objects(api: client.ApiClient, port: int, backend: str, data: dict[str, str]) -> None:
    core, discovery, custom = client.CoreV1Api(api), client.DiscoveryV1Api(api), client.CustomObjectsApi(api)
    for namespace in (INFRA, SHOP):
        await core.create_namespace({"metadata": {"name": namespace}})
    with contextlib.suppress(client.ApiException):  # another test may have created the class already
        await custom.create_cluster_custom_object(GW, "v1", "gatewayclasses", {
            "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
            "spec": {"controllerName": "mcgw.io/gateway-controller"}})
    await core.create_namespaced_secret(INFRA, {"metadata": {"name": "cert"}, "type": "kubernetes.io/tls",
                                                "data": data})
    # No listener hostname: the load generator dials the address and sends no SNI.
    await custom.create_namespaced_custom_object(GW, "v1", INFRA, "gateways", {
        "apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "public"},
        "spec": {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                 "listeners": [{"name": "https", "port": port, "protocol": "HTTPS",
                                "tls": {"certificateRefs": [{"name": "cert"}]},
                                "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    await core.create_namespaced_service(SHOP, {
        "metadata": {"name": "cart"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    await discovery.create_namespaced_endpoint_slice(SHOP, {
        "metadata": {"name": "cart-1", "labels": {"kubernetes.io/service-name": "cart"}}, "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [backend], "conditions": {"ready": True}}]})
    await custom.create_namespaced_custom_object(GW, "v1", SHOP, "httproutes", {
        "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": "cart"},
        "spec": {"parentRefs": [{"name": "public", "namespace": INFRA}],
                 "rules": [{"backendRefs": [{"name": "cart", "port": 80}]}]}})


def _config(directory: Path, name: str, kubeconfig: Path, xds_port: int) -> Path:
    path = directory / "mcgw.yaml"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": name, "kubeconfig": str(kubeconfig), "context": name}],
        "xds": {"listen": f"127.0.0.1:{xds_port}"},
        "admin": {"listen": "127.0.0.1:0"},
        "leaderElection": {"leaseName": "mcgw-sds-rotation", "leaseDuration": 4, "renewDeadline": 3,
                           "retryPeriod": 0.5},
        "provisioning": {"enabled": False},  # the Envoy runs on the host, started by the test
    }))
    return path


async def _until(check: Any, within: float, what: str) -> float:
    """Poll ``check`` (blocking, run in a thread) until true; returns the seconds it took."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(OSError, AssertionError):
            if await asyncio.to_thread(check):
                return time.monotonic() - started
        assert time.monotonic() - started < within, f"timed out after {within:.0f}s waiting for {what}"
        await asyncio.sleep(0.1)


async def test_rotating_a_listeners_secret_under_load_fails_nothing_and_leaves_the_listener(
        clusterset: ClusterSet, tmp_path: Path) -> None:
    name, cluster = next(iter(clusterset.clusters.items()))
    backend = clusterset.start_echo(name, namespace=SHOP, pod="cart-sds")
    port = free_port()
    first, second = self_signed(HOSTNAME), self_signed(HOSTNAME)
    api = await config.new_client_from_config(config_file=str(cluster.kubeconfig), context=name,
                                              persist_config=False)
    try:
        await _objects(api, port, backend.address, first)
        xds_port = free_port()
        async with Controller(load_run_config(_config(tmp_path, name, cluster.kubeconfig, xds_port))) as controller:
            await asyncio.wait_for(controller.reconciler.ready.wait(), 60)
            node = NodeIdentity(name, INFRA, "public")
            envoy = await asyncio.to_thread(clusterset.start_envoy, name, node, XdsTarget(
                "127.0.0.1", xds_port, tls=host_envoy_tls(controller, node, tmp_path)))
            await _until(lambda: _served_certificate(port) == _der(first), 30, "the first certificate")
            listener = f"{INFRA}/public/{port}"
            before = await asyncio.to_thread(_listener_state, envoy, listener)
            secrets_before = await asyncio.to_thread(_secret_versions, envoy)
            load = OpenLoopLoad(f"https://127.0.0.1:{port}/", RATE, new_connections=True)
            await asyncio.to_thread(load.start)
            try:
                await asyncio.sleep(2)
                rotated_at = load.mark("rotate")
                await client.CoreV1Api(api).patch_namespaced_secret("cert", INFRA, {"data": second})
                seen = await _until(lambda: _served_certificate(port) == _der(second), 30,
                                    "a new handshake to see the new certificate")
                await asyncio.sleep(2)
            finally:
                samples = await asyncio.to_thread(load.stop)
            after = await asyncio.to_thread(_listener_state, envoy, listener)
            secrets_after = await asyncio.to_thread(_secret_versions, envoy)
            sds = await asyncio.to_thread(envoy.stats, "sds.")
    finally:
        await api.close()
    failed = failures(samples)
    during = [s for s in samples if rotated_at <= s.sent <= rotated_at + seen]
    print(f"\nSDS rotation: {len(samples)} requests at {RATE:.0f}/s (a new TLS handshake each), {len(failed)} failed, "
          f"{len(during)} sent between the Secret update and the first handshake with the new certificate "
          f"({seen:.2f}s); max send lag {load.max_send_lag * 1000:.1f} ms")
    print(f"listener {listener}: stats before {before[0]}, after {after[0]}; "
          f"version {before[1][0]} → {after[1][0]}, last_updated {before[1][1]} → {after[1][1]}")
    print(f"secret versions {secrets_before} → {secrets_after}; "
          f"sds stats {dict(sorted((k, v) for k, v in sds.items() if 'update' in k))}")
    assert len(samples) > RATE * 3
    assert failed == [], f"{len(failed)} of {len(samples)} requests failed: {failed[:5]}"
    assert after == before, "the rotation touched the listener"
    assert before[0]["listener_manager.total_listeners_draining"] == 0
    assert secrets_after.keys() == secrets_before.keys() == {f"secret/{INFRA}/cert"}
    assert secrets_after != secrets_before
