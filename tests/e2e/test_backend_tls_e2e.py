"""BackendTLSPolicy end to end, in standalone mode: manifest files in, real Envoys on loopback, and Python
``ssl`` servers as the backends (issue 14's acceptance).

- A policy with the hostname the backend's certificate has: requests reach it over TLS, with that SNI.
- The hostname edited to one the certificate lacks: requests fail, and the backend only ever sees TLS
  handshakes (every connection starts with a TLS record; no HTTP request arrives): nothing in plaintext.
- The same through a ServiceImport exported by two clusters (the policy of the Gateway's cluster covers
  every cluster's endpoints), and while the local cluster's backend stops: no request fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mcgw.app.standalone import Standalone, StandaloneOptions
from tests.e2e.testbed.pki import CertificateAuthority

HOSTNAME = "secure.example.com"
TLS_RECORD_HANDSHAKE = 0x16
# Loopback addresses of this process's backends, apart from other tests running at the same time.
_BASE = f"127.{60 + os.getpid() % 60}.{os.getpid() % 250}"
_BEDS = itertools.count()


@dataclass
class TlsBackend:
    """A TLS-only HTTP server on one loopback address: answers JSON naming its cluster and the SNI it got,
    and records the first byte of every connection (a TLS handshake record, or plaintext)."""

    cluster: str
    address: str
    context: ssl.SSLContext
    port: int = 8443
    first_bytes: list[int] = field(default_factory=list)
    requests: int = 0
    peers: list[dict[str, object]] = field(default_factory=list)  # the client certificate of each handshake
    refused: int = 0  # handshakes that failed (a client certificate required and missing, say)
    _sock: socket.socket | None = None

    def __post_init__(self) -> None:
        self._sni: dict[int, str | None] = {}
        self._open: set[socket.socket] = set()

        def remember(connection: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext) -> None:
            self._sni[id(connection)] = name

        self.context.sni_callback = remember

    def start(self) -> None:
        sock = socket.create_server((self.address, self.port), reuse_port=False)
        sock.settimeout(0.2)
        self._sock = sock
        threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def stop(self) -> None:
        """Stop listening and drop every open connection, as a backend that dies would."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for conn in list(self._open):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _serve(self, sock: socket.socket) -> None:
        while self._sock is sock:
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        self._open.add(conn)
        try:
            first = conn.recv(1, socket.MSG_PEEK)
            if not first:
                return
            self.first_bytes.append(first[0])
            try:
                tls = self.context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                self.refused += 1
                return
            with tls:
                self.peers.append(dict(tls.getpeercert() or {}))
                sni = self._sni.pop(id(tls), None)
                self._open.add(tls)  # the TLS socket owns the connection now
                try:
                    while True:  # keep-alive: one answer per request
                        data = b""
                        while b"\r\n\r\n" not in data:
                            chunk = tls.recv(4096)
                            if not chunk:
                                return
                            data += chunk
                        self.requests += 1
                        body = json.dumps({"cluster": self.cluster, "sni": sni}).encode()
                        tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                                    + str(len(body)).encode() + b"\r\n\r\n" + body)
                finally:
                    self._open.discard(tls)
        except (OSError, ssl.SSLError):
            return
        finally:
            self._open.discard(conn)
            conn.close()


def _cluster_files(root: Path, ca_pem: str, east: TlsBackend, west: TlsBackend, hostname: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "clusterset.yaml").write_text(
        "clusters:\n  - {name: east, region: us-east, failoverOrder: [west]}\n  - {name: west, region: us-west}\n")
    for backend in (east, west):
        directory = root / backend.cluster
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "app.yaml").write_text(f"""
apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: v1
kind: Service
metadata: {{name: secure, namespace: shop}}
spec: {{ports: [{{name: https, port: 443, targetPort: 8443}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: secure-1, namespace: shop, labels: {{kubernetes.io/service-name: secure}}}}
addressType: IPv4
ports: [{{name: https, port: {backend.port}}}]
endpoints: [{{addresses: [{backend.address}], conditions: {{ready: true}}}}]
---
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceExport
metadata: {{name: secure, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z"}}
""")
    ca = "\n".join("    " + line for line in ca_pem.strip().splitlines())
    (root / "east" / "gateway.yaml").write_text(f"""
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: mcgw}}
spec: {{controllerName: mcgw.io/gateway-controller}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: infra}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: public, namespace: infra, generation: 1}}
spec:
  gatewayClassName: mcgw
  listeners: [{{name: http, port: 8080, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: secure, namespace: shop, generation: 1}}
spec:
  parentRefs: [{{name: public, namespace: infra}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /local}}}}]
      backendRefs: [{{name: secure, port: 443}}]
    - matches: [{{path: {{type: PathPrefix, value: /import}}}}]
      backendRefs: [{{group: multicluster.x-k8s.io, kind: ServiceImport, name: secure, port: 443}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: backend-ca, namespace: shop}}
data:
  ca.crt: |
{ca}
""")
    _write_policy(root, hostname)


def _write_policy(root: Path, hostname: str) -> None:
    (root / "east" / "policy.yaml").write_text(f"""
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: secure, namespace: shop, generation: 1, creationTimestamp: "2026-01-01T00:00:00Z"}}
spec:
  targetRefs: [{{group: "", kind: Service, name: secure}}]
  validation:
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: backend-ca}}]
    hostname: {hostname}
""")


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


async def _until(url: str, want: int, within: float = 20.0) -> tuple[int, dict[str, object]]:
    deadline = time.monotonic() + within
    answer: tuple[int, dict[str, object]] = (0, {})
    while time.monotonic() < deadline:
        answer = await asyncio.to_thread(_get, url)
        if answer[0] == want:
            return answer
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered {want}; last {answer}")


@dataclass
class Bed:
    root: Path
    east: TlsBackend
    west: TlsBackend
    gateway: str  # http://address:8080


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[Bed]:
    authority = CertificateAuthority(tmp_path / "pki", "backend-ca")
    issued = authority.issue("backend", HOSTNAME, dns=(HOSTNAME,), server=True)

    def context() -> ssl.SSLContext:
        made = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        made.load_cert_chain(issued.cert, issued.key)
        return made

    beds = next(_BEDS)  # addresses of its own: a stopped server's socket lingers briefly
    east = TlsBackend("east", f"{_BASE}.{2 * beds + 1}", context())
    west = TlsBackend("west", f"{_BASE}.{2 * beds + 2}", context())
    root = tmp_path / "clusters"
    _cluster_files(root, authority.cert_path.read_text(), east, west, HOSTNAME)
    east.start()
    west.start()
    options = StandaloneOptions(root, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    try:
        async with Standalone(options) as standalone:
            await standalone.wait_ready()
            assert standalone.fleet is not None
            (envoy,) = [m for (cluster, _), m in standalone.fleet.envoys.items() if cluster == "east"]
            yield Bed(root, east, west, f"http://{envoy.address}:8080")
    finally:
        east.stop()
        west.stop()


async def test_tls_with_the_right_hostname_and_no_plaintext_with_a_wrong_one(bed: Bed) -> None:
    status, body = await _until(f"{bed.gateway}/local", 200)
    assert body == {"cluster": "east", "sni": HOSTNAME}
    status, body = await _until(f"{bed.gateway}/import", 200)
    assert body["sni"] == HOSTNAME
    assert body["cluster"] == "east"  # the local cluster is preferred

    _write_policy(bed.root, "wrong.example.com")  # a hostname the backend's certificate lacks
    await _until(f"{bed.gateway}/local", 503)
    await _until(f"{bed.gateway}/import", 503)
    served = bed.east.requests + bed.west.requests
    for path in ("/local", "/import") * 5:
        status, _ = await asyncio.to_thread(_get, f"{bed.gateway}{path}")
        assert status >= 500
    assert bed.east.requests + bed.west.requests == served, "no request reached a backend"
    firsts = bed.east.first_bytes + bed.west.first_bytes
    assert firsts
    assert set(firsts) == {TLS_RECORD_HANDSHAKE}, "every connection was a TLS handshake, never plaintext"

    _write_policy(bed.root, HOSTNAME)
    status, body = await _until(f"{bed.gateway}/local", 200)
    assert body == {"cluster": "east", "sni": HOSTNAME}


async def test_a_service_import_fails_over_between_tls_backends_without_a_failed_request(bed: Bed) -> None:
    await _until(f"{bed.gateway}/import", 200)
    statuses: list[int] = []
    clusters: list[object] = []
    stop_at = time.monotonic() + 1.5
    deadline = stop_at + 3.0
    while time.monotonic() < deadline:
        if bed.east._sock is not None and time.monotonic() >= stop_at:
            bed.east.stop()  # east's only backend goes away: its requests move to west, over TLS too
        status, body = await asyncio.to_thread(_get, f"{bed.gateway}/import")
        statuses.append(status)
        clusters.append(body.get("cluster"))
        await asyncio.sleep(0.01)
    print(f"\n{len(statuses)} requests, {clusters.count('east')} east, {clusters.count('west')} west")
    assert [s for s in statuses if s != 200] == []
    assert clusters[0] == "east"
    assert clusters[-1] == "west"
    assert bed.west.first_bytes
    assert set(bed.west.first_bytes) == {TLS_RECORD_HANDSHAKE}
