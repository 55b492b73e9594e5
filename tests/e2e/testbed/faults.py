"""Faults to inject into a running test bed, each with its restore, for failover tests and benchmarks.

| fault | what it does | what Envoy sees |
|---|---|---|
| ``BackendKill`` | SIGKILL every given echo backend (a crashed pod) | connections reset, then refused |
| ``Backend503`` | the backends answer 503 to everything, ``/healthz`` too (a broken pod) | 503 answers |
| ``NetworkBlackhole`` | the cluster's pod network link goes down inside its namespace | packets vanish: timeouts |
| ``ApiServerLost`` | an API server of the cluster stops (``add_apiserver``) | nothing: the controller notices |

``inject`` and ``restore`` block until the change is made; ``restore`` waits until restarted backends
answer again. Each may be injected and restored any number of times.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Sequence
from typing import Protocol

from mcgw.support.processes import kill_process_group

from .cluster import ApiServer
from .clusterset import ClusterSet, EchoBackend
from .network import ClusterNetwork


class Fault(Protocol):
    name: str

    def inject(self) -> None: ...

    def restore(self) -> None: ...


def set_echo_mode(backend: EchoBackend, mode: str) -> None:
    """Tell an echo backend to answer normally (``"ok"``) or 503 (``"503"``), health checks included."""
    request = urllib.request.Request(f"http://{backend.address}:{backend.port}/__mcgw/fault",
                                     data=json.dumps({"mode": mode}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        answer = json.loads(response.read())
    if answer.get("mode") != mode:
        raise RuntimeError(f"echo backend {backend.pod} did not take mode {mode!r}: {answer}")


class BackendKill:
    """Kill the backends at once with SIGKILL, as a crash would; restore starts them again on the same
    address and port."""

    name = "backend kill"

    def __init__(self, clusterset: ClusterSet, backends: Sequence[EchoBackend]) -> None:
        self.clusterset = clusterset
        self.backends = list(backends)

    def inject(self) -> None:
        for backend in self.backends:
            kill_process_group(backend.process.popen, wait=None)
        for backend in self.backends:
            backend.process.popen.wait(10)

    def restore(self) -> None:
        for backend in self.backends:
            self.clusterset.restart_echo(backend)


class Backend503:
    """The backends stay up but answer 503 (their health endpoint too), as a broken dependency would."""

    name = "backend 503"

    def __init__(self, backends: Sequence[EchoBackend]) -> None:
        self.backends = list(backends)

    def inject(self) -> None:
        for backend in self.backends:
            set_echo_mode(backend, "503")

    def restore(self) -> None:
        for backend in self.backends:
            set_echo_mode(backend, "ok")


class NetworkBlackhole:
    """The cluster's pod network goes dark: its namespace's link is set down, so packets to every pod
    address of the cluster are dropped without an answer (no RST, no ICMP)."""

    name = "network blackhole"

    def __init__(self, network: ClusterNetwork, device: str = "eth0") -> None:
        self.network = network
        self.device = device

    def _link(self, state: str) -> None:
        argv = ["ip", "-netns", self.network.netns, "link", "set", self.device, state]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")

    def inject(self) -> None:
        self._link("down")

    def restore(self) -> None:
        self._link("up")


class ApiServerLost:
    """An API server of the cluster stops (open watches are cut, new connections refused); restore
    starts it again on the same port and waits until it is ready."""

    name = "API server lost"

    def __init__(self, server: ApiServer) -> None:
        self.server = server

    def inject(self) -> None:
        self.server.stop()

    def restore(self) -> None:
        self.server.start()
