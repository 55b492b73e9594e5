"""Transport security for the xDS port, and who may read which node group.

With mTLS, a gateway's client certificate names it with a URI SAN
``spiffe://<trust-domain>/<cluster>/<namespace>/<gateway>``; a stream may only read the node group
that identity names, so a gateway in cluster A cannot read cluster B's config.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc
from cryptography import x509

from .cache import NodeGroup

Authorizer = Callable[[Sequence[str], NodeGroup], bool]


class ServerTls(Protocol):
    """What the server needs of its transport security: credentials, and whether clients must prove who
    they are (then every stream is authorised by its certificate's identity)."""

    @property
    def verifies_clients(self) -> bool: ...

    def credentials(self) -> grpc.ServerCredentials: ...


@dataclass(frozen=True)
class TlsConfig:
    """Server certificate and key (PEM files); with ``client_ca``, clients must present a certificate."""

    cert_chain: Path
    private_key: Path
    client_ca: Path | None = None

    @property
    def verifies_clients(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key.read_bytes(), self.cert_chain.read_bytes())],
            root_certificates=self.client_ca.read_bytes() if self.client_ca else None,
            require_client_auth=self.client_ca is not None,
        )


@dataclass(frozen=True, repr=False)
class ServerCertificate:
    """PEM: the server's key and certificate chain, and the CA bundle client certificates must chain to."""

    private_key: bytes
    cert_chain: bytes
    client_ca: bytes


class RotatingTls:
    """mTLS whose certificate can change while the server runs: ``source`` is asked on every handshake
    (it must be cheap and thread-safe: gRPC's core threads call it) and a changed answer is used from the
    next handshake on. Established connections, and so their streams, are untouched."""

    verifies_clients = True

    def __init__(self, source: Callable[[], ServerCertificate]) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._current = source()

    @staticmethod
    def _config(certificate: ServerCertificate) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(certificate.private_key, certificate.cert_chain)], root_certificates=certificate.client_ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            latest = self._source()
        except Exception:  # keep serving with the certificate in use; the source logs its own trouble
            return None
        with self._lock:
            if latest == self._current:
                return None
            self._current = latest
        return self._config(latest)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self._config(self._current), self._fetch,
                                                   require_client_authentication=True)


def spiffe_id(group: NodeGroup, trust_domain: str = "mcgw") -> str:
    """The identity that may read ``group``: ``spiffe://mcgw/<cluster>/<namespace>/<gateway>``."""
    cluster, gateway = group
    return f"spiffe://{trust_domain}/{cluster}/{gateway}"


def spiffe_authorizer(trust_domain: str = "mcgw") -> Authorizer:
    def authorize(peer_uris: Sequence[str], group: NodeGroup) -> bool:
        return spiffe_id(group, trust_domain) in peer_uris

    return authorize


def peer_uri_sans(auth_context: Mapping[str, Sequence[bytes]]) -> list[str]:
    """The URI SANs of the peer's certificate, read from the gRPC auth context."""
    pems = auth_context.get("x509_pem_cert") or []
    if not pems:
        return []
    certificate = x509.load_pem_x509_certificate(pems[0])
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(extension.value.get_values_for_type(x509.UniformResourceIdentifier))
