"""Who may talk to ``mcgw run``'s xDS server: the server's certificate and each provisioned Gateway's
client certificate, issued by mcgw's CA and replaced before they expire.

- The server certificate names where Envoys dial (``RunConfig.server_hosts``); ``server_certificate`` is
  asked on every TLS handshake (``xdsserver.RotatingTls``) and issues a new one once two thirds of the
  lifetime have passed, so established streams are never dropped for a rotation.
- A Gateway's credentials (``for_gateway``) are what its Secret already holds when that is still good
  (signed by this CA, naming the Gateway, not due), else the ones issued earlier in this process, else
  new ones. So a restarted or newly elected mcgw does not reissue every Gateway's certificate, and
  replicas that are not leading (which render too, but write nothing) do not fight over the Secret.
- ``next_renewal`` tells provisioning when to render a cluster again.
- ``replace_ca`` takes a CA read again from its Secret (a CA rotation, see docs/security.md): the server
  certificate is reissued at the next handshake, certificates the new signer did not sign are reissued at
  the next render, and the others keep their key and only gain the new trust bundle.

Thread-safe: provisioning renders in a worker thread and gRPC's core threads ask for the server's
certificate.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes

from mcgw.objects.model import Secret
from mcgw.provisioning import MANAGED_BY, MANAGED_BY_LABEL
from mcgw.provisioning.ca import CertificateAuthority, Credentials, renew_at, spiffe_uri
from xdsserver import ServerCertificate

GatewayRef = tuple[str, str, str]  # (cluster, namespace, gateway)


def _decoded(secret: Secret, key: str) -> bytes:
    return base64.b64decode(secret.data.get(key, ""))


class XdsIdentities:
    """The CA's certificates for the xDS server and the provisioned Gateways (see the module docstring)."""

    def __init__(self, ca: CertificateAuthority, trust_domain: str, lifetime: dt.timedelta,
                 server_hosts: Iterable[str]) -> None:
        self.ca = ca
        self.trust_domain = trust_domain
        self.lifetime = lifetime
        self.server_hosts = tuple(server_hosts)
        self._lock = threading.Lock()
        self._server: Credentials | None = None
        self._issued: dict[GatewayRef, Credentials] = {}
        self._checked: dict[GatewayRef, tuple[Secret, Credentials | None]] = {}  # the stored Secret, judged
        self.issued_count = 0

    def _due(self, credentials: Credentials) -> bool:
        return self.ca.clock() >= renew_at(credentials)

    def server_credentials(self) -> Credentials:
        with self._lock:
            if self._server is None or self._due(self._server):
                self._server = self.ca.issue_server(self.server_hosts, self.lifetime)
            return self._server

    def server_certificate(self) -> ServerCertificate:
        credentials = self.server_credentials()
        return ServerCertificate(credentials.key, credentials.cert, credentials.ca)

    def uri(self, cluster: str, namespace: str, gateway: str) -> str:
        return spiffe_uri(self.trust_domain, cluster, namespace, gateway)

    def _stored(self, ref: GatewayRef, stored: Secret | None) -> Credentials | None:
        if stored is None or stored.metadata.labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
            return None
        checked = self._checked.get(ref)
        if checked is None or checked[0] is not stored:
            credentials = self.ca.still_good(_decoded(stored, "tls.crt"), _decoded(stored, "tls.key"),
                                             self.uri(*ref), self.lifetime)
            self._checked[ref] = checked = (stored, credentials)
        if checked[1] is not None and self._due(checked[1]):
            return None
        return checked[1]

    def for_gateway(self, cluster: str, namespace: str, gateway: str, stored: Secret | None) -> Credentials:
        """The client credentials Gateway ``namespace/gateway`` of ``cluster`` should have now."""
        ref = (cluster, namespace, gateway)
        with self._lock:
            kept = self._stored(ref, stored)
            if kept is not None:
                self._issued[ref] = kept
                return kept
            issued = self._issued.get(ref)
            if issued is None or self._due(issued):
                issued = self._issued[ref] = self.ca.issue_client(self.uri(*ref), self.lifetime)
                self.issued_count += 1
            return issued

    def replace_ca(self, ca: CertificateAuthority) -> None:
        """Sign and verify with ``ca`` from now on (see the module docstring)."""
        with self._lock:
            self.ca = ca
            self._server = None
            self._checked.clear()
            kept = {ref: ca.still_good(c.cert, c.key, self.uri(*ref), self.lifetime) for ref, c in self._issued.items()}
            self._issued = {ref: c for ref, c in kept.items() if c is not None}

    def retain(self, cluster: str, gateways: Iterable[tuple[str, str]]) -> None:
        """Forget the credentials of ``cluster``'s Gateways that are not in ``gateways``."""
        keep = {(cluster, namespace, name) for namespace, name in gateways}
        with self._lock:
            for table in (self._issued, self._checked):
                for ref in [r for r in table if r[0] == cluster and r not in keep]:
                    del table[ref]

    def next_renewal(self, cluster: str) -> dt.datetime | None:
        """The earliest time a Gateway of ``cluster`` is due for a new certificate."""
        with self._lock:
            due = [renew_at(c) for (name, _, _), c in self._issued.items() if name == cluster]
        return min(due, default=None)

    def status(self) -> dict[str, object]:
        """For /api/status: never a key, only what identifies the CA and when the server certificate ends."""
        server = self._server
        ca = self.ca
        return {"ca": ca.certificate.subject.rfc4514_string(),
                "caFingerprintSha256": ca.certificate.fingerprint(hashes.SHA256()).hex(),
                "trustedCas": ca.trust_pem.count(b"-----BEGIN CERTIFICATE-----"),
                "trustDomain": self.trust_domain,
                "certificateLifetimeSeconds": self.lifetime.total_seconds(),
                "serverNames": list(self.server_hosts),
                "serverCertificateNotAfter": server.not_after.isoformat() if server else None,
                "clientCertificatesIssued": self.issued_count}
