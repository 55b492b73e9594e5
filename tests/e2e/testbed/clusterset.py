"""A ClusterSet of real member clusters with a real data-plane network, for tests and benchmarks.

``start_clusterset`` is a context manager; the pytest fixture ``clusterset`` in ``tests/e2e/conftest.py``
wraps it. On exit it stops exactly the processes it started and removes its namespaces and files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
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
from .network import ClusterNetwork, TestNetwork
from .processes import ManagedProcess, free_port, wait_until

DEFAULT_CLUSTER_NAMES = ["east", "west", "central", "north", "south", "alpha", "beta", "gamma"]


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

    def get(self, path: str = "/") -> dict[str, Any]:
        with urllib.request.urlopen(f"http://{self.address}:{self.port}{path}", timeout=5) as response:
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

    def net(self, cluster: str) -> ClusterNetwork:
        return self.network.clusters[cluster]

    def start_echo(self, cluster: str, namespace: str = "default", pod: str | None = None,
                   port: int = 8080) -> EchoBackend:
        """Start an echo backend on a new pod address in ``cluster``'s namespace and wait until it answers."""
        net = self.net(cluster)
        address = net.add_pod_address()
        pod_name = pod or f"echo-{cluster}-{len(net.pods)}"
        argv = net.exec_argv([
            sys.executable, "-m", "mcgw.app.echo", "--host", address, "--port", str(port),
            "--cluster", cluster, "--namespace", namespace, "--pod", pod_name,
        ])
        backend = EchoBackend(cluster, namespace, pod_name, address, port, self._spawn_echo(cluster, pod_name, argv),
                              argv)
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
        for cluster in self.clusters.values():
            cluster.stop()
        self.network.close()


@contextlib.contextmanager
def start_clusterset(size: int = 3, names: list[str] | None = None,
                     artifacts: Artifacts | None = None) -> Iterator[ClusterSet]:
    """Start ``size`` member clusters (in parallel) with CRDs established and a namespace network each."""
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
