"""Misdirected requests (421) end to end, in standalone mode: four HTTPS listeners on one port of a real Envoy,
requests from a Python ``ssl`` client whose SNI chooses one listener and whose Host header may belong to
another.

A Host another listener serves (more specifically, or while the chosen one does not serve it at all) is
421, so a client that reused the connection retries on one of its own; a Host no listener serves is 404;
the chosen listener's own hosts reach its routes. On one kept-alive connection, a 421 leaves the connection
usable for the listener's own hosts.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcgw.app.standalone import Standalone, StandaloneOptions
from tests.e2e.test_backend_tls_e2e import _BASE, _BEDS
from tests.mcgw.certs import self_signed

PORT = 8443
# (SNI, Host, expected status, the backend that answers), as the Gateway API's conformance test has them.
CASES = [
    ("example.org", "example.org", 200, "v1"),
    ("example.org", "second-example.org", 421, None),
    ("example.org", "unknown-example.org", 404, None),
    ("second-example.org", "second-example.org", 200, "v2"),
    ("second-example.org", "example.org", 421, None),
    ("second-example.org", "unknown-example.org", 421, None),
    ("third-example.wildcard.org", "third-example.wildcard.org", 200, "v3"),
    ("third-example.wildcard.org", "fifth-example.wildcard.org", 200, "v3"),
    ("third-example.wildcard.org", "fourth-example.wildcard.org", 421, None),
    ("third-example.wildcard.org", "second-example.org", 421, None),
    ("third-example.wildcard.org", "unknown-example.org", 421, None),
    ("fourth-example.wildcard.org", "fourth-example.wildcard.org", 200, "v1"),
    ("fourth-example.wildcard.org", "fifth-example.wildcard.org", 421, None),
    ("unknown-example.org", "example.org", 200, "v1"),
    ("unknown-example.org", "unknown-example.org", 404, None),
]


class _Named(http.server.BaseHTTPRequestHandler):
    """Answers every request with the name of its server."""

    def do_GET(self) -> None:
        body = json.dumps({"backend": getattr(self.server, "backend_name", "")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


class Client:
    """One TLS connection to the gateway with a chosen SNI; HTTP/1.1 requests on it, kept alive."""

    def __init__(self, address: str, sni: str) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # a self-signed test certificate; the SNI is what matters here
        raw = socket.create_connection((address, PORT), timeout=5)
        self.tls = context.wrap_socket(raw, server_hostname=sni)
        self._buffer = b""

    def get(self, host: str, path: str = "/misdirected") -> tuple[int, dict[str, object]]:
        self.tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        while b"\r\n\r\n" not in self._buffer:
            chunk = self.tls.recv(65536)
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            self._buffer += chunk
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            self._buffer += self.tls.recv(65536)
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        parsed = json.loads(body) if headers.get("content-type") == "application/json" else {}
        return int(lines[0].split()[1]), parsed

    def close(self) -> None:
        self.tls.close()


def _files(root: Path, backends: dict[str, str]) -> None:
    directory = root / "east"
    directory.mkdir(parents=True, exist_ok=True)
    cert = self_signed("*.example.org")
    listeners = [("https", None), ("https-with-hostname", "second-example.org"),
                 ("https-with-wildcard-hostname", "*.wildcard.org"),
                 ("https-with-hostname-matching-wildcard", "fourth-example.wildcard.org")]
    documents = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
         "spec": {"controllerName": "mcgw.io/gateway-controller"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "infra"}},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": "cert", "namespace": "infra"}, "data": cert},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "public", "namespace": "infra", "generation": 1},
         "spec": {"gatewayClassName": "mcgw", "listeners": [
             {"name": name, "port": PORT, "protocol": "HTTPS", **({"hostname": hostname} if hostname else {}),
              "tls": {"certificateRefs": [{"name": "cert"}]}} for name, hostname in listeners]}},
    ]
    for version, address in backends.items():
        documents += [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": version, "namespace": "infra"},
             "spec": {"ports": [{"name": "http", "port": 8080}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": f"{version}-1", "namespace": "infra",
                          "labels": {"kubernetes.io/service-name": version}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
             "endpoints": [{"addresses": [address], "conditions": {"ready": True}}]}]
    for i, (section, backend, hostnames) in enumerate([("https", "v1", ["example.org"]),
                                                       ("https-with-hostname", "v2", []),
                                                       ("https-with-wildcard-hostname", "v3", []),
                                                       ("https-with-hostname-matching-wildcard", "v1", [])]):
        documents.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                          "metadata": {"name": f"route-{i}", "namespace": "infra", "generation": 1},
                          "spec": {"parentRefs": [{"name": "public", "sectionName": section}],
                                   "hostnames": hostnames,
                                   "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/misdirected"}}],
                                              "backendRefs": [{"name": backend, "port": 8080}]}]}})
    (directory / "objects.yaml").write_text("\n---\n".join(json.dumps(d) for d in documents))


@dataclass
class Bed:
    address: str  # the gateway's Envoy


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[Bed]:
    base = 2 * next(_BEDS) + 100
    servers = {}
    for i, version in enumerate(("v1", "v2", "v3")):
        server = http.server.ThreadingHTTPServer((f"{_BASE}.{base + i}", 8080), _Named)
        server.backend_name = version  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[version] = server
    root = tmp_path / "clusters"
    _files(root, {version: server.server_address[0] for version, server in servers.items()})  # type: ignore[misc]
    options = StandaloneOptions(root, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    try:
        async with Standalone(options) as standalone:
            await standalone.wait_ready()
            assert standalone.fleet is not None
            (envoy,) = standalone.fleet.envoys.values()
            yield Bed(envoy.address)
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


def _answer(address: str, sni: str, host: str) -> tuple[int, object]:
    client = Client(address, sni)
    try:
        status, body = client.get(host)
        return status, body.get("backend")
    finally:
        client.close()


async def _configured(bed: Bed, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if await asyncio.to_thread(_answer, bed.address, "example.org", "example.org") == (200, "v1"):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "the gateway never served its routes"
        await asyncio.sleep(0.1)


async def test_a_host_of_another_listener_is_421_and_one_of_no_listener_404(bed: Bed) -> None:
    await _configured(bed)
    answers = [(sni, host, *await asyncio.to_thread(_answer, bed.address, sni, host)) for sni, host, _, _ in CASES]
    assert answers == [(sni, host, status, backend) for sni, host, status, backend in CASES]
    print(f"\n{len(CASES)} SNI/Host pairs: {sum(s == 421 for _, _, s, _ in CASES)} answered 421, "
          f"{sum(s == 404 for _, _, s, _ in CASES)} 404, {sum(s == 200 for _, _, s, _ in CASES)} routed")


async def test_a_reused_connection_gets_421_for_another_listeners_host_and_stays_usable(bed: Bed) -> None:
    await _configured(bed)
    client = await asyncio.to_thread(Client, bed.address, "second-example.org")
    try:
        assert (await asyncio.to_thread(client.get, "second-example.org"))[0] == 200
        assert (await asyncio.to_thread(client.get, "example.org"))[0] == 421  # coalesced: retry elsewhere
        assert (await asyncio.to_thread(client.get, "third-example.wildcard.org"))[0] == 421
        status, body = await asyncio.to_thread(client.get, "second-example.org")
        assert (status, body) == (200, {"backend": "v2"})
    finally:
        client.close()
