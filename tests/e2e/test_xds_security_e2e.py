"""xDS is secure by default (issue 14's "xDS security" acceptance), through provisioned Envoys.

One ``mcgw run`` over east with the default xDS settings except a short certificate lifetime (45 s, so a
certificate is replaced every 30 s; the pod runner, like a kubelet, brings a changed Secret into the pod
within its 10 s resync), and a Gateway ``edge`` whose Envoy serves an echo backend.

- A plaintext client, and a TLS client without a certificate, get nothing: the handshake fails.
- A client with ``edge``'s own certificate (read from its Secret, as its Envoy has it) reads ``edge``'s
  node group, and gets PERMISSION_DENIED, in SotW and delta alike, for any other node group.
- Certificates rotate before they expire while the Envoy keeps its configuration: its Secret's
  certificate is replaced at least twice, the Envoy loads each (admin ``/certs``) without a restart,
  removes no listener or cluster, rejects no update, and keeps serving; mcgw restarted afterwards (the
  Envoy reconnects with its rotated certificate, the new process keeps the CA) serves it again.
- No stream outlives its certificate for long: the default ``maxConnectionAge`` (a third of the lifetime,
  15 s here) closes the Envoy's xDS connection, which reconnects and keeps its configuration.
- The CA rotates in three edits of its Secret, without a restart: trust the new CA too (``ca.crt``), sign
  with it (the old one still trusted), trust only it. After each, the Envoy loads what it was given and
  reconnects (so it verified the server's certificate and the server verified its own) with nothing lost.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from mcgw.provisioning.ca import CertificateAuthority
from tests.e2e.provisioned import Mcgw, Member, PodEnvoy, config_losses, get_json, run_config, until
from tests.e2e.test_operator_cli_e2e import mcgw
from tests.e2e.testbed import ClusterSet
from xdsserver import CLUSTER

CLASS = "mcgw-xds-security"
LIFETIME = 45.0


@dataclass
class Bed:
    clusterset: ClusterSet
    mcgw: Mcgw
    member: Member
    namespace: str
    xds: str  # host:port the Envoys dial
    address: str = ""


async def _secret(bed: Bed) -> dict[str, bytes]:
    stored = await bed.member.core.read_namespaced_secret("mcgw-edge-xds", bed.namespace)
    return {key: base64.b64decode(value) for key, value in stored.data.items()}


async def _ca_secret(bed: Bed) -> dict[str, bytes]:
    stored = await bed.member.core.read_namespaced_secret(f"mcgw-xds-ca-{bed.namespace}", "kube-system")
    return {key: base64.b64decode(value) for key, value in stored.data.items()}


def _serial(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bed(clusterset: ClusterSet, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bed]:
    namespace = f"xdssec-{secrets.token_hex(3)}"
    path = run_config(tmp_path_factory.mktemp("xds-security"), clusterset, ["east"],
                      xds={"certificateLifetime": LIFETIME,
                           "ca": {"name": f"mcgw-xds-ca-{namespace}", "resync": 2}},
                      reconcile={"debounce": 0.05, "debounceCap": 0.3})
    member = await Member.connect(clusterset, "east")
    try:
        await member.namespace(namespace)
        await member.gateway_class(CLASS)
        backend = clusterset.start_echo("east", namespace=namespace, pod="cart-east")
        await member.service(namespace, "cart", [backend])
        await member.route(namespace, "cart", "edge", "cart")
        async with Mcgw(path, namespace.__eq__) as mcgw:
            assert mcgw.controller is not None
            bed = Bed(clusterset, mcgw, member, namespace, mcgw.controller.config.provisioning.xds_address or
                      mcgw.controller.config.xds.listen)
            await member.gateway(namespace, "edge", {"gatewayClassName": CLASS,
                                                     "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})
            bed.address = await until(lambda: member.programmed(namespace, "edge"), 120, "edge to be Programmed")
            await until(lambda: asyncio.to_thread(get_json, f"http://{bed.address}/"), 60, "an answer through edge")
            yield bed
    finally:
        await member.close()


async def _first_answer(channel: grpc.aio.Channel, node: base_pb2.Node, delta: bool) -> Any:
    """The first response to a CDS request from ``node`` on ``channel``, or the RPC error."""
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    request: Any = (discovery_pb2.DeltaDiscoveryRequest(node=node, type_url=CLUSTER) if delta
                    else discovery_pb2.DiscoveryRequest(node=node, type_url=CLUSTER))

    async def one() -> Any:
        yield request
        await asyncio.sleep(30)

    call = (stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources)(one())
    try:
        async for response in call:
            return response
        return None
    except grpc.aio.AioRpcError as error:
        return error
    finally:
        call.cancel()


def _node(bed: Bed, cluster: str = "east", gateway: str = "edge") -> base_pb2.Node:
    return base_pb2.Node(id=f"{bed.namespace}/{gateway}/probe", cluster=cluster)


async def test_plaintext_gets_nothing_from_the_default_config(bed: Bed) -> None:
    async with grpc.aio.insecure_channel(bed.xds) as channel:
        answer = await asyncio.wait_for(_first_answer(channel, _node(bed), delta=True), 30)
    assert isinstance(answer, grpc.aio.AioRpcError), answer
    assert answer.code() == grpc.StatusCode.UNAVAILABLE
    assert bed.mcgw.status()["xdsSecurity"]["mode"] == "mtls"


async def test_a_client_without_a_certificate_cannot_connect(bed: Bed) -> None:
    ca = (await _secret(bed))["ca.crt"]
    async with grpc.aio.secure_channel(bed.xds, grpc.ssl_channel_credentials(ca)) as channel:
        answer = await asyncio.wait_for(_first_answer(channel, _node(bed), delta=True), 30)
    assert isinstance(answer, grpc.aio.AioRpcError), answer
    assert answer.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_a_gateways_certificate_reads_only_its_own_node_group(bed: Bed, delta: bool) -> None:
    stored = await _secret(bed)
    credentials = grpc.ssl_channel_credentials(stored["ca.crt"], stored["tls.key"], stored["tls.crt"])
    async with grpc.aio.secure_channel(bed.xds, credentials) as channel:
        own = await asyncio.wait_for(_first_answer(channel, _node(bed), delta), 30)
        assert not isinstance(own, grpc.aio.AioRpcError), own
        for cluster, gateway in (("west", "edge"), ("east", "other")):
            answer = await asyncio.wait_for(_first_answer(channel, _node(bed, cluster, gateway), delta), 30)
            assert isinstance(answer, grpc.aio.AioRpcError), (cluster, gateway)
            assert answer.code() == grpc.StatusCode.PERMISSION_DENIED, answer
            assert f"spiffe://mcgw/east/{bed.namespace}/edge" in (answer.details() or "")


async def test_the_operator_commands_read_mcgw_run(bed: Bed) -> None:
    assert bed.mcgw.controller is not None
    admin = f"http://127.0.0.1:{bed.mcgw.controller.admin_port}"
    gateway = f"{bed.namespace}/edge"
    proxies = json.loads((await asyncio.to_thread(mcgw, "proxy-status", "--admin", admin, "-o", "json")).stdout)
    (node,) = [n for n in proxies["nodes"] if n["group"]["gateway"] == gateway]
    assert {kind: node["state"][kind] for kind in ("CDS", "EDS", "LDS", "RDS")} == dict.fromkeys(
        ("CDS", "EDS", "LDS", "RDS"), "SYNCED"), node
    status = await asyncio.to_thread(mcgw, "status", "--admin", admin)
    assert status.returncode == 0, status.stderr
    assert any(line.split()[:5] == ["east", gateway, "True", "True", bed.address.split(":")[0]]
               for line in status.stdout.splitlines()), status.stdout
    dump = await asyncio.to_thread(mcgw, "config-dump", gateway, "--admin", admin, "--type", "lds")
    assert dump.returncode == 0, dump.stderr
    served = yaml.safe_load(dump.stdout)
    assert served["cluster"] == "east"  # the only cluster with that Gateway
    assert served["types"]["lds"]["version"] == node["types"]["Listener"]["ackedVersion"]


async def test_xds_connections_are_recycled_and_the_envoy_keeps_its_configuration(bed: Bed) -> None:
    assert bed.mcgw.controller is not None
    age = bed.mcgw.controller.config.xds.connection_age
    assert age == LIFETIME / 3
    (pod,) = await bed.member.pods(bed.namespace, "edge")
    envoy = PodEnvoy.of(bed.clusterset, "east", pod)
    losses = await asyncio.to_thread(config_losses, envoy)

    def connections() -> int:
        return int(envoy.stats().get("cluster.mcgw-xds.upstream_cx_total", "0"))

    before = await asyncio.to_thread(connections)
    await until(lambda: asyncio.to_thread(lambda: connections() >= before + 2), 4 * age + 30,
                "the xDS connection to be closed and reopened twice", interval=1)
    await until(lambda: asyncio.to_thread(lambda: envoy.stats().get("control_plane.connected_state") == "1"),
                30, "the Envoy to be connected")
    assert await asyncio.to_thread(config_losses, envoy) == losses
    assert await asyncio.to_thread(get_json, f"http://{bed.address}/")


def _envoy_client_serials(envoy: PodEnvoy) -> set[int]:
    """Serial numbers of the client certificates Envoy's TLS contexts hold (admin /certs)."""
    document = json.loads(envoy.admin("/certs"))
    return {int(chain["serial_number"], 16) for entry in document.get("certificates", [])
            for chain in entry.get("cert_chain", [])
            if any(san.get("uri", "").startswith("spiffe://") for san in chain.get("subject_alt_names", []))}


async def test_certificates_rotate_before_they_expire_and_the_envoy_keeps_its_configuration(bed: Bed) -> None:
    (pod,) = await bed.member.pods(bed.namespace, "edge")
    envoy = PodEnvoy.of(bed.clusterset, "east", pod)
    restarts = [s.restart_count for s in pod.status.container_statuses]
    losses = await asyncio.to_thread(config_losses, envoy)
    first = await _secret(bed)
    cert = x509.load_pem_x509_certificate(first["tls.crt"])
    assert cert.not_valid_after_utc.timestamp() - cert.not_valid_before_utc.timestamp() <= LIFETIME + 300 + 1
    seen = [_serial(first["tls.crt"])]
    started = time.monotonic()

    async def rotated_into_envoy() -> bool:
        current = _serial((await _secret(bed))["tls.crt"])
        if current != seen[-1]:
            seen.append(current)
        return len(seen) >= 3 and current in await asyncio.to_thread(_envoy_client_serials, envoy)

    await until(rotated_into_envoy, 4 * LIFETIME, "two rotations to reach the Envoy", interval=1)
    print(f"\ntwo rotations reached the Envoy after {time.monotonic() - started:.1f}s")
    # Each certificate was replaced before it expired (the Secret never held an expired one while in use).
    after = await _secret(bed)
    assert x509.load_pem_x509_certificate(after["tls.crt"]).not_valid_after_utc.timestamp() > time.time()
    assert await asyncio.to_thread(config_losses, envoy) == losses
    (same,) = await bed.member.pods(bed.namespace, "edge")
    assert same.metadata.uid == pod.metadata.uid
    assert [s.restart_count for s in same.status.container_statuses] == restarts
    assert await asyncio.to_thread(get_json, f"http://{bed.address}/")
    stats = await asyncio.to_thread(envoy.stats)
    assert stats.get("control_plane.connected_state") == "1"
    # mcgw restarted: the Envoy connects again with its rotated certificate, and is served again.
    await bed.mcgw.stop()
    await bed.mcgw.start()
    await until(lambda: asyncio.to_thread(lambda: any(n[1].startswith(f"{bed.namespace}/edge/")
                                                      for n in bed.mcgw.nodes())), 60, "the Envoy to reconnect")
    assert await asyncio.to_thread(config_losses, envoy) == losses
    assert await asyncio.to_thread(get_json, f"http://{bed.address}/")


def _envoy_ca_serials(envoy: PodEnvoy) -> set[int]:
    """Serial numbers of the CA certificates Envoy's xDS validation context trusts (admin /certs)."""
    document = json.loads(envoy.admin("/certs"))
    return {int(ca["serial_number"], 16) for entry in document.get("certificates", [])
            for ca in entry.get("ca_cert", [])}


async def test_the_ca_rotates_in_three_steps_without_a_restart_or_a_lost_configuration(bed: Bed) -> None:
    (pod,) = await bed.member.pods(bed.namespace, "edge")
    envoy = PodEnvoy.of(bed.clusterset, "east", pod)
    losses = await asyncio.to_thread(config_losses, envoy)
    old = await _ca_secret(bed)
    new = CertificateAuthority.generate()
    old_serial, new_serial = _serial(old["tls.crt"]), new.certificate.serial_number

    def connections() -> int:
        return int(envoy.stats().get("cluster.mcgw-xds.upstream_cx_total", "0"))

    async def step(data: dict[str, bytes], trusted: set[int], signer: x509.Certificate, what: str) -> None:
        await bed.member.core.replace_namespaced_secret(
            f"mcgw-xds-ca-{bed.namespace}", "kube-system",
            {"metadata": {"name": f"mcgw-xds-ca-{bed.namespace}"}, "type": "Opaque",
             "data": {key: base64.b64encode(value).decode() for key, value in data.items()}})

        async def loaded() -> bool:
            client = (await _secret(bed))["tls.crt"]
            try:
                x509.load_pem_x509_certificate(client).verify_directly_issued_by(signer)
            except (ValueError, TypeError, InvalidSignature):
                return False
            return (await asyncio.to_thread(_envoy_ca_serials, envoy) == trusted
                    and _serial(client) in await asyncio.to_thread(_envoy_client_serials, envoy))

        started = time.monotonic()
        await until(loaded, 90, f"the Envoy to load {what}", interval=1)
        print(f"\n{what}: in the Envoy after {time.monotonic() - started:.1f}s", end="")
        before = await asyncio.to_thread(connections)
        # A new xDS connection (maxConnectionAge recycles it): both sides verify with what they now hold.
        await until(lambda: asyncio.to_thread(lambda: connections() > before and
                                              envoy.stats().get("control_plane.connected_state") == "1"),
                    90, f"the Envoy to reconnect after {what}", interval=1)

    await step({**old, "ca.crt": new.cert_pem}, {old_serial, new_serial},
               x509.load_pem_x509_certificate(old["tls.crt"]), "the bundle with the new CA")
    await step({"tls.crt": new.cert_pem, "tls.key": new.key_pem(), "ca.crt": old["tls.crt"]},
               {old_serial, new_serial}, new.certificate, "a certificate of the new CA")
    served = bed.mcgw.status()["xdsSecurity"]
    assert (served["caFingerprintSha256"], served["trustedCas"]) == (
        new.certificate.fingerprint(hashes.SHA256()).hex(), 2), served
    await step({"tls.crt": new.cert_pem, "tls.key": new.key_pem()}, {new_serial}, new.certificate,
               "the bundle without the old CA")
    assert await asyncio.to_thread(config_losses, envoy) == losses
    assert await asyncio.to_thread(get_json, f"http://{bed.address}/")
