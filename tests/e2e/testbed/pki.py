"""Certificates for tests: a small CA, and one cluster's API server, admin and service-account keys.

Generated with ``cryptography`` on each start, so no key material is ever committed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=2)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class IssuedCert:
    """PEM files of one issued certificate and its key."""

    cert: Path
    key: Path


class CertificateAuthority:
    """A throwaway CA that issues server and client certificates into a directory."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = _key()
        self._name = _name(name)
        self.certificate = (
            _builder(self._name, self._name, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = directory / "ca.crt"
        self.cert_path.write_bytes(cert_pem(self.certificate))

    def issue(self, file_stem: str, common_name: str, *, organization: str | None = None,
              dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), uris: tuple[str, ...] = (),
              server: bool = False, client: bool = False) -> IssuedCert:
        key = _key()
        builder = _builder(_name(common_name, organization), self._name, key.public_key())
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        sans += [x509.UniformResourceIdentifier(u) for u in uris]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client
                                                                          else [])
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        issued = IssuedCert(self.directory / f"{file_stem}.crt", self.directory / f"{file_stem}.key")
        issued.cert.write_bytes(cert_pem(builder.sign(self._key, hashes.SHA256())))
        issued.key.write_bytes(key_pem(key))
        issued.key.chmod(0o600)
        return issued


@dataclass(frozen=True)
class ClusterPKI:
    """File paths of one cluster's key material."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_public_key: Path
    sa_private_key: Path


def generate(directory: Path, cluster_name: str) -> ClusterPKI:
    """A fresh CA, a serving cert for loopback, an admin (system:masters) client cert and SA keys."""
    ca = CertificateAuthority(directory, f"mcgw-testbed-ca-{cluster_name}")
    serving = ca.issue("apiserver", "kube-apiserver", server=True, ips=("127.0.0.1",),
                       dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"))
    admin = ca.issue("admin", "mcgw-testbed-admin", organization="system:masters", client=True)
    sa_key = _key()
    sa_private, sa_public = directory / "sa.key", directory / "sa.pub"
    sa_private.write_bytes(key_pem(sa_key))
    sa_private.chmod(0o600)
    sa_public.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return ClusterPKI(ca.cert_path, serving.cert, serving.key, admin.cert, admin.key, sa_public, sa_private)
