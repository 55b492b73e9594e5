"""Faults to inject into a running test bed, each with its restore, for failover tests and benchmarks.

| fault | what it does | what Envoy sees |
|---|---|---|
| ``BackendKill`` | SIGKILL every given echo backend (a crashed pod) | connections reset, then refused |
| ``Backend503`` | the backends answer 503 to everything, ``/healthz`` too (a broken pod) | 503 answers |
| ``NetworkBlackhole`` | the cluster's pod network link goes down inside its namespace | packets vanish: timeouts |
| ``ApiServerLost`` | an API server of the cluster stops (``add_apiserver``) | nothing: the controller notices |

``inject`` and ``restore`` block until the change is made; ``restore`` waits until restarted backends
answer again. Each may be injected and restored any number of times. gRPC echo backends
(``grpc_echo``) take the same faults; ``Backend503`` makes them fail every call with ``UNAVAILABLE``
(``grpc-status: 14``) and their health service answer NOT_SERVING.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from mcgw.support.processes import kill_process_group

from .cluster import ApiServer
from .clusterset import ClusterSet, EchoBackend
from .network import ClusterNetwork


class Fault(Protocol):
    name: str

    def inject(self) -> None: ...

    def restore(self) -> None: ...


class InForce:
    """A fault that knows whether it is in force, for ``restored_at_end``."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.active = False

    async def inject(self) -> None:
        self.active = True  # before: a fault that fails half-way is undone too
        await asyncio.to_thread(self.fault.inject)

    async def restore(self) -> None:
        await asyncio.to_thread(self.fault.restore)
        self.active = False


@contextlib.asynccontextmanager
async def restored_at_end(fault: Fault) -> AsyncIterator[InForce]:
    """``fault`` to inject and restore as a test goes; if it is still in force when the block ends, however it
    ends, it is restored, so the next test on the shared bed finds its backends up."""
    tracked = InForce(fault)
    try:
        yield tracked
    finally:
        if tracked.active:
            await tracked.restore()


# The mode that makes an echo backend fail every answer, health checks included, by its protocol.
FAILING_MODE = {"http": "503", "grpc": "unavailable"}


def set_echo_mode(backend: EchoBackend, mode: str) -> None:
    """Tell an echo backend to answer normally (``"ok"``) or fail (``FAILING_MODE``: an HTTP one 503, a
    gRPC one ``UNAVAILABLE``), health checks included."""
    if backend.protocol == "grpc":
        from mcgw.app.grpc_echo import set_mode  # local: only gRPC users need grpcio loaded

        answer = set_mode(backend.address, backend.port, mode)
        if answer.get("mode") != mode:
            raise RuntimeError(f"gRPC echo backend {backend.pod} did not take mode {mode!r}: {answer}")
        return
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
    """The backends stay up but answer 503 (their health endpoint too), as a broken dependency would; gRPC
    echo backends fail every call with ``UNAVAILABLE`` instead (and their health service says NOT_SERVING)."""

    def __init__(self, backends: Sequence[EchoBackend]) -> None:
        self.backends = list(backends)
        grpc = any(b.protocol == "grpc" for b in self.backends)
        self.name = "backend UNAVAILABLE" if grpc else "backend 503"

    def inject(self) -> None:
        for backend in self.backends:
            set_echo_mode(backend, FAILING_MODE[backend.protocol])

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
