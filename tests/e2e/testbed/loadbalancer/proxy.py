"""Connection-level forwarding from a Service address to its endpoints (``plan.select_endpoints``), round-robin.

TCP: each accepted connection is spliced to one endpoint (the next in turn; the following ones are tried
if it refuses), bytes both ways with flow control and half-close. UDP: each client address is a session
bound to one endpoint until it has been idle for a while.

A Service port is listened on only while it has endpoints to send to: otherwise nothing listens and the
kernel refuses connections at once (RST), as kube-proxy rejects traffic to a Service without endpoints.
Stopping listening (no endpoints, or new endpoints) leaves established connections alone; removing
the port from the Service, or releasing the address, closes them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Iterable, Mapping
from typing import cast

from .plan import ListenerKey, Target

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
MAX_CONNECT_ATTEMPTS = 3
UDP_IDLE_SECONDS = 30.0
UDP_MAX_SESSIONS = 4096


class RoundRobin:
    """The endpoints of one port and whose turn it is; the turn survives endpoint changes."""

    def __init__(self, targets: Iterable[Target] = ()) -> None:
        self.targets: tuple[Target, ...] = tuple(targets)
        self._turn = 0

    def update(self, targets: Iterable[Target]) -> None:
        self.targets = tuple(targets)

    def order(self, attempts: int = MAX_CONNECT_ATTEMPTS) -> list[Target]:
        """The endpoint whose turn it is, then the ones after it (for retries), at most ``attempts``."""
        if not self.targets:
            return []
        start = self._turn % len(self.targets)
        self._turn = start + 1
        rotated = self.targets[start:] + self.targets[:start]
        return list(rotated[:attempts])


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close with an RST (SO_LINGER 0), so the client learns at once that nobody will answer."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    else:
        transport.close()


class _Side(asyncio.Protocol):
    """One end of a spliced connection: what it reads goes to the other end."""

    def __init__(self, connection: _Connection) -> None:
        self.connection = connection
        self.transport: asyncio.Transport | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connection.made(self)

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        if self is connection.client:
            peer = connection.backend
        elif self is connection.backend:
            peer = connection.client
        else:
            return  # an attempt that was given up
        if peer.transport is not None:
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        self.connection.half_closed(self)
        return True  # keep the other direction open until it ends too

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.lost(self)

    def pause_writing(self) -> None:
        peer = self.connection.peer(self)
        if peer.transport is not None:
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.connection.peer(self)
        if peer.transport is not None and not peer.transport.is_closing():
            peer.transport.resume_reading()


class _Connection:
    """A client connection and the endpoint connection it is spliced to."""

    def __init__(self, forwarder: TcpForwarder) -> None:
        self.forwarder = forwarder
        self.client = _Side(self)
        self.backend = _Side(self)
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def peer(self, side: _Side) -> _Side:
        return self.backend if side is self.client else self.client

    def made(self, side: _Side) -> None:
        if side is not self.client:
            return  # an endpoint connection: _connect resumes the client
        assert side.transport is not None
        # Nothing is read from the client until the endpoint is connected, so nothing needs buffering.
        side.transport.pause_reading()
        self.forwarder.connections.add(self)
        self._task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        for host, port in self.forwarder.targets.order():
            if self.closed:
                return
            # A fresh protocol per attempt: one cut short by the timeout can report nothing to the next.
            self.backend = _Side(self)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await loop.create_connection(lambda: self.backend, host, port)
            except (OSError, TimeoutError) as error:
                log.debug("%s: endpoint %s:%d failed: %s", self.forwarder.name, host, port, error)
                continue
            if self.closed:  # the client left while the endpoint was answering
                if self.backend.transport is not None:
                    self.backend.transport.close()
            elif self.client.transport is not None and not self.client.transport.is_closing():
                self.client.transport.resume_reading()
            return
        log.debug("%s: no endpoint answered; resetting the client", self.forwarder.name)
        self.abort()

    def half_closed(self, side: _Side) -> None:
        if side is not self.client and side is not self.backend:
            return
        peer = self.peer(side)
        if peer.transport is not None and not peer.transport.is_closing() and peer.transport.can_write_eof():
            peer.transport.write_eof()
        if self.client.eof and self.backend.eof:
            self.close()

    def lost(self, side: _Side) -> None:
        if side is not self.client and side is not self.backend:
            return  # an attempt that was given up
        peer = self.peer(side)
        if peer.transport is not None:
            peer.transport.close()  # flushes what is still buffered for it first
        elif side is self.client and self._task is not None:
            self._task.cancel()
        if side is self.client or peer.transport is None or peer.transport.is_closing():
            self._forget()

    def close(self) -> None:
        for side in (self.client, self.backend):
            if side.transport is not None:
                side.transport.close()
        self._forget()

    def abort(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        if self.client.transport is not None:
            _reset(self.client.transport)
        if self.backend.transport is not None:
            self.backend.transport.abort()
        self._forget()

    def _forget(self) -> None:
        self.closed = True
        self.forwarder.connections.discard(self)


class TcpForwarder:
    """One Service port on one address: a listener while there are endpoints, and its connections."""

    protocol = "TCP"

    def __init__(self, address: str, port: int, targets: Iterable[Target] = ()) -> None:
        self.address, self.port = address, port
        self.name = f"{address}:{port}/TCP"
        self.targets = RoundRobin(targets)
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self.accepted = 0

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def listen(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()

        def accept() -> _Side:
            self.accepted += 1
            return _Connection(self).client

        self._server = await loop.create_server(accept, self.address, self.port, reuse_address=True, backlog=1024)

    def update(self, targets: Iterable[Target]) -> None:
        self.targets.update(targets)

    def stop_listening(self) -> None:
        """Refuse new connections; the established ones carry on."""
        if self._server is not None:
            self._server.close()  # the listening socket is closed here and now
            self._server = None

    def close(self) -> None:
        self.stop_listening()
        for connection in list(self.connections):
            connection.abort()


class _UdpSession(asyncio.DatagramProtocol):
    """One client address and the endpoint its datagrams go to."""

    def __init__(self, forwarder: UdpForwarder, client: tuple[str, int], target: Target) -> None:
        self.forwarder, self.client, self.target = forwarder, client, target
        self.transport: asyncio.DatagramTransport | None = None
        self.queue: list[bytes] = []
        self.last_used = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)
        for data in self.queue:
            self.transport.sendto(data)
        self.queue.clear()

    def send(self, data: bytes) -> None:
        self.last_used = time.monotonic()
        if self.transport is None:
            if len(self.queue) < 64:
                self.queue.append(data)
        else:
            self.transport.sendto(data)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.last_used = time.monotonic()
        self.forwarder.reply(self.client, data)

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: endpoint %s:%d: %s", self.forwarder.name, *self.target, exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class UdpForwarder(asyncio.DatagramProtocol):
    """One UDP Service port: datagrams of each client address go to one endpoint, replies come back from
    the Service address."""

    protocol = "UDP"

    def __init__(self, address: str, port: int, targets: Iterable[Target] = ()) -> None:
        self.address, self.port = address, port
        self.name = f"{address}:{port}/UDP"
        self.targets = RoundRobin(targets)
        self.sessions: dict[tuple[str, int], _UdpSession] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def listening(self) -> bool:
        return self._transport is not None

    async def listen(self) -> None:
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.address, self.port))
        self._transport = transport
        self._sweeper = loop.call_later(UDP_IDLE_SECONDS / 2, self._expire)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        client = (str(addr[0]), int(addr[1]))
        session = self.sessions.get(client)
        if session is None:
            order = self.targets.order(1)
            if not order or len(self.sessions) >= UDP_MAX_SESSIONS:
                return
            session = _UdpSession(self, client, order[0])
            self.sessions[client] = session
            asyncio.get_running_loop().create_task(self._open(session))
        session.send(data)

    async def _open(self, session: _UdpSession) -> None:
        try:
            await asyncio.get_running_loop().create_datagram_endpoint(lambda: session, remote_addr=session.target)
        except OSError as error:
            log.debug("%s: endpoint %s:%d: %s", self.name, *session.target, error)
            self.sessions.pop(session.client, None)

    def reply(self, client: tuple[str, int], data: bytes) -> None:
        if self._transport is not None:
            self._transport.sendto(data, client)

    def _expire(self) -> None:
        now = time.monotonic()
        for client, session in list(self.sessions.items()):
            if now - session.last_used > UDP_IDLE_SECONDS:
                session.close()
                del self.sessions[client]
        self._sweeper = asyncio.get_running_loop().call_later(UDP_IDLE_SECONDS / 2, self._expire)

    def update(self, targets: Iterable[Target]) -> None:
        """New endpoints; a session whose endpoint is gone is dropped, so its next datagram picks a live one."""
        self.targets.update(targets)
        live = set(self.targets.targets)
        for client, session in list(self.sessions.items()):
            if session.target not in live:
                session.close()
                del self.sessions[client]

    def stop_listening(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()

    def close(self) -> None:
        self.stop_listening()


Forwarder = TcpForwarder | UdpForwarder


class Proxy:
    """Every forwarder of this process, by Service address and port."""

    def __init__(self) -> None:
        self.forwarders: dict[str, dict[ListenerKey, Forwarder]] = {}

    async def sync(self, address: str, ports: Iterable[ListenerKey],
                   plan: Mapping[ListenerKey, tuple[Target, ...]]) -> list[str]:
        """Make ``address`` serve ``plan``: listen on its ports (with their targets), stop listening on the
        Service's other ``ports`` (no endpoints), and close whatever is no longer a Service port.

        Ports that stay are never touched beyond their targets. Returns the errors of ports that could
        not be listened on (they are retried on the next sync).
        """
        current = self.forwarders.setdefault(address, {})
        wanted = set(ports) | set(plan)
        for key in [k for k in current if k not in wanted]:
            current.pop(key).close()
        errors = []
        for key in sorted(wanted):
            forwarder = current.get(key)
            if forwarder is None:
                protocol, port = key
                forwarder = (TcpForwarder if protocol == "TCP" else UdpForwarder)(address, port)
                current[key] = forwarder
            targets = plan.get(key, ())
            forwarder.update(targets)
            if not targets:
                forwarder.stop_listening()
                continue
            try:
                await forwarder.listen()
            except OSError as error:
                errors.append(f"{forwarder.name}: {error}")
        return errors

    def release(self, address: str) -> None:
        """Close every listener and connection of ``address``."""
        for forwarder in self.forwarders.pop(address, {}).values():
            forwarder.close()

    def close(self) -> None:
        for address in list(self.forwarders):
            self.release(address)
