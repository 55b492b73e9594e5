"""Transport security for the xDS port, and who may read which node group.

With mTLS, a gateway's client certificate names it with a URI SAN
``spiffe://<trust-domain>/<cluster>/<namespace>/<gateway>``; a stream may only read the node group
that identity names, so a gateway in cluster A cannot read cluster B's config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509

from .cache import NodeGroup

Authorizer = Callable[[Sequence[str], NodeGroup], bool]


@dataclass(frozen=True)
class TlsConfig:
    """Server certificate and key (PEM files); with ``client_ca``, clients must present a certificate."""

    cert_chain: Path
    private_key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key.read_bytes(), self.cert_chain.read_bytes())],
            root_certificates=self.client_ca.read_bytes() if self.client_ca else None,
            require_client_auth=self.client_ca is not None,
        )


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
