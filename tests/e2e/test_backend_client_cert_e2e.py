"""The Gateway's client certificate toward backends (``spec.tls.backend.clientCertificateRef``) end to end, in
standalone mode: real Envoys on loopback and a Python ``ssl`` backend that requires a client certificate from
its own CA.

Two Gateways route to the same backend over TLS (one BackendTLSPolicy, so one Envoy cluster name in both
snapshots). The one with a client certificate is answered, and the backend sees that certificate's subject
and SAN; the one without is refused at the handshake and no request reaches the backend, nothing in
plaintext. Taking the reference away (and giving it back) takes effect on the running Envoy.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcgw.app.standalone import Standalone, StandaloneOptions
from tests.e2e.test_backend_tls_e2e import _BASE, _BEDS, HOSTNAME, TLS_RECORD_HANDSHAKE, TlsBackend, _get, _until
from tests.e2e.testbed.pki import CertificateAuthority

GATEWAY_CN = "public.infra.gateway"
GATEWAY_SAN = "spiffe://example.com/ns/infra/gateway/public"


def _gateways(client_certificate: bool) -> str:
    reference = "\n  tls: {backend: {clientCertificateRef: {name: gateway-client, namespace: certs}}}" \
        if client_certificate else ""
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: public, namespace: infra, generation: 1}}
spec:
  gatewayClassName: mcgw
  listeners: [{{name: http, port: 8080, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}]{reference}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: other, namespace: infra, generation: 1}}
spec:
  gatewayClassName: mcgw
  listeners: [{{name: http, port: 8080, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}]
"""


def _files(root: Path, backend: TlsBackend, server_ca: str, client_cert: str, client_key: str) -> None:
    directory = root / "east"
    directory.mkdir(parents=True, exist_ok=True)
    ca = "\n".join("    " + line for line in server_ca.strip().splitlines())
    (directory / "objects.yaml").write_text(f"""
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
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: certs}}
---
apiVersion: v1
kind: Secret
metadata: {{name: gateway-client, namespace: certs}}
type: kubernetes.io/tls
data: {{tls.crt: {client_cert}, tls.key: {client_key}}}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: gateways, namespace: certs}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}}]
  to: [{{group: "", kind: Secret, name: gateway-client}}]
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
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: secure, namespace: shop, generation: 1}}
spec:
  parentRefs: [{{name: public, namespace: infra}}, {{name: other, namespace: infra}}]
  rules: [{{backendRefs: [{{name: secure, port: 443}}]}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: backend-ca, namespace: shop}}
data:
  ca.crt: |
{ca}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: secure, namespace: shop, generation: 1}}
spec:
  targetRefs: [{{group: "", kind: Service, name: secure}}]
  validation:
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: backend-ca}}]
    hostname: {HOSTNAME}
""")
    (directory / "gateways.yaml").write_text(_gateways(client_certificate=True))


@dataclass
class Bed:
    root: Path
    backend: TlsBackend
    public: str  # http://address:8080 of the Gateway with a client certificate
    other: str  # of the one without


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[Bed]:
    server_ca = CertificateAuthority(tmp_path / "server-pki", "backend-ca")
    serving = server_ca.issue("backend", HOSTNAME, dns=(HOSTNAME,), server=True)
    client_ca = CertificateAuthority(tmp_path / "client-pki", "gateway-client-ca")
    client = client_ca.issue("gateway", GATEWAY_CN, uris=(GATEWAY_SAN,), client=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(serving.cert, serving.key)
    context.verify_mode = ssl.CERT_REQUIRED  # only clients with a certificate from the gateways' CA
    context.load_verify_locations(client_ca.cert_path)
    backend = TlsBackend("east", f"{_BASE}.{2 * next(_BEDS) + 1}", context)
    root = tmp_path / "clusters"
    _files(root, backend, server_ca.cert_path.read_text(), base64.b64encode(client.cert.read_bytes()).decode(),
           base64.b64encode(client.key.read_bytes()).decode())
    backend.start()
    options = StandaloneOptions(root, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    try:
        async with Standalone(options) as standalone:
            await standalone.wait_ready()
            assert standalone.fleet is not None
            addresses = {key[1]: envoy.address for key, envoy in standalone.fleet.envoys.items()}
            yield Bed(root, backend, f"http://{addresses[('infra', 'public')]}:8080",
                      f"http://{addresses[('infra', 'other')]}:8080")
    finally:
        backend.stop()


async def _refused(bed: Bed, url: str, attempts: int = 10) -> None:
    """Every request fails, and none reaches the backend: its handshakes are refused."""
    served, refused = bed.backend.requests, bed.backend.refused
    for _ in range(attempts):
        status, _ = await asyncio.to_thread(_get, url)
        assert status >= 500
    assert bed.backend.requests == served, "no request reached the backend"
    assert bed.backend.refused > refused, "the backend refused handshakes without a client certificate"


def _subject(peer: dict[str, object]) -> tuple[str, object]:
    subject = dict(item[0] for item in peer["subject"])  # type: ignore[attr-defined]
    return subject["commonName"], peer["subjectAltName"]


async def test_the_gateway_presents_its_certificate_and_a_gateway_without_one_is_refused(bed: Bed) -> None:
    status, body = await _until(f"{bed.public}/", 200)
    assert body == {"cluster": "east", "sni": HOSTNAME}
    assert _subject(bed.backend.peers[-1]) == (GATEWAY_CN, (("URI", GATEWAY_SAN),))
    served = bed.backend.requests
    for _ in range(20):
        status, body = await asyncio.to_thread(_get, f"{bed.public}/")
        assert status == 200
    assert bed.backend.requests == served + 20
    assert {_subject(peer) for peer in bed.backend.peers} == {(GATEWAY_CN, (("URI", GATEWAY_SAN),))}

    # The other Gateway shares the backend (the same cluster name) but has no client certificate.
    await _until(f"{bed.other}/", 503)
    await _refused(bed, f"{bed.other}/")

    (bed.root / "east" / "gateways.yaml").write_text(_gateways(client_certificate=False))
    removed_at = time.monotonic()
    await _until(f"{bed.public}/", 503)
    removal = time.monotonic() - removed_at
    await _refused(bed, f"{bed.public}/")

    (bed.root / "east" / "gateways.yaml").write_text(_gateways(client_certificate=True))
    restored_at = time.monotonic()
    await _until(f"{bed.public}/", 200)
    restore = time.monotonic() - restored_at
    assert _subject(bed.backend.peers[-1]) == (GATEWAY_CN, (("URI", GATEWAY_SAN),))
    assert bed.backend.first_bytes
    assert set(bed.backend.first_bytes) == {TLS_RECORD_HANDSHAKE}, "every connection was TLS, never plaintext"
    print(f"\n{bed.backend.requests} requests served, {len(bed.backend.peers)} handshakes with the gateway's "
          f"certificate, {bed.backend.refused} refused; the reference removed took effect in {removal:.2f} s, "
          f"restored in {restore:.2f} s")
