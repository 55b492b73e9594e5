"""Small networking helpers shared by the demo, standalone mode and the test bed."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def split_host_port(value: str) -> tuple[str, int]:
    """``"host:port"`` (IPv6 as ``"[::1]:port"``) → ``(host, port)``; a clear ValueError otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (for example 127.0.0.1:18000)")
    return host.strip("[]"), int(port)
