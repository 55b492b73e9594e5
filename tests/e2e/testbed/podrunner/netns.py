"""Pod sandboxes' networking: addresses from the cluster's pool, one network namespace per pod, and the
API server made reachable from inside it.

The namespaces themselves are made by ``tests/e2e/testbed/network.py`` (veth onto the cluster bridge).
Inside a pod, ``127.0.0.1`` is the pod's own loopback, yet the API server listens on the host's; so each
pod gets a listener on its loopback at the API server's port, opened from a thread that entered the
pod's namespace, and the runner relays its connections to the real API server. In-cluster clients then
reach ``https://127.0.0.1:<port>``, which the API server's certificate names.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import os
import socket
import threading
from dataclasses import dataclass, field

from .. import network

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class AddressPool:
    """Pod addresses from ``first`` to ``last``, handed out round-robin so a freed one is reused last."""

    first: str
    last: str
    used: set[str] = field(default_factory=set)
    _next: int = 0

    def __post_init__(self) -> None:
        self._start = int(ipaddress.ip_address(self.first))
        self._size = int(ipaddress.ip_address(self.last)) - self._start + 1
        if self._size <= 0:
            raise ValueError(f"empty address pool {self.first}-{self.last}")

    def allocate(self, preferred: str | None = None) -> str:
        if preferred and preferred not in self.used and self.contains(preferred):
            self.used.add(preferred)
            return preferred
        for step in range(self._size):
            candidate = str(ipaddress.ip_address(self._start + (self._next + step) % self._size))
            if candidate not in self.used:
                self._next = (self._next + step + 1) % self._size
                self.used.add(candidate)
                return candidate
        raise RuntimeError(f"no pod address left in {self.first}-{self.last}")

    def release(self, address: str) -> None:
        self.used.discard(address)

    def contains(self, address: str) -> bool:
        try:
            value = int(ipaddress.ip_address(address))
        except ValueError:
            return False
        return self._start <= value < self._start + self._size


async def create(netns: str, bridge: str, address: str, prefixlen: int) -> None:
    await asyncio.to_thread(network.create_pod_netns, netns, bridge, address, prefixlen)


async def delete(netns: str, address: str | None) -> None:
    await asyncio.to_thread(network.delete_pod_netns, netns, address)


def netns_path(netns: str) -> str:
    return f"/run/netns/{netns}"


def listen_in_netns(netns: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket that belongs to ``netns`` (sockets keep the namespace they were made in)."""
    result: dict[str, socket.socket | BaseException] = {}

    def open_socket() -> None:
        # setns changes this thread only, and the thread ends right after.
        try:
            fd = os.open(netns_path(netns), os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns {netns}: {os.strerror(errno)}")
            finally:
                os.close(fd)
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(64)
            listener.setblocking(False)
            result["socket"] = listener
        except BaseException as error:
            result["error"] = error

    thread = threading.Thread(target=open_socket, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["socket"]  # type: ignore[return-value]


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


class ApiRelay:
    """Relays a pod's connections to ``127.0.0.1:<port>`` (its own loopback) to the host's API server."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self._server: asyncio.Server | None = None

    async def start(self, netns: str) -> None:
        listener = listen_in_netns(netns, "127.0.0.1", self.target_port)
        self._server = await asyncio.start_server(self._handle, sock=listener)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_relay(reader, upstream_writer), _relay(upstream_reader, writer))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
