"""TLSRoute end to end in ``mcgw standalone``: TLS connections through a real Envoy to TLS servers.

Two member clusters export a TLS service ``db``; east also runs ``api``. East's Gateway passes TLS through on
one port: SNI ``db.example.com`` goes to the ServiceImport (east first, then west, east's failoverOrder),
``api.example.com`` to east's own Service. Each backend has a certificate of its own, which the client must
see unchanged (Envoy never terminates); a name no route has is closed. New connections are opened one after
another while east's ``db`` is stopped: none may fail, and they move to west.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mcgw.app.standalone import Standalone, StandaloneOptions
from mcgw.support.netutil import free_port
from tests.mcgw.certs import self_signed

GATEWAY_ADDRESS = "127.31.10.1"
GATEWAY_PORT = 8443
BACKENDS = {"db-east": "127.31.10.10", "db-west": "127.31.10.20", "api-east": "127.31.10.11"}
GW, MCS = "gateway.networking.k8s.io", "multicluster.x-k8s.io"


class Backend:
    """A TLS server that answers each connection with its name, under a certificate of its own."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.address = BACKENDS[name]
        data = self_signed(f"{name}.backend.test")
        self.certificate = base64.b64decode(data["tls.crt"])
        self.der = x509.load_pem_x509_certificate(self.certificate).public_bytes(serialization.Encoding.DER)
        (directory / f"{name}.crt").write_bytes(self.certificate)
        (directory / f"{name}.key").write_bytes(base64.b64decode(data["tls.key"]))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(directory / f"{name}.crt", directory / f"{name}.key")
        self.port = free_port(self.address)
        self.server: asyncio.Server | None = None
        self.server_names: list[str | None] = []  # the SNI each handshake carried

        def remember(ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
            self.server_names.append(server_name)

        self.context.sni_callback = remember  # type: ignore[assignment]

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._answer, self.address, self.port, ssl=self.context)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
            self.server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            writer.write(f"{self.name}\n".encode())
            await writer.drain()
            writer.close()


@pytest.fixture
async def backends(tmp_path: Path) -> AsyncIterator[dict[str, Backend]]:
    loop = asyncio.get_running_loop()
    # TCP health checks connect and close without a handshake; the servers' complaints about that are noise.
    loop.set_exception_handler(lambda _loop, context: None)
    started = {name: Backend(name, tmp_path) for name in BACKENDS}
    for backend in started.values():
        await backend.start()
    yield started
    for backend in started.values():
        await backend.stop()


def _write(path: Path, documents: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n---\n".join(json.dumps(doc) for doc in documents) + "\n")


def _service(name: str, backend: Backend, exported: bool) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "data"},
         "spec": {"ports": [{"name": "tls", "port": 443}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{name}-1", "namespace": "data", "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4", "ports": [{"name": "tls", "port": backend.port}],
         "endpoints": [{"addresses": [backend.address], "conditions": {"ready": True}}]},
    ]
    if exported:
        documents.append({"apiVersion": f"{MCS}/v1beta1", "kind": "ServiceExport",
                          "metadata": {"name": name, "namespace": "data",
                                       "creationTimestamp": "2026-01-01T00:00:00Z"}})
    return documents


def _route(name: str, hostname: str, ref: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GW}/v1", "kind": "TLSRoute",
            "metadata": {"name": name, "namespace": "data", "generation": 1},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [hostname], "rules": [{"backendRefs": [ref]}]}}


EAST_GATEWAY = [
    {"apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
     "spec": {"controllerName": "mcgw.io/gateway-controller"}},
    {"apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": "data", "generation": 1},
     "spec": {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": GATEWAY_ADDRESS}],
              "listeners": [{"name": "tls", "port": GATEWAY_PORT, "protocol": "TLS", "hostname": "*.example.com",
                             "tls": {"mode": "Passthrough"}}]}},
    _route("db", "db.example.com", {"group": MCS, "kind": "ServiceImport", "name": "db", "port": 443}),
    _route("api", "api.example.com", {"name": "api", "port": 443}),
]

CLIENT = ssl.create_default_context()
CLIENT.check_hostname = False  # the backends' certificates are self-signed: what they are is compared instead
CLIENT.verify_mode = ssl.CERT_NONE


async def _connect(server_name: str) -> tuple[str, bytes] | str:
    """(answer, the certificate the client saw) of one new connection, or why it failed."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            GATEWAY_ADDRESS, GATEWAY_PORT, ssl=CLIENT, server_hostname=server_name), 5)
    except (OSError, TimeoutError) as error:
        return f"connect: {error!r}"
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        answer = (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
        return (answer, der) if answer else "closed without an answer"
    except (OSError, TimeoutError) as error:
        return f"read: {error!r}"
    finally:
        writer.close()


async def test_tls_passthrough_by_sni_shows_the_backend_certificate_and_fails_over_without_a_failure(
        tmp_path: Path, backends: dict[str, Backend]) -> None:
    root = tmp_path / "clusters"
    root.mkdir()
    (root / "clusterset.yaml").write_text(
        "clusters:\n  - {name: east, failoverOrder: [west]}\n  - {name: west, failoverOrder: [east]}\n")
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "data"}}
    _write(root / "east" / "services.yaml", [namespace, *_service("db", backends["db-east"], True),
                                              *_service("api", backends["api-east"], False)])
    _write(root / "east" / "gateway.yaml", EAST_GATEWAY)
    _write(root / "west" / "services.yaml", [namespace, *_service("db", backends["db-west"], True)])
    options = StandaloneOptions(root, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    async with Standalone(options) as standalone:
        await standalone.wait_ready()
        deadline = time.monotonic() + 30
        while not isinstance(first := await _connect("db.example.com"), tuple) or first[0] != "db-east":
            assert time.monotonic() < deadline, f"the TLSRoute never served from east: {first!r}"
            await asyncio.sleep(0.1)

        # Passthrough: the client's handshake reached the backend, SNI and all, and saw its own certificate.
        assert first == ("db-east", backends["db-east"].der)
        assert "db.example.com" in backends["db-east"].server_names
        assert await _connect("api.example.com") == ("api-east", backends["api-east"].der)  # SNI picks the route
        assert isinstance(await _connect("nothing.example.com"), str)  # no route for that name: closed

        answers: list[tuple[str, bytes] | str] = []
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                answers.append(await _connect("db.example.com"))
                await asyncio.sleep(0.005)

        connections = asyncio.create_task(load())
        await asyncio.sleep(1.0)
        # East's backend goes away: its port refuses connections. The one connection under way at that moment
        # may already have reached it (its bytes are the client's own handshake), and is lost with it.
        in_flight = len(answers)
        await backends["db-east"].stop()
        stopped_at = len(answers)
        deadline = time.monotonic() + 30
        while len(answers) < stopped_at + 100 or answers[-20:] != [("db-west", backends["db-west"].der)] * 20:
            assert time.monotonic() < deadline, f"connections never moved to west; last {answers[-3:]}"
            await asyncio.sleep(0.1)
        stop.set()
        await connections
        lost = [in_flight] if isinstance(answers[in_flight], str) else []  # the listening socket closes at once
        failed = [(i, a) for i, a in enumerate(answers) if isinstance(a, str) and i not in lost]
        print(f"\n{len(answers)} connections, {len(answers) - stopped_at} after east's db stopped, "
              f"{len(failed)} failed, {len(lost)} lost (under way when it stopped)")
        assert failed == [], f"connections failed while failing over: {failed[:5]}"
        assert {a[0] for a in answers[:stopped_at] if isinstance(a, tuple)} == {"db-east"}  # east first
        assert {a[0] for a in answers if isinstance(a, tuple)} <= {"db-east", "db-west"}
