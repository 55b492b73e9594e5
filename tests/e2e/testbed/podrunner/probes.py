"""Readiness, liveness and startup probes: their parsing and thresholds (pure) and the checks themselves.

Checks run from the host to the pod's IP, which the host reaches over the cluster bridge, as a kubelet
probes from the node. httpGet succeeds on 200-399 (redirects are not followed), tcpSocket on a completed
connect, grpc on SERVING from grpc.health.v1, exec on exit code 0 (run by the caller inside the container).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

Json = dict[str, Any]
USER_AGENT = "kube-probe/1.37"


class ProbeError(ValueError):
    """A probe the runner cannot run (for instance a named port the container does not declare)."""


@dataclass(frozen=True)
class HttpGet:
    port: int
    path: str = "/"
    scheme: str = "HTTP"
    host: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TcpSocket:
    port: int
    host: str = ""


@dataclass(frozen=True)
class Grpc:
    port: int
    service: str = ""


@dataclass(frozen=True)
class Exec:
    command: tuple[str, ...]


Action = HttpGet | TcpSocket | Grpc | Exec


@dataclass(frozen=True)
class Probe:
    action: Action
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


def resolve_port(port: int | str, container: Json) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for declared in container.get("ports", []) or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ProbeError(f"port {port!r} is not a named port of container {container.get('name')!r}")


def parse_probe(spec: Json, container: Json) -> Probe:
    if "httpGet" in spec:
        get = spec["httpGet"]
        action: Action = HttpGet(resolve_port(get["port"], container), get.get("path", "/") or "/",
                                 get.get("scheme", "HTTP").upper(), get.get("host", ""),
                                 tuple((h["name"], h["value"]) for h in get.get("httpHeaders", []) or []))
    elif "tcpSocket" in spec:
        action = TcpSocket(resolve_port(spec["tcpSocket"]["port"], container), spec["tcpSocket"].get("host", ""))
    elif "grpc" in spec:
        action = Grpc(int(spec["grpc"]["port"]), spec["grpc"].get("service", "") or "")
    elif "exec" in spec:
        action = Exec(tuple(spec["exec"].get("command", []) or []))
    else:
        raise ProbeError(f"probe without a handler: {sorted(spec)}")
    return Probe(action, float(spec.get("initialDelaySeconds", 0)), float(spec.get("periodSeconds", 10) or 10),
                 float(spec.get("timeoutSeconds", 1) or 1), int(spec.get("successThreshold", 1) or 1),
                 int(spec.get("failureThreshold", 3) or 3))


@dataclass
class Tracker:
    """A probe's result, which flips only after ``success_threshold`` successes or ``failure_threshold``
    failures in a row."""

    result: bool
    success_threshold: int = 1
    failure_threshold: int = 3
    _successes: int = field(default=0, repr=False)
    _failures: int = field(default=0, repr=False)

    @classmethod
    def for_probe(cls, probe: Probe, initial: bool) -> Tracker:
        return cls(initial, probe.success_threshold, probe.failure_threshold)

    def observe(self, ok: bool) -> bool:
        """Record one check; returns whether the result changed."""
        if ok:
            self._successes, self._failures = self._successes + 1, 0
            if not self.result and self._successes >= self.success_threshold:
                self.result = True
                return True
        else:
            self._failures, self._successes = self._failures + 1, 0
            if self.result and self._failures >= self.failure_threshold:
                self.result = False
                return True
        return False


ExecRunner = Callable[[Sequence[str], float], Awaitable[int]]


def _grpc_request(service: str) -> bytes:
    data = service.encode()
    if not data:
        return b""
    length, prefix = len(data), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        prefix.append(byte | (0x80 if length else 0))
        if not length:
            break
    return b"\x0a" + bytes(prefix) + data


async def _grpc_serving(address: str, port: int, service: str, seconds: float) -> bool:
    import grpc  # imported only when a pod has a grpc probe: it is heavy

    async with grpc.aio.insecure_channel(f"{address}:{port}") as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)
        answer = await check(_grpc_request(service), timeout=seconds)
        return bytes(answer) == b"\x08\x01"  # status: SERVING


async def check(action: Action, pod_ip: str, seconds: float, session: aiohttp.ClientSession,
                run_exec: ExecRunner | None = None) -> tuple[bool, str]:
    """One probe check: ``(success, detail)``."""
    try:
        if isinstance(action, HttpGet):
            host = action.host or pod_ip
            headers: Mapping[str, str] = {"User-Agent": USER_AGENT, "Accept": "*/*", **dict(action.headers)}
            path = action.path if action.path.startswith("/") else "/" + action.path
            url = f"{action.scheme.lower()}://{host}:{action.port}{path}"
            async with session.get(url, headers=headers, allow_redirects=False, ssl=False,
                                   timeout=aiohttp.ClientTimeout(total=seconds)) as response:
                await response.read()
                return 200 <= response.status < 400, f"HTTP probe answered {response.status}"
        if isinstance(action, TcpSocket):
            _, writer = await asyncio.wait_for(asyncio.open_connection(action.host or pod_ip, action.port), seconds)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True, "connected"
        if isinstance(action, Grpc):
            ok = await _grpc_serving(pod_ip, action.port, action.service, seconds)
            return ok, "SERVING" if ok else "not SERVING"
        if run_exec is None:
            return False, "exec probes need a running container"
        code = await run_exec(action.command, seconds)
        return code == 0, f"command exited with {code}"
    except (OSError, TimeoutError, aiohttp.ClientError) as error:
        return False, f"{type(error).__name__}: {error}"
    except Exception as error:  # a gRPC error, for one: every failure is a failed check
        return False, f"{type(error).__name__}: {error}"
