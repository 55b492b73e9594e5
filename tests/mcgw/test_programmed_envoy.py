"""Programmed follows a real Envoy's ACKs: the reconcile loop, provisioning's facts and the xDS server together.

No API server: the store holds a Gateway with its generated Service (an address assigned) and Deployment
(a ready replica), as the informers would show them. The Gateway waits for an Envoy until one connects
and ACKs its configuration; a configuration Envoy rejects makes it Pending again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from mcgw.app.config import RunConfig
from mcgw.app.provisioning import Provisioning
from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget, read_template, render_bootstrap
from mcgw.dataplane.process import EnvoyProcess
from mcgw.objects.kinds import KINDS
from mcgw.objects.model import AnyObject, parse_object
from mcgw.runtime.reconciler import ReconcileOptions, Reconciler
from mcgw.store import Store
from mcgw.support.netutil import free_port
from xdsserver import SnapshotCache, XdsServer

LABELS = {"app.kubernetes.io/managed-by": "mcgw", "gateway.networking.k8s.io/gateway-name": "gw",
          "app.kubernetes.io/name": "envoy"}


def _objects(port: int) -> list[AnyObject]:
    documents: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
         "spec": {"controllerName": "mcgw.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "gw", "namespace": "infra", "generation": 1, "uid": "u1"},
         "spec": {"gatewayClassName": "mcgw", "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mcgw-gw", "namespace": "infra", "labels": LABELS},
         "spec": {"type": "LoadBalancer", "ports": [{"name": f"tcp-{port}", "port": port}]},
         "status": {"loadBalancer": {"ingress": [{"ip": "198.18.10.1"}]}}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "mcgw-gw", "namespace": "infra", "labels": LABELS},
         "spec": {"replicas": 1}, "status": {"replicas": 1, "readyReplicas": 1}},
    ]
    return [parse_object(doc, "test") for doc in documents]


async def _until(check: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
    return result


async def test_programmed_once_an_envoy_acked_and_pending_again_when_it_rejects(tmp_path: Path) -> None:
    store = Store(["east"], [kind.name for kind in KINDS])
    listen_port = free_port()
    for kind in KINDS:
        store.replace_kind("east", kind.name, [o for o in _objects(listen_port) if o.kind == kind.name])
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    config = RunConfig.model_validate({"clusters": [{"name": "east", "kubeconfig": str(tmp_path / "unused")}],
                                       "xds": {"listen": f"127.0.0.1:{xds_port}"}})
    reconciler: Reconciler
    provisioning = Provisioning(config, store, CollectorRegistry(), read_template(),
                                lambda cluster, sink: None, lambda cluster: reconciler.mark_dirty(cluster),
                                lambda: server.status.nodes())
    reconciler = Reconciler(store, cache, ReconcileOptions(0.02, 0.1), dataplane=provisioning.dataplane)
    tasks = [asyncio.create_task(reconciler.run()), asyncio.create_task(provisioning.watch_envoys())]

    def programmed() -> tuple[str, str, str] | None:
        output = reconciler.outputs.get("east")
        if output is None:
            return None
        conditions = {c["type"]: c for c in output.statuses()["Gateway"]["infra/gw"]["conditions"]}
        condition = conditions["Programmed"]
        return condition["status"], condition["reason"], condition["message"]

    envoy = None
    try:
        await _until(lambda: programmed() == ("False", "Pending", "waiting for an Envoy of this Gateway to connect "
                                                                   "to the xDS server"), 10, "Pending on Envoy")
        admin = free_port()
        envoy = EnvoyProcess(f"programmed-{admin}", render_bootstrap(
            NodeIdentity("east", "infra", "gw", "mcgw-gw-7d9f-abcde"), admin, XdsTarget("127.0.0.1", xds_port)),
            admin, tmp_path)
        await asyncio.to_thread(envoy.wait_live, 30)
        await _until(lambda: programmed() == ("True", "Programmed", "programmed at 198.18.10.1"), 10,
                     "Programmed after the ACK")
        # A listener port Envoy cannot bind: Envoy rejects the new configuration, the Gateway is Pending again.
        with socket_taken() as taken:
            gateway = parse_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                                    "metadata": {"name": "gw", "namespace": "infra", "generation": 2, "uid": "u1"},
                                    "spec": {"gatewayClassName": "mcgw", "listeners": [
                                        {"name": "http", "port": listen_port, "protocol": "HTTP"},
                                        {"name": "taken", "port": taken, "protocol": "HTTP"}]}}, "test")
            store.upsert("east", gateway)
            status, _, message = await _until(
                lambda: (found := programmed()) and found[1] == "Pending" and found, 15, "Pending after the NACK")
            assert status == "False"
            assert message == "1 of 1 connected Envoys rejected the current configuration (see /api/status for why)"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if envoy is not None:
            envoy.stop()
        await server.stop(0)


@contextlib.contextmanager
def socket_taken() -> Iterator[int]:
    """A port someone else listens on (on every address, as Envoy's listener would)."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])
