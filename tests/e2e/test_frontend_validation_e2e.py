"""Client certificate validation at the Gateway (``spec.tls.frontend``) end to end, in standalone mode: manifest
files in, a real Envoy on loopback, Python ``ssl`` clients.

- AllowValidOnly (the default configuration, port 8443): a client without a certificate, and one whose
  certificate another CA signed, are refused in the TLS handshake; one the configured CA signed gets 200.
- AllowInsecureFallback (a perPort entry, port 9443): the client without a certificate, and the one with an
  untrusted certificate, get 200 too.
- The CA ConfigMap edited to the other CA: the other client gets in and the first is refused, and Envoy's
  listeners are not touched (``listener_manager`` stats and the listeners' versions as they were): the CA
  bundle comes by SDS.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mcgw.app.standalone import Standalone, StandaloneOptions
from mcgw.dataplane.process import EnvoyProcess
from tests.e2e.testbed.pki import CertificateAuthority, IssuedCert

HOSTNAME = "mtls.example.com"
STRICT, FALLBACK = 8443, 9443
CA_NAME = "client-ca/infra/public/default"
LISTENER_STATS = ("listener_manager.listener_added", "listener_manager.listener_modified",
                  "listener_manager.listener_removed", "listener_manager.listener_in_place_updated",
                  "listener_manager.lds.update_success", "listener_manager.lds.update_rejected")
# Loopback addresses of this process's backend and Envoy, apart from other tests running at the same time (the
# Envoy asks for its own, rather than the first one of standalone mode's pool, which they would share).
_BASE = f"127.{120 + os.getpid() % 60}.{os.getpid() % 250}"
_BEDS = itertools.count(1)


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"backend\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def backend() -> Iterator[str]:
    address = f"{_BASE}.{next(_BEDS)}"
    server = ThreadingHTTPServer((address, 8080), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield address
    finally:
        server.shutdown()
        server.server_close()


def _indented(pem: bytes, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in pem.decode().strip().splitlines())


def _envoy_address(backend: str) -> str:
    """The Envoy's own loopback address, beside its backend's."""
    prefix, last = backend.rsplit(".", 1)
    return f"{prefix}.{100 + int(last)}"


def _write_gateway(root: Path, server: IssuedCert, client_ca: Path, backend: str) -> None:
    crt, key = (base64.b64encode(path.read_bytes()).decode() for path in (server.cert, server.key))
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
apiVersion: v1
kind: Secret
metadata: {{name: server, namespace: infra}}
type: kubernetes.io/tls
data: {{tls.crt: {crt}, tls.key: {key}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: client-ca, namespace: infra}}
data:
  ca.crt: |
{_indented(client_ca.read_bytes(), 4)}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: public, namespace: infra, generation: 1}}
spec:
  gatewayClassName: mcgw
  addresses: [{{type: IPAddress, value: {_envoy_address(backend)}}}]
  tls:
    frontend:
      default:
        validation:
          caCertificateRefs: [{{group: "", kind: ConfigMap, name: client-ca}}]
      perPort:
        - port: {FALLBACK}
          tls:
            validation:
              mode: AllowInsecureFallback
              caCertificateRefs: [{{group: "", kind: ConfigMap, name: client-ca}}]
  listeners:
    - {{name: strict, port: {STRICT}, protocol: HTTPS, tls: {{certificateRefs: [{{name: server}}]}}}}
    - {{name: fallback, port: {FALLBACK}, protocol: HTTPS, tls: {{certificateRefs: [{{name: server}}]}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: infra}}
spec: {{ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: app-1, namespace: infra, labels: {{kubernetes.io/service-name: app}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints: [{{addresses: [{backend}], conditions: {{ready: true}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: infra}}
spec:
  parentRefs: [{{name: public}}]
  rules: [{{backendRefs: [{{name: app, port: 80}}]}}]
""")


@dataclass
class Bed:
    root: Path
    address: str  # the Envoy's
    envoy: EnvoyProcess
    server: IssuedCert
    server_ca: Path
    backend: str
    trusted: IssuedCert  # signed by the CA the ConfigMap holds first
    other: IssuedCert  # signed by another CA
    other_ca: Path


@pytest.fixture
async def bed(tmp_path: Path, backend: str) -> AsyncIterator[Bed]:
    server_ca = CertificateAuthority(tmp_path / "server-ca", "server-ca")
    server = server_ca.issue("server", HOSTNAME, dns=(HOSTNAME,), server=True)
    client_ca = CertificateAuthority(tmp_path / "client-ca", "client-ca")
    other_ca = CertificateAuthority(tmp_path / "other-ca", "other-ca")
    trusted = client_ca.issue("trusted", "trusted-client", client=True)
    other = other_ca.issue("other", "other-client", client=True)
    root = tmp_path / "clusters"
    (root / "east").mkdir(parents=True)
    (root / "clusterset.yaml").write_text("clusters:\n  - {name: east, region: us-east}\n")
    _write_gateway(root, server, client_ca.cert_path, backend)
    options = StandaloneOptions(root, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    async with Standalone(options) as standalone:
        await standalone.wait_ready()
        assert standalone.fleet is not None
        (managed,) = standalone.fleet.envoys.values()
        yield Bed(root, managed.address, managed.process, server, server_ca.cert_path, backend, trusted, other,
                  other_ca.cert_path)


def _request(bed: Bed, port: int, client: IssuedCert | None) -> int | str:
    """The HTTP status a new TLS connection gets (the client checks the server's certificate), or how the
    connection was refused."""
    context = ssl.create_default_context(cafile=str(bed.server_ca))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    try:
        with socket.create_connection((bed.address, port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=HOSTNAME) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOSTNAME}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    except ssl.SSLError as error:
        return f"refused: {error.reason or type(error).__name__}: {error}"
    except (ConnectionResetError, BrokenPipeError) as error:
        return f"refused: {type(error).__name__}"
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else f"no HTTP answer: {data[:40]!r}"


async def _until(bed: Bed, port: int, client: IssuedCert | None, want: int, within: float = 30.0) -> float:
    """Poll until a new connection gets ``want``; the seconds it took."""
    started = time.monotonic()
    answer: int | str = ""
    while time.monotonic() - started < within:
        answer = await asyncio.to_thread(_request, bed, port, client)
        if answer == want:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"port {port} never answered {want}; last {answer!r}")


def _listener_state(envoy: EnvoyProcess) -> tuple[dict[str, int], dict[str, tuple[str, str]]]:
    """Envoy's listener_manager figures, and (version_info, last_updated) of each dynamic listener."""
    stats = envoy.stats("listener_manager.")
    versions = {listener["name"]: (listener["active_state"]["version_info"], listener["active_state"]["last_updated"])
                for entry in envoy.config_dump()["configs"] for listener in entry.get("dynamic_listeners", [])}
    return {stat: int(stats.get(stat, "0")) for stat in LISTENER_STATS}, versions


def _ca_version(envoy: EnvoyProcess) -> str:
    for entry in envoy.config_dump()["configs"]:
        for secret in entry.get("dynamic_active_secrets", []):
            if secret["name"] == CA_NAME:
                return str(secret.get("version_info", ""))
    raise AssertionError(f"Envoy has no secret {CA_NAME}")


def _refused_by_validation(answer: int | str) -> bool:
    """Refused in the handshake, with no HTTP answer: Envoy's alert (TLS 1.3: certificate required, unknown
    CA), or, when the client reads after Envoy closed, the closed connection."""
    return isinstance(answer, str) and answer.startswith("refused: ")


async def test_valid_only_refuses_clients_without_a_trusted_certificate_and_the_fallback_lets_them_in(
        bed: Bed) -> None:
    await _until(bed, STRICT, bed.trusted, 200)
    answers = {(port, who): await asyncio.to_thread(_request, bed, port, client)
               for port in (STRICT, FALLBACK)
               for who, client in (("none", None), ("other CA", bed.other), ("trusted", bed.trusted))}
    print(f"\nanswers by (port, client certificate): {answers}")
    assert answers[(STRICT, "trusted")] == 200
    assert _refused_by_validation(answers[(STRICT, "none")]), answers[(STRICT, "none")]
    assert _refused_by_validation(answers[(STRICT, "other CA")]), answers[(STRICT, "other CA")]
    assert answers[(FALLBACK, "none")] == answers[(FALLBACK, "other CA")] == answers[(FALLBACK, "trusted")] == 200


async def test_changing_the_ca_config_map_changes_who_gets_in_without_touching_the_listeners(bed: Bed) -> None:
    await _until(bed, STRICT, bed.trusted, 200)
    before = await asyncio.to_thread(_listener_state, bed.envoy)
    version_before = await asyncio.to_thread(_ca_version, bed.envoy)
    _write_gateway(bed.root, bed.server, bed.other_ca, bed.backend)
    seen = await _until(bed, STRICT, bed.other, 200)
    trusted_now = await asyncio.to_thread(_request, bed, STRICT, bed.trusted)
    after = await asyncio.to_thread(_listener_state, bed.envoy)
    version_after = await asyncio.to_thread(_ca_version, bed.envoy)
    print(f"\nthe other CA's client got 200 {seen:.2f}s after the ConfigMap changed; the first CA's client now: "
          f"{trusted_now!r}; listener stats {before[0]} → {after[0]}; listener versions {before[1]} → {after[1]}; "
          f"{CA_NAME} version {version_before} → {version_after}")
    assert _refused_by_validation(trusted_now), trusted_now
    assert after == before, "the CA change touched the listeners"
    assert version_after != version_before
