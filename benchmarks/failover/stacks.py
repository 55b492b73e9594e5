"""The control planes a run can measure: mcgw itself (``McgwStack``) or the benchmark's own
translation (``EmulatedStack``, which also provides the flat peer row)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from mcgw.app.grpc_echo import answered_by as grpc_answered_by
from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget
from mcgw.dataplane.process import EnvoyProcess
from mcgw.objects.clusterset import ClusterProperties
from mcgw.objects.model import FailoverPolicy
from mcgw.semantics.policy.failover import DEFAULTS, FailoverSettings, apply_policy
from mcgw.support.netutil import free_port
from tests.e2e.testbed.clusterset import ClusterSet, EchoBackend

from .emulation import EmulatedControlPlane, Endpoint, Source
from .scenario import PolicyMode

SERVICE_IMPORT_REF = {"group": "multicluster.x-k8s.io", "kind": "ServiceImport", "name": "cart"}


def cluster_properties(local: str, order: Sequence[str]) -> dict[str, ClusterProperties]:
    """The ClusterSet as the benchmark's run config declares it: no regions or labels, and the local cluster's
    ``failoverOrder`` the rest of ``order``."""
    return {name: ClusterProperties(name=name, failover_order=tuple(c for c in order if c != local)
                                    if name == local else ()) for name in order}


def settings_for(policy: PolicyMode, local: str = "", order: Sequence[str] = ()) -> FailoverSettings:
    """mcgw's failover settings for a policy row, from the same FailoverPolicy spec the real run applies; a
    policy's levels and exclusions resolve against ``order``'s clusters as seen from ``local``."""
    if policy.spec is None:
        return DEFAULTS
    return apply_policy(DEFAULTS, TypeAdapter(FailoverPolicy).validate_python({
        "apiVersion": "mcgw.io/v1alpha2", "kind": "FailoverPolicy",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {"targetRefs": [SERVICE_IMPORT_REF], **policy.spec}}), local, cluster_properties(local, order))


def load_assignment(dump: dict[str, Any], cluster_name: str) -> dict[str, Any] | None:
    """The ClusterLoadAssignment Envoy holds for ``cluster_name`` (a ``/config_dump?include_eds``)."""
    for config in dump.get("configs", []):
        for entry in config.get("dynamic_endpoint_configs", []):
            assignment = entry.get("endpoint_config", {})
            if assignment.get("cluster_name") == cluster_name:
                return dict(assignment)
    return None


GRPC_METHOD = "demo.Echo/Say"  # what a gRPC row calls; the gRPC echo backends answer every method


def url_for(protocol: str, port: int) -> str:
    """What a run loads through a gateway listening on loopback ``port`` (see OpenLoopLoad)."""
    if protocol == "grpc":
        return f"grpc://127.0.0.1:{port}/{GRPC_METHOD}"
    if protocol == "tcp":
        return f"tcp://127.0.0.1:{port}/db"
    return f"http://127.0.0.1:{port}/cart"


def _tcp_answered_by(url: str) -> str:
    """One new connection: the echo backend's cluster, from its HTTP/1.0 answer over the raw stream."""
    address, _, path = url.removeprefix("tcp://").partition("/")
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2) as connection:
            connection.sendall(f"GET /{path} HTTP/1.0\r\nHost: db\r\n\r\n".encode())
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        return str(json.loads(answer.partition(b"\r\n\r\n")[2]).get("cluster", ""))
    except (OSError, ValueError):
        return ""


def answered_by(url: str) -> str:
    """The cluster that answered one request (gRPC call, TCP connection), or "" when it failed."""
    if url.startswith("grpc://"):
        return grpc_answered_by(url)
    if url.startswith("tcp://"):
        return _tcp_answered_by(url)
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(json.loads(response.read()).get("cluster", ""))
    except (OSError, ValueError):
        return ""


async def wait_serving(url: str, clusters: set[str], within: float = 60.0, streak: int = 20) -> None:
    """Wait until ``streak`` requests in a row are answered by ``clusters``."""
    deadline = time.monotonic() + within
    run = 0
    last = ""
    while run < streak:
        last = await asyncio.to_thread(answered_by, url)
        run = run + 1 if last in clusters else 0
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not served by {sorted(clusters)} within {within:.0f}s (last answer: {last!r})")
        if run == 0:
            await asyncio.sleep(0.1)


def envoy_counters(envoy: EnvoyProcess, cluster_name: str) -> dict[str, Any]:
    """Health-check attempts, retries and ejections Envoy counted for the backend cluster."""
    try:
        stats = envoy.stats(f"cluster.{cluster_name}.")
    except (OSError, urllib.error.URLError):
        return {}
    prefix = f"cluster.{cluster_name}."

    def value(name: str) -> int:
        raw = stats.get(prefix + name, "0")
        return int(raw) if raw.isdigit() else 0

    return {"health_check_attempts": value("health_check.attempt"),
            "health_check_failures": value("health_check.failure"),
            "retries": value("upstream_rq_retry"),
            "retries_overflow": value("upstream_rq_retry_overflow"),
            "ejections": value("outlier_detection.ejections_enforced_total"),
            "endpoints": value("membership_total")}


def backend_cluster(dump: dict[str, Any]) -> dict[str, Any] | None:
    """The ServiceImport's (or the emulation's) cluster in an Envoy config dump."""
    for config in dump.get("configs", []):
        for entry in config.get("dynamic_active_clusters", []):
            cluster = entry.get("cluster", {})
            if cluster.get("name", "").startswith(("serviceimport/", "bench/")):
                return dict(cluster)
    return None


async def stop_envoy(envoy: EnvoyProcess | None, cluster_name: str) -> dict[str, Any]:
    """Read a run's Envoy counters and its backend cluster as Envoy holds it, then stop that Envoy."""
    if envoy is None:
        return {}
    counters = await asyncio.to_thread(envoy_counters, envoy, cluster_name)
    counters["cluster"] = backend_cluster(await asyncio.to_thread(envoy.config_dump))
    await asyncio.to_thread(envoy.stop)
    return counters


class EmulatedStack:
    """The benchmark's own xDS server and translation; readiness reports go straight to EDS. One per
    protocol: a gRPC one routes to gRPC ``backends`` over HTTP/2, a TCP one proxies connections."""

    def __init__(self, clusterset: ClusterSet, backends: dict[str, list[EchoBackend]], local: str,
                 order: list[str], protocol: str = "http") -> None:
        self.clusterset = clusterset
        self.local = local
        self.order = order
        self.protocol = protocol
        self.node = NodeIdentity(local, "bench", "gw" if protocol == "http" else f"gw-{protocol}")
        self.listen_port = free_port()
        self.sources = {c: Source(c, [Endpoint(b.address, b.port) for b in bs]) for c, bs in backends.items()}
        self.control_plane = EmulatedControlPlane(self.node, self.listen_port, self.sources, protocol)
        self.xds_port = 0
        self.envoy: EnvoyProcess | None = None
        self.cluster_name = "bench/cart"

    async def start(self) -> None:
        self.xds_port = await self.control_plane.start()

    async def stop(self) -> None:
        await self.control_plane.stop()

    async def prepare(self, policy: PolicyMode) -> str:
        for source in self.sources.values():
            for endpoint in source.endpoints:
                endpoint.ready = True
        self.control_plane.frozen = False
        self.control_plane.configure(None if policy.flat else self.order,
                                     None if policy.flat else settings_for(policy))
        self.envoy = await asyncio.to_thread(self.clusterset.start_envoy, self.local, self.node,
                                             XdsTarget("127.0.0.1", self.xds_port, load_reports=False))
        url = url_for(self.protocol, self.listen_port)
        await wait_serving(url, set(self.order) if policy.flat else {self.local})
        return url

    async def set_ready(self, cluster: str, ready: bool) -> None:
        self.control_plane.set_ready(cluster, ready)

    async def lose_apiserver(self) -> None:
        self.control_plane.freeze()

    async def restore_apiserver(self) -> None:
        self.control_plane.thaw()

    async def finish(self) -> dict[str, Any]:
        envoy, self.envoy = self.envoy, None
        return await stop_envoy(envoy, self.cluster_name)
