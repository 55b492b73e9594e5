"""mcgw's xDS CA and the identities it issues: what a certificate names, when it is replaced, what is kept
across restarts, and the xDS server serving with them (rotation without dropping a stream; every mode
authorised by the certificate's identity)."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mcgw.app.xds_identity import XdsIdentities
from mcgw.objects.model import Gateway, Secret, parse_object
from mcgw.provisioning import render_credentials
from mcgw.provisioning.ca import CertificateAuthority, Credentials, renew_at, spiffe_uri
from tests.xdsserver.conftest import GROUP, NODE, StartServer, Stream, names_of
from tests.xdsserver.conftest import start_xds as start_xds  # the fixture
from tests.xdsserver.resources_fixture import gateway_resources
from xdsserver import CLUSTER, ENDPOINT, RotatingTls, Snapshot, SnapshotCache, XdsServer, spiffe_id


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def _uris(pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem)
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier))


def _gateway() -> Gateway:
    parsed = parse_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                           "metadata": {"name": "gw", "namespace": "infra", "uid": "u-1"},
                           "spec": {"gatewayClassName": "mcgw",
                                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}, "test")
    assert isinstance(parsed, Gateway)
    return parsed


def _stored(credentials: Credentials) -> Secret:
    secret = parse_object(render_credentials(_gateway(), credentials), "test")
    assert isinstance(secret, Secret)
    return secret


def test_the_client_certificate_names_the_node_group_as_the_server_expects() -> None:
    ca = CertificateAuthority.generate()
    credentials = ca.issue_client(spiffe_uri("mcgw", "east", "infra", "gw"), dt.timedelta(hours=1))
    assert _uris(credentials.cert) == ["spiffe://mcgw/east/infra/gw"] == [spiffe_id(("east", "infra/gw"))]
    cert = x509.load_pem_x509_certificate(credentials.cert)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    assert credentials.not_after - credentials.not_before == dt.timedelta(hours=1, minutes=5)  # backdated 5 min


def test_the_server_certificate_names_ip_addresses_and_host_names() -> None:
    credentials = CertificateAuthority.generate().issue_server(["198.18.0.1", "mcgw.example"], dt.timedelta(hours=1))
    sans = x509.load_pem_x509_certificate(credentials.cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["198.18.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["mcgw.example"]


def test_keys_never_show_in_a_repr() -> None:
    ca = CertificateAuthority.generate()
    credentials = ca.issue_client(spiffe_uri("mcgw", "east", "infra", "gw"), dt.timedelta(hours=1))
    assert "PRIVATE" not in repr(credentials)
    assert "PRIVATE" not in repr(ca)
    assert "valid" in repr(credentials)


def test_a_ca_of_your_own_is_checked_without_quoting_it() -> None:
    ca = CertificateAuthority.generate()
    other = CertificateAuthority.generate()
    loaded = CertificateAuthority.from_pem(ca.cert_pem, ca.key_pem())
    assert loaded.certificate == ca.certificate
    with pytest.raises(ValueError, match="the CA key does not belong to the CA certificate"):
        CertificateAuthority.from_pem(ca.cert_pem, other.key_pem())
    with pytest.raises(ValueError, match="not an unencrypted PEM private key") as raised:
        CertificateAuthority.from_pem(ca.cert_pem, b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----")
    assert "c2VjcmV0" not in str(raised.value)
    leaf = ca.issue_client(spiffe_uri("mcgw", "east", "infra", "gw"), dt.timedelta(hours=1))
    with pytest.raises(ValueError, match="is not a CA"):
        CertificateAuthority.from_pem(leaf.cert, leaf.key)


def test_gateway_credentials_are_kept_until_two_thirds_of_their_lifetime_then_replaced() -> None:
    clock = Clock()
    identities = XdsIdentities(CertificateAuthority.generate(clock=clock), "mcgw", dt.timedelta(seconds=30),
                               ["198.18.0.1"])
    first = identities.for_gateway("east", "infra", "gw", None)
    assert identities.next_renewal("east") == renew_at(first) == clock.now + dt.timedelta(seconds=20)
    clock.now += dt.timedelta(seconds=15)
    assert identities.for_gateway("east", "infra", "gw", None) is first
    clock.now = renew_at(first)
    second = identities.for_gateway("east", "infra", "gw", None)
    assert second.cert != first.cert
    assert second.not_after > first.not_after
    assert _uris(second.cert) == ["spiffe://mcgw/east/infra/gw"]
    assert identities.next_renewal("west") is None
    identities.retain("east", [])
    assert identities.next_renewal("east") is None


def test_a_restarted_mcgw_keeps_the_certificate_its_secret_holds_while_it_is_good() -> None:
    clock = Clock()
    ca = CertificateAuthority.generate(clock=clock)
    before = XdsIdentities(ca, "mcgw", dt.timedelta(hours=1), ["x"]).for_gateway("east", "infra", "gw", None)
    stored = _stored(before)
    restarted = XdsIdentities(ca, "mcgw", dt.timedelta(hours=1), ["x"])
    assert restarted.for_gateway("east", "infra", "gw", stored).cert == before.cert
    assert restarted.issued_count == 0
    # Another Gateway's certificate, or another CA's, is never taken for this one.
    assert XdsIdentities(ca, "mcgw", dt.timedelta(hours=1), ["x"]).for_gateway(
        "east", "infra", "other", stored).cert != before.cert
    foreign_ca = XdsIdentities(CertificateAuthority.generate(clock=clock), "mcgw", dt.timedelta(hours=1), ["x"])
    assert foreign_ca.for_gateway("east", "infra", "gw", stored).cert != before.cert
    # Due for renewal: replaced even though it is still valid.
    clock.now += dt.timedelta(minutes=45)
    assert restarted.for_gateway("east", "infra", "gw", stored).cert != before.cert


def test_the_credentials_secret_carries_the_pair_and_the_ca_and_hashes_no_key() -> None:
    ca = CertificateAuthority.generate()
    credentials = ca.issue_client(spiffe_uri("mcgw", "east", "infra", "gw"), dt.timedelta(hours=1))
    secret = render_credentials(_gateway(), credentials)
    assert (secret["kind"], secret["type"], secret["metadata"]["name"]) == ("Secret", "kubernetes.io/tls",
                                                                            "mcgw-gw-xds")
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == {
        "tls.crt": credentials.cert, "tls.key": credentials.key, "ca.crt": ca.cert_pem}
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mcgw"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    # The same certificate with another key would have the same hash: the key is not hashed.
    other: dict[str, Any] = render_credentials(_gateway(), Credentials(
        credentials.cert, b"other", credentials.ca, credentials.not_before, credentials.not_after))
    assert other["metadata"]["annotations"] == secret["metadata"]["annotations"]


def _channel_credentials(ca: CertificateAuthority, uri: str | None) -> grpc.ChannelCredentials:
    if uri is None:
        return grpc.ssl_channel_credentials(ca.cert_pem)
    client = ca.issue_client(uri, dt.timedelta(hours=1))
    return grpc.ssl_channel_credentials(ca.cert_pem, client.key, client.cert)


async def test_the_server_rotates_its_certificate_without_dropping_streams() -> None:
    clock = Clock()
    clock.now = dt.datetime.now(dt.UTC)
    ca = CertificateAuthority.generate(clock=clock)
    identities = XdsIdentities(ca, "mcgw", dt.timedelta(seconds=60), ["127.0.0.1"])
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, Snapshot.from_messages(gateway_resources()))
    server = XdsServer(cache, tls=RotatingTls(identities.server_certificate))
    port = await server.start("127.0.0.1:0")
    credentials = _channel_credentials(ca, spiffe_uri("mcgw", "east", "infra", "gw"))
    channels = [grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) for _ in range(2)]
    streams: list[Stream] = []
    try:
        streams.append(stream := Stream(channels[0], delta=False))
        stream.send(node=NODE, type_url=ENDPOINT, resource_names=["c1"])
        stream.ack(await stream.recv(), ["c1"])
        first = identities.server_credentials()
        clock.now += dt.timedelta(seconds=41)  # past two thirds of the lifetime
        # A new connection's handshake asks for the certificate and gets a new one ...
        streams.append(other := Stream(channels[1], delta=False))
        other.send(node=NODE, type_url=CLUSTER)
        assert names_of(await other.recv()) == ["c1"]
        assert identities.server_credentials() is not first
        # ... while the stream opened before keeps receiving on its connection.
        cache.set_snapshot(GROUP, Snapshot.from_messages(gateway_resources(port=9090)))
        assert names_of(await stream.recv()) == ["c1"]
    finally:
        for each in streams:
            each.close()
        for channel in channels:
            await channel.close()
        await server.stop(0)


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_every_mode_is_authorised_by_the_certificate(start_xds: StartServer, delta: bool) -> None:
    ca = CertificateAuthority.generate()
    identities = XdsIdentities(ca, "mcgw", dt.timedelta(hours=1), ["127.0.0.1"])
    harness = await start_xds(tls=RotatingTls(identities.server_certificate),
                              credentials=_channel_credentials(ca, spiffe_uri("mcgw", "west", "infra", "gw")))
    stream = harness.open(delta=delta)
    stream.send(node=NODE, type_url=CLUSTER)  # a west Gateway's certificate asking for east's config
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stream.recv()
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "spiffe://mcgw/west/infra/gw" in (refused.value.details() or "")


async def test_a_client_without_a_certificate_is_refused_at_the_handshake(start_xds: StartServer) -> None:
    ca = CertificateAuthority.generate()
    identities = XdsIdentities(ca, "mcgw", dt.timedelta(hours=1), ["127.0.0.1"])
    harness = await start_xds(tls=RotatingTls(identities.server_certificate),
                              credentials=_channel_credentials(ca, None))
    stream = harness.open()
    stream.send(node=NODE, type_url=CLUSTER)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stream.recv()
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_ec_keys() -> None:
    """P-256 everywhere: what Envoy and gRPC both accept, and cheap to issue per Gateway."""
    ca = CertificateAuthority.generate()
    assert isinstance(ca.certificate.public_key(), ec.EllipticCurvePublicKey)


def _pems(bundle: bytes) -> list[bytes]:
    return [cert.public_bytes(serialization.Encoding.PEM) for cert in x509.load_pem_x509_certificates(bundle)]


async def test_a_ca_rotation_in_three_steps_keeps_old_and_new_certificates_verifiable(
        start_xds: StartServer) -> None:
    """1: trust the new CA too; 2: sign with the new CA, still trusting the old; 3: trust only the new."""
    old, new = CertificateAuthority.generate(), CertificateAuthority.generate()
    identities = XdsIdentities(old, "mcgw", dt.timedelta(hours=1), ["127.0.0.1"])
    first = identities.for_gateway("east", "infra", "gw", None)
    assert first.ca == old.cert_pem
    stored = _stored(first)

    identities.replace_ca(CertificateAuthority.from_pem(old.cert_pem, old.key_pem(), trust_pem=new.cert_pem))
    kept = identities.for_gateway("east", "infra", "gw", stored)
    assert kept.cert == first.cert  # same signer: the certificate stays, only the bundle grows
    assert _pems(kept.ca) == [old.cert_pem, new.cert_pem]

    identities.replace_ca(CertificateAuthority.from_pem(new.cert_pem, new.key_pem(), trust_pem=old.cert_pem))
    reissued = identities.for_gateway("east", "infra", "gw", _stored(kept))
    x509.load_pem_x509_certificate(reissued.cert).verify_directly_issued_by(new.certificate)
    assert _pems(reissued.ca) == [new.cert_pem, old.cert_pem]
    # An Envoy still on its old-CA certificate, trusting the step-1 bundle, connects to the new server.
    harness = await start_xds(tls=RotatingTls(identities.server_certificate),
                              credentials=grpc.ssl_channel_credentials(kept.ca, kept.key, kept.cert))
    stream = harness.open()
    stream.send(node=NODE, type_url=CLUSTER)
    assert names_of(await stream.recv()) == ["c1"]
    x509.load_pem_x509_certificate(identities.server_credentials().cert).verify_directly_issued_by(new.certificate)

    identities.replace_ca(CertificateAuthority.from_pem(new.cert_pem, new.key_pem()))
    final = identities.for_gateway("east", "infra", "gw", _stored(reissued))
    assert (final.cert, final.ca) == (reissued.cert, new.cert_pem)


def test_a_trust_bundle_holds_only_ca_certificates() -> None:
    ca = CertificateAuthority.generate()
    leaf = ca.issue_client("spiffe://mcgw/east/infra/gw", dt.timedelta(hours=1))
    with pytest.raises(ValueError, match=r"trust bundle .* is not a CA"):
        CertificateAuthority.from_pem(ca.cert_pem, ca.key_pem(), trust_pem=leaf.cert)
    with pytest.raises(ValueError, match="not a list of PEM certificates"):
        CertificateAuthority.from_pem(ca.cert_pem, ca.key_pem(), trust_pem=b"-----BEGIN CERTIFICATE-----\nxx")
    # The signing certificate listed again in the bundle is not trusted twice.
    assert CertificateAuthority.from_pem(ca.cert_pem, ca.key_pem(), trust_pem=ca.cert_pem).trust_pem == ca.cert_pem
