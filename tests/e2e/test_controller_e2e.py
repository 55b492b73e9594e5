"""``mcgw run`` end to end on the test bed: real API servers, real Envoys, steady traffic.

- A controller restart under steady traffic costs zero failed requests, and Envoy never sees an empty
  or partial configuration (no listener or cluster is ever removed).
- A member cluster's API server killed: traffic through every gateway continues, the cluster shows
  Unavailable on /api/status and in the metrics, and comes back Available when its API server does.
- Status is written through the status subresource by the elected leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes.aio import client, config

from mcgw.app.config import load_run_config
from mcgw.app.run import Controller
from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget
from mcgw.dataplane.process import EnvoyProcess
from mcgw.support.netutil import free_port
from tests.e2e.testbed import ClusterSet
from tests.e2e.xds_credentials import host_envoy_tls

GW = "gateway.networking.k8s.io"


@dataclass
class Traffic:
    """Open-loop requests at a steady rate; every answer recorded."""

    urls: list[str]
    rate: float = 50.0
    answers: list[tuple[float, str, int, str]] = field(default_factory=list)  # (time, url, status, cluster)

    async def run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                for url in self.urls:
                    task = asyncio.create_task(self._one(url))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _one(self, url: str) -> None:
        status, cluster = await asyncio.to_thread(_get, url)
        self.answers.append((time.monotonic(), url, status, cluster))

    def failures(self) -> list[tuple[float, str, int, str]]:
        return [a for a in self.answers if a[2] != 200]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, str(json.loads(response.read()).get("cluster"))
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError as error:
        return 0, str(error)


async def _api(kubeconfig: Path, cluster: str) -> client.ApiClient:
    return await config.new_client_from_config(config_file=str(kubeconfig), context=cluster, persist_config=False)


async def _apply_gateway(api: client.ApiClient, tag: str, port: int, backends: list[str]) -> None:
    """A Gateway ``infra-<tag>/public`` routing /cart to Service ``shop-<tag>/cart`` (the clusters are shared
    by every e2e test, so each test has namespaces of its own)."""
    core, discovery, custom = client.CoreV1Api(api), client.DiscoveryV1Api(api), client.CustomObjectsApi(api)
    infra, shop = f"infra-{tag}", f"shop-{tag}"
    for namespace in (infra, shop):
        await core.create_namespace({"metadata": {"name": namespace}})
    with contextlib.suppress(client.ApiException):  # another test may have created the class already
        await custom.create_cluster_custom_object(GW, "v1", "gatewayclasses", {
            "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
            "spec": {"controllerName": "mcgw.io/gateway-controller"}})
    await custom.create_namespaced_custom_object(GW, "v1", infra, "gateways", {
        "apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "public"},
        "spec": {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                 "listeners": [{"name": "http", "port": port, "protocol": "HTTP",
                                "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    await core.create_namespaced_service(shop, {
        "metadata": {"name": "cart"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    await discovery.create_namespaced_endpoint_slice(shop, {
        "metadata": {"name": "cart-1", "labels": {"kubernetes.io/service-name": "cart"}}, "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in backends]})
    await custom.create_namespaced_custom_object(GW, "v1", shop, "httproutes", {
        "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": "cart"},
        "spec": {"parentRefs": [{"name": "public", "namespace": infra}], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/cart"}}],
             "backendRefs": [{"name": "cart", "port": 80}]}]}})


def _write_config(directory: Path, kubeconfigs: dict[str, Path], xds_port: int) -> Path:
    path = directory / "mcgw.yaml"
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": name, "kubeconfig": str(kubeconfig), "context": name}
                     for name, kubeconfig in kubeconfigs.items()],
        "xds": {"listen": f"127.0.0.1:{xds_port}"},
        "admin": {"listen": "127.0.0.1:0"},
        "leaderElection": {"leaseDuration": 4, "renewDeadline": 3, "retryPeriod": 0.5},
        "provisioning": {"enabled": False},  # the Envoys run on the host, started by the test
    }))
    return path


def _status(controller: Controller) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{controller.admin_port}/api/status", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def _metrics(controller: Controller) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{controller.admin_port}/metrics", timeout=5) as response:
        return response.read().decode()


@contextlib.asynccontextmanager
async def _traffic(urls: list[str]) -> AsyncIterator[Traffic]:
    traffic = Traffic(urls)
    task = asyncio.create_task(traffic.run())
    try:
        yield traffic
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(predicate: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def _removed(envoy: EnvoyProcess) -> dict[str, int]:
    stats = envoy.stats()
    return {name: int(stats.get(name, "0")) for name in (
        "listener_manager.listener_removed", "cluster_manager.cluster_removed",
        "listener_manager.lds.update_rejected", "cluster_manager.cds.update_rejected")}


async def test_controller_restart_under_steady_traffic_fails_no_request(clusterset: ClusterSet,
                                                                        tmp_path: Path) -> None:
    east = clusterset.clusters["east"]
    backends = [clusterset.start_echo("east", namespace="shop-restart", pod=f"cart-{i}") for i in range(2)]
    port = free_port()
    api = await _api(east.kubeconfig, "east")
    try:
        await _apply_gateway(api, "restart", port, [b.address for b in backends])
    finally:
        await api.close()
    xds_port = free_port()
    run_config = load_run_config(_write_config(tmp_path, {"east": east.kubeconfig}, xds_port))

    async with Controller(run_config) as controller:
        await asyncio.wait_for(controller.reconciler.ready.wait(), 60)
        node = NodeIdentity("east", "infra-restart", "public")
        envoy = await asyncio.to_thread(clusterset.start_envoy, "east", node,
                                        XdsTarget("127.0.0.1", xds_port,
                                                  tls=host_envoy_tls(controller, node, tmp_path)))
        url = f"http://127.0.0.1:{port}/cart"
        await _until(lambda: _get(url)[0] == 200, 30, "the first answer through Envoy")
        async with _traffic([url]) as traffic:
            await asyncio.sleep(2)
            await controller.__aexit__(None, None, None)  # the controller goes away under load
            await asyncio.sleep(2)  # Envoy keeps serving what it has while its xDS stream is down
            async with Controller(run_config) as restarted:
                await asyncio.wait_for(restarted.reconciler.ready.wait(), 60)
                await _until(lambda: any(n["cluster"] == "east" for n in _status(restarted)["nodes"]), 30,
                             "Envoy to reconnect to the restarted controller")
                await asyncio.sleep(2)
                # The restarted controller really serves: a new route reaches Envoy through it.
                api = await _api(east.kubeconfig, "east")
                try:
                    await client.CustomObjectsApi(api).create_namespaced_custom_object(
                        GW, "v1", "shop-restart", "httproutes", {
                        "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": "new"},
                        "spec": {"parentRefs": [{"name": "public", "namespace": "infra-restart"}], "rules": [
                            {"matches": [{"path": {"type": "Exact", "value": "/new"}}],
                             "backendRefs": [{"name": "cart", "port": 80}]}]}})
                finally:
                    await api.close()
                await _until(lambda: _get(f"http://127.0.0.1:{port}/new")[0] == 200, 30, "the new route")
                await asyncio.sleep(1)
        assert len(traffic.answers) > 200
        assert traffic.failures() == [], f"{len(traffic.failures())} of {len(traffic.answers)} requests failed"
        assert _removed(envoy) == dict.fromkeys(_removed(envoy), 0), "Envoy lost or refused configuration"
        print(f"\ncontroller restart: {len(traffic.answers)} requests, 0 failed")


async def test_a_lost_api_server_keeps_every_gateway_serving(clusterset: ClusterSet, tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("east", "west", "central")}
    kubeconfigs: dict[str, Path] = {}
    west_apiserver = clusterset.clusters["west"].add_apiserver("lost")  # the shared one stays up for other tests
    for name in ports:
        backend = clusterset.start_echo(name, namespace="shop-lost", pod=f"{name}-cart")
        kubeconfig = west_apiserver.kubeconfig if name == "west" else clusterset.clusters[name].kubeconfig
        kubeconfigs[name] = kubeconfig
        api = await _api(kubeconfig, name)
        try:
            await _apply_gateway(api, "lost", ports[name], [backend.address])
        finally:
            await api.close()
    xds_port = free_port()
    run_config = load_run_config(_write_config(tmp_path, kubeconfigs, xds_port))
    async with Controller(run_config) as controller:
        await asyncio.wait_for(controller.reconciler.ready.wait(), 60)
        for name in ports:
            node = NodeIdentity(name, "infra-lost", "public")
            await asyncio.to_thread(clusterset.start_envoy, name, node,
                                    XdsTarget("127.0.0.1", xds_port, tls=host_envoy_tls(controller, node, tmp_path)))
        urls = [f"http://127.0.0.1:{port}/cart" for port in ports.values()]
        for url in urls:
            await _until(lambda url=url: _get(url)[0] == 200, 30, f"{url} to answer")
        async with _traffic(urls) as traffic:
            await asyncio.sleep(1)
            await asyncio.to_thread(west_apiserver.stop)
            await _until(lambda: not _status(controller)["clusters"]["west"]["available"], 30,
                         "west to show Unavailable")
            status = await asyncio.to_thread(_status, controller)
            assert status["clusters"]["west"]["reason"]
            assert status["clusters"]["east"]["available"]
            assert 'cluster="west"} 0.0' in await asyncio.to_thread(_metrics, controller)
            await asyncio.sleep(3)  # traffic keeps flowing through all three gateways meanwhile
            await asyncio.to_thread(west_apiserver.start)
            await _until(lambda: _status(controller)["clusters"]["west"]["available"], 60,
                         "west to come back Available")
            await asyncio.sleep(1)
        served = {cluster for _, _, status_code, cluster in traffic.answers if status_code == 200}
        assert served == set(ports)
        assert traffic.failures() == [], f"{len(traffic.failures())} of {len(traffic.answers)} requests failed"
        # Status was written by the leader of each cluster through the status subresource.
        api = await _api(clusterset.clusters["east"].kubeconfig, "east")
        try:
            await _until_async(lambda: _programmed(api), 30, "east's Gateway status to be written")
        finally:
            await api.close()


async def _programmed(api: client.ApiClient) -> bool:
    stored = await client.CustomObjectsApi(api).get_namespaced_custom_object_status(GW, "v1", "infra-lost",
                                                                                   "gateways", "public")
    conditions = {c["type"]: c["status"] for c in (stored.get("status") or {}).get("conditions", [])}
    return conditions.get("Programmed") == "True"


async def _until_async(predicate: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


