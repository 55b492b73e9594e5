"""A ClusterSet of real member clusters with a real data-plane network, for tests and benchmarks.

``start_clusterset`` is a context manager; the pytest fixture ``clusterset`` in ``tests/e2e/conftest.py``
wraps it. On exit it stops exactly the processes it started and removes its namespaces and files.

Each member cluster gets a pod runner (``tests/e2e/testbed/podrunner``, an emulated kubelet) that owns
Node ``<cluster>-node`` and runs the cluster's pods as local processes in namespaces of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget, render_bootstrap
from mcgw.dataplane.process import EnvoyProcess

from .build import REPO, Artifacts, ensure_artifacts
from .cluster import MemberCluster, start_member_cluster
from .network import ClusterNetwork, TestNetwork, sweep_stale
from .pki import IssuedCert
from .processes import ManagedProcess, free_port, wait_until

DEFAULT_CLUSTER_NAMES = ["east", "west", "central", "north", "south", "alpha", "beta", "gamma"]
# Images only the test bed knows, for tests that need a program of their own in a pod.
# Their files are the venv and this checkout, shown at /opt/testbed as an image's own (a volume at /tmp
# would otherwise hide a checkout under /tmp).
_TEST_IMAGE_FILES = {"/opt/testbed/venv": sys.prefix, "/opt/testbed/src": str(REPO)}
_TEST_PYTHON = "/opt/testbed/venv/bin/python"
TEST_IMAGES: list[dict[str, Any]] = [
    {"repository": "mcgw-testbed/python", "entrypoint": [_TEST_PYTHON], "files": _TEST_IMAGE_FILES,
     "env": {"PYTHONPATH": "/opt/testbed/src"}, "binaries": {"python": _TEST_PYTHON, "python3": _TEST_PYTHON}},
    {"repository": "mcgw-testbed/echo", "entrypoint": [_TEST_PYTHON, "-m", "mcgw.app.echo"],
     "files": _TEST_IMAGE_FILES, "env": {"PYTHONPATH": "/opt/testbed/src"}},
]


def node_name(cluster: str) -> str:
    """The Node a cluster's pod runner owns."""
    return f"{cluster}-node"


def _echo_basic() -> Path | None:
    """The conformance suite's echo-basic binary if it is built (never builds it), else ``$MCGW_ECHO_BASIC``."""
    if os.environ.get("MCGW_ECHO_BASIC"):
        return Path(os.environ["MCGW_ECHO_BASIC"])
    try:
        from .conformance_build import cached_echo_basic
    except ImportError:
        return None
    return cached_echo_basic()


@dataclass
class EchoBackend:
    """An echo backend listening on a pod address inside its cluster's namespace."""

    cluster: str
    namespace: str
    pod: str
    address: str
    port: int
    process: ManagedProcess
    argv: list[str] = field(default_factory=list)
    protocol: str = "http"  # "https": with a certificate of its own; "grpc": mcgw/app/grpc_echo.py

    def get(self, path: str = "/") -> dict[str, Any]:
        """``path`` from the backend itself; HTTPS is not verified (this checks it runs, not who it is)."""
        context = ssl._create_unverified_context() if self.protocol == "https" else None
        url = f"{self.protocol}://{self.address}:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result


@dataclass
class ClusterSet:
    """Running member clusters, their networks, and the helpers that start backends and Envoys."""

    workdir: Path
    artifacts: Artifacts
    clusters: dict[str, MemberCluster]
    network: TestNetwork
    start_seconds: float
    _processes: list[ManagedProcess] = field(default_factory=list)
    _envoys: list[EnvoyProcess] = field(default_factory=list)
    podrunners: dict[str, ManagedProcess] = field(default_factory=dict)
    loadbalancers: dict[str, ManagedProcess] = field(default_factory=dict)

    def net(self, cluster: str) -> ClusterNetwork:
        return self.network.clusters[cluster]

    def podrunner_argv(self, cluster: str, images: Path) -> list[str]:
        net, member = self.net(cluster), self.clusters[cluster]
        first, last = net.pod_pool
        argv = [sys.executable, "-m", "tests.e2e.testbed.podrunner", "--kubeconfig", str(member.kubeconfig),
                "--node", node_name(cluster), "--cluster", cluster, "--bridge", net.bridge,
                "--host-ip", net.host_address, "--prefixlen", str(net.prefixlen), "--pod-pool", f"{first}-{last}",
                "--pod-cidr", str(net.subnet), "--state-dir", str(member.workdir / "podrunner"),
                "--owner-pid", str(os.getpid()), "--images", str(images)]
        for peer, other in self.clusters.items():
            if peer != cluster:  # a controller pod reaches every member, as mcgw does from the host
                argv += ["--peer-api", urllib.parse.urlsplit(other.api_url).netloc]
        echo_basic = _echo_basic() or self.artifacts.echo_basic
        if echo_basic is not None:
            argv += ["--echo-basic", str(echo_basic)]
        return argv

    def start_podrunners(self, timeout: float = 60) -> None:
        """Start one pod runner per member cluster and wait until each one's Node is Ready."""
        images = self.workdir / "podrunner-images.json"
        images.write_text(json.dumps(TEST_IMAGES))
        for cluster, member in self.clusters.items():
            self.podrunners[cluster] = ManagedProcess(f"podrunner[{cluster}]", self.podrunner_argv(cluster, images),
                                                      member.workdir / "podrunner.log", cwd=REPO)
        for cluster, runner in self.podrunners.items():
            wait_until(lambda cluster=cluster: self._node_ready(cluster), timeout,  # type: ignore[misc]
                       f"pod runner of {cluster} to register a Ready node", runner)

    def _node_ready(self, cluster: str) -> bool:
        node = self.clusters[cluster].request("GET", f"/api/v1/nodes/{node_name(cluster)}")
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))

    def stop_podrunners(self) -> None:
        """Stop the runners (each stops its pods and removes their namespaces), then sweep what a killed one left."""
        for runner in self.podrunners.values():
            runner.popen.terminate()
        for runner in self.podrunners.values():
            runner.stop(grace=20)
        self.podrunners.clear()
        sweep_stale()

    def start_loadbalancers(self) -> None:
        """Start the load balancer of every member cluster (its own pool, the default class; docs/testbed.md)."""
        from .loadbalancer import start_loadbalancer  # local: the package is only needed when the bed runs

        for cluster, member in self.clusters.items():
            self.loadbalancers[cluster] = start_loadbalancer(member, self.network)

    def stop_loadbalancers(self) -> None:
        """Stop the load balancers (each removes its addresses on SIGTERM)."""
        for process in self.loadbalancers.values():
            process.stop()
        self.loadbalancers.clear()

    def start_echo(self, cluster: str, namespace: str = "default", pod: str | None = None,
                   port: int = 8080, tls: IssuedCert | None = None) -> EchoBackend:
        """Start an echo backend on a new pod address in ``cluster``'s namespace and wait until it answers;
        with ``tls``, it serves HTTPS with that certificate."""
        extra = ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)] if tls else []
        return self._start_echo("mcgw.app.echo", "https" if tls else "http", cluster, namespace, pod, port, extra)

    def start_grpc_echo(self, cluster: str, namespace: str = "default", pod: str | None = None,
                        port: int = 8080) -> EchoBackend:
        """Start a gRPC echo backend on a new pod address in ``cluster``'s namespace and wait until it is SERVING."""
        return self._start_echo("mcgw.app.grpc_echo", "grpc", cluster, namespace, pod, port)

    def _start_echo(self, module: str, protocol: str, cluster: str, namespace: str, pod: str | None,
                    port: int, extra: list[str] | None = None) -> EchoBackend:
        net = self.net(cluster)
        address = net.add_pod_address()
        pod_name = pod or f"echo-{cluster}-{len(net.pods)}"
        argv = net.exec_argv([
            sys.executable, "-m", module, "--host", address, "--port", str(port),
            "--cluster", cluster, "--namespace", namespace, "--pod", pod_name, *(extra or []),
        ])
        backend = EchoBackend(cluster, namespace, pod_name, address, port, self._spawn_echo(cluster, pod_name, argv),
                              argv, protocol)
        self._wait_echo(backend)
        return backend

    def restart_echo(self, backend: EchoBackend) -> None:
        """Start a stopped (or killed) echo backend again on the same address and port, and wait until it answers."""
        backend.process.stop()
        backend.process = self._spawn_echo(backend.cluster, backend.pod, backend.argv)
        self._wait_echo(backend)

    def _spawn_echo(self, cluster: str, pod: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(f"echo[{cluster}/{pod}]", argv, self.workdir / "backends" / f"{pod}.log", cwd=REPO)
        self._processes.append(process)
        return process

    def _wait_echo(self, backend: EchoBackend) -> None:
        if backend.protocol == "grpc":
            from mcgw.app.grpc_echo import serving  # local: only gRPC users need grpcio loaded

            wait_until(lambda: serving(backend.address, backend.port), 30, f"gRPC echo backend {backend.pod}",
                       backend.process)
            return
        wait_until(lambda: backend.get("/healthz")["ok"] is True, 30, f"echo backend {backend.pod}", backend.process)

    def start_envoy(self, cluster: str, node: NodeIdentity | None = None, xds: XdsTarget | None = None,
                    static_resources: dict[str, Any] | None = None, wait: bool = True) -> EnvoyProcess:
        """Start a real Envoy gateway for ``cluster`` from the deploy/envoy bootstrap template."""
        node = node or NodeIdentity(cluster=cluster, namespace="default", gateway="gw")
        admin_port = free_port()
        bootstrap = render_bootstrap(node, admin_port, xds, static_resources)
        name = f"envoy-{cluster}-{node.namespace}-{node.gateway}-{node.instance}-{len(self._envoys)}"
        envoy = EnvoyProcess(name, bootstrap, admin_port, self.workdir / "envoy")
        self._envoys.append(envoy)
        if wait:
            envoy.wait_live()
        return envoy

    def close(self) -> None:
        for envoy in reversed(self._envoys):
            envoy.stop()
        for process in reversed(self._processes):
            process.stop()
        self.stop_loadbalancers()
        self.stop_podrunners()
        for cluster in self.clusters.values():
            cluster.stop()
        self.network.close()


@contextlib.contextmanager
def start_clusterset(size: int = 3, names: list[str] | None = None,
                     artifacts: Artifacts | None = None, podrunners: bool = True,
                     loadbalancers: bool = True) -> Iterator[ClusterSet]:
    """Start ``size`` member clusters (in parallel) with CRDs established, a namespace network each and,
    unless turned off, a pod runner and a LoadBalancer emulation each."""
    names = names or DEFAULT_CLUSTER_NAMES[:size]
    artifacts = artifacts or ensure_artifacts()
    workdir = Path(tempfile.mkdtemp(prefix="mcgw-clusterset-"))
    started = time.monotonic()
    network: TestNetwork | None = None
    clusters: dict[str, MemberCluster] = {}
    clusterset: ClusterSet | None = None
    try:
        network = TestNetwork(names)
        crd_dirs = [artifacts.crd_dir, REPO / "crds" / "mcgw"]
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            futures = {name: pool.submit(start_member_cluster, artifacts, workdir / name, name,
                                         [d for d in crd_dirs if d.exists()]) for name in names}
            errors = []
            for name, future in futures.items():
                try:
                    clusters[name] = future.result()
                except Exception as error:
                    errors.append(f"{name}: {error}")
            if errors:
                raise RuntimeError("member clusters failed to start:\n" + "\n".join(errors))
        clusterset = ClusterSet(workdir, artifacts, clusters, network, time.monotonic() - started)
        if podrunners:
            clusterset.start_podrunners()
        if loadbalancers:
            clusterset.start_loadbalancers()
        if podrunners or loadbalancers:
            clusterset.start_seconds = time.monotonic() - started
        per_cluster = ", ".join(f"{n} {c.start_seconds:.1f}s" for n, c in clusters.items())
        print(f"\n[clusterset] {len(clusters)} clusters up in {clusterset.start_seconds:.1f}s ({per_cluster})",
              flush=True)
        yield clusterset
    finally:
        if clusterset is not None:
            clusterset.close()
        else:
            for cluster in clusters.values():
                cluster.stop()
            if network is not None:
                network.close()
        if os.environ.get("MCGW_KEEP_TESTBED"):
            print(f"[clusterset] kept {workdir} (MCGW_KEEP_TESTBED is set)", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
