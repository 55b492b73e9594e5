"""mcgw's xDS certificate authority: issues the xDS server's certificate and each provisioned Envoy's
client certificate, whose URI SAN names the node group it may read.

Pure apart from key generation and the clock, both passed in or defaulted here; the CA's key is read from
and written to a Kubernetes Secret by the app (``mcgw.app.xds_identity``), never logged. Keys are ECDSA
P-256: Envoy and gRPC accept them, and a key takes well under a millisecond to generate, so issuing a
certificate per Gateway per rotation costs nothing worth counting.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA_LIFETIME", "CertificateAuthority", "Credentials", "renew_at", "spiffe_uri"]

CA_LIFETIME = dt.timedelta(days=3650)
# Certificates are valid from a little before they are issued: clocks of the Envoys' nodes may lag.
BACKDATE = dt.timedelta(minutes=5)
RENEW_FRACTION = 2 / 3  # a certificate is replaced once this share of its lifetime has passed

Clock = Callable[[], dt.datetime]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def spiffe_uri(trust_domain: str, cluster: str, namespace: str, gateway: str) -> str:
    """The identity of a Gateway's Envoys: ``spiffe://<trust domain>/<cluster>/<namespace>/<gateway>``
    (what ``xdsserver.auth.spiffe_id`` expects for node group ``(cluster, "<namespace>/<gateway>")``)."""
    return f"spiffe://{trust_domain}/{cluster}/{namespace}/{gateway}"


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, repr=False)
class Credentials:
    """An issued certificate, its key and the CA certificate that verifies the other side (PEM).

    ``repr`` leaves the key out, so a credential in a log line or traceback never shows it.
    """

    cert: bytes
    key: bytes
    ca: bytes
    not_before: dt.datetime
    not_after: dt.datetime

    def __repr__(self) -> str:
        return f"Credentials(valid {self.not_before.isoformat()} to {self.not_after.isoformat()})"


def renew_at(credentials: Credentials) -> dt.datetime:
    """When ``credentials`` are due for replacement: ``RENEW_FRACTION`` of their lifetime, counted from when
    they were issued (``not_before`` is backdated by ``BACKDATE``)."""
    issued = credentials.not_before + BACKDATE
    return issued + (credentials.not_after - issued) * RENEW_FRACTION


def _trusted_extra(pem: bytes) -> list[x509.Certificate]:
    """The CA certificates of a trust bundle; ValueError when it holds anything else."""
    if not pem.strip():
        return []
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ValueError("the trust bundle (ca.crt) is not a list of PEM certificates") from None
    for cert in certificates:
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise ValueError(f"the trust bundle (ca.crt) holds {cert.subject.rfc4514_string()!r}, which is not "
                             "a CA (basicConstraints CA:TRUE is missing)")
    return certificates


class CertificateAuthority:
    """A CA certificate and key (PEM). ``generate`` makes a new one; ``from_pem`` loads a stored or
    user-provided one (bring your own CA: any CA certificate with an EC or RSA key).

    ``trust_pem`` is what both sides verify the other with: the signing certificate first, then any other
    CA certificates trusted during a CA rotation (``extra_trust``), so certificates of the old and the
    new CA are both accepted while Envoys move from one to the other."""

    def __init__(self, cert: x509.Certificate, key: CertificateIssuerPrivateKeyTypes, clock: Clock = _now,
                 extra_trust: Sequence[x509.Certificate] = ()) -> None:
        self.certificate = cert
        self._key = key
        self.clock = clock
        self.cert_pem = _cert_pem(cert)
        seen = {cert.fingerprint(hashes.SHA256())}
        bundle = [self.cert_pem]
        for extra in extra_trust:
            if (fingerprint := extra.fingerprint(hashes.SHA256())) not in seen:
                seen.add(fingerprint)
                bundle.append(_cert_pem(extra))
        self.trust_pem = b"".join(bundle)

    def __repr__(self) -> str:
        return f"CertificateAuthority({self.certificate.subject.rfc4514_string()})"

    @classmethod
    def generate(cls, name: str = "mcgw xDS CA", clock: Clock = _now) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = clock()
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE).not_valid_after(now + CA_LIFETIME)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(cert, key, clock)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes, clock: Clock = _now,
                 trust_pem: bytes = b"") -> CertificateAuthority:
        """Raises ValueError, never quoting the key, when the pair is not a usable CA. ``trust_pem``: other
        CA certificates to trust besides this one (PEM, during a rotation)."""
        extra = _trusted_extra(trust_pem)
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise ValueError("the CA certificate is not a PEM certificate") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            raise ValueError("the CA key is not an unencrypted PEM private key") from None
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise ValueError("the CA key must be an EC or RSA key")
        if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
                != cert.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo):
            raise ValueError("the CA key does not belong to the CA certificate")
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise ValueError("the CA certificate is not a CA (basicConstraints CA:TRUE is missing)")
        return cls(cert, key, clock, extra)

    def key_pem(self) -> bytes:
        """For storing the CA in its Secret only."""
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        """The CA's own subject key identifier when it has one (a CA brought by the user may compute it
        otherwise), else one derived from its public key."""
        try:
            ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key())
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    def _issue(self, common_name: str, sans: Sequence[x509.GeneralName], usage: x509.ObjectIdentifier,
               lifetime: dt.timedelta) -> Credentials:
        key = ec.generate_private_key(ec.SECP256R1())
        now = self.clock()
        not_before = now - BACKDATE
        not_after = min(now + lifetime, self.certificate.not_valid_after_utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
                .issuer_name(self.certificate.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
                # Names the issuing key: verifiers then pick the right CA when an old and a new CA with the
                # same subject are trusted together (a rotation).
                .add_extension(self._authority_key_id(), critical=False)
                .sign(self._key, hashes.SHA256()))
        return Credentials(_cert_pem(cert), _key_pem(key), self.trust_pem, not_before, not_after)

    def issue_client(self, uri: str, lifetime: dt.timedelta) -> Credentials:
        """A client certificate whose only SAN is the SPIFFE URI ``uri``."""
        return self._issue(uri.rsplit("/", 2)[-2] + "/" + uri.rsplit("/", 1)[-1],
                           [x509.UniformResourceIdentifier(uri)], ExtendedKeyUsageOID.CLIENT_AUTH, lifetime)

    def issue_server(self, hosts: Sequence[str], lifetime: dt.timedelta) -> Credentials:
        """A server certificate for ``hosts`` (IP addresses become IP SANs, names DNS SANs)."""
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        return self._issue(hosts[0] if hosts else "mcgw-xds", sans, ExtendedKeyUsageOID.SERVER_AUTH, lifetime)

    def still_good(self, cert_pem: bytes, key_pem: bytes, uri: str, lifetime: dt.timedelta) -> Credentials | None:
        """Stored credentials that may be kept (a restarted mcgw does not reissue every Gateway's): signed by
        this CA, naming exactly ``uri``, the key matching, not longer-lived than ``lifetime`` asks, and not
        yet due for renewal. None otherwise."""
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
            cert.verify_directly_issued_by(self.certificate)
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            return None
        if list(sans.get_values_for_type(x509.UniformResourceIdentifier)) != [uri] or cert.issuer != \
                self.certificate.subject:
            return None
        if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
                != cert.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo):
            return None
        credentials = Credentials(cert_pem, key_pem, self.trust_pem, cert.not_valid_before_utc,
                                  cert.not_valid_after_utc)
        if credentials.not_after - credentials.not_before > lifetime + BACKDATE:
            return None  # issued under a longer lifetime than now configured
        if self.clock() >= renew_at(credentials):
            return None
        return credentials
