"""The test bed's connection loads (``tcp://``, ``tls://``) against mcgw's echo backend on loopback, in the
clear and serving HTTPS with a certificate of its own: what the TCP and TLS failover tests count on."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcgw.support.netutil import free_port
from tests.e2e.testbed.load import OpenLoopLoad, Sample
from tests.e2e.testbed.pki import CertificateAuthority, IssuedCert

REPO = Path(__file__).resolve().parents[2]


def _echo(port: int, tls: IssuedCert | None = None) -> subprocess.Popen[bytes]:
    extra = ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)] if tls else []
    process = subprocess.Popen([sys.executable, "-m", "mcgw.app.echo", "--host", "127.0.0.1", "--port", str(port),
                                "--cluster", "east", "--pod", "db-east-0", *extra], cwd=REPO)
    deadline = time.monotonic() + 20
    while True:
        load = OpenLoopLoad(f"tcp://127.0.0.1:{port}/healthz", rate=50, timeout=2)
        # A TLS backend drops a cleartext request: a connection it accepted is enough.
        with load:
            time.sleep(0.05)
        if any(not s.error.startswith("connect:") for s in load.samples):
            return process
        assert process.poll() is None, "the echo backend exited"
        assert time.monotonic() < deadline, "the echo backend never listened"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("ca"), "stream-load-test-ca")


@pytest.fixture(scope="module")
def tls_echo(ca: CertificateAuthority) -> Iterator[int]:
    cert = ca.issue("db-east-0", "db-east-0", dns=("db.example.com",), server=True)
    port = free_port()
    process = _echo(port, cert)
    yield port
    process.kill()
    process.wait()


def _run(url: str, seconds: float = 0.5) -> list[Sample]:
    load = OpenLoopLoad(url, rate=40, timeout=3)
    with load:
        time.sleep(seconds)
    return load.samples


def test_each_tcp_sample_is_a_new_connection_answered_by_the_echo_backend() -> None:
    port = free_port()
    process = _echo(port)
    try:
        samples = _run(f"tcp://127.0.0.1:{port}/db")
    finally:
        process.kill()
        process.wait()
    assert len(samples) >= 15
    assert {(s.status, s.cluster, s.error, s.peer) for s in samples} == {(200, "east", "", "")}


def test_a_refused_connection_is_a_failed_sample_that_says_so() -> None:
    samples = _run(f"tcp://127.0.0.1:{free_port()}/db", seconds=0.2)
    assert samples
    assert {(s.status, s.error) for s in samples} == {(0, "connect: ConnectionRefusedError")}


def test_tls_samples_record_the_certificate_the_backend_presented(ca: CertificateAuthority, tls_echo: int) -> None:
    samples = _run(f"tls://127.0.0.1:{tls_echo}/db?sni=db.example.com&ca={ca.cert_path}")
    assert len(samples) >= 15
    assert {(s.status, s.cluster, s.peer) for s in samples} == {(200, "east", "db-east-0")}


def test_a_name_the_certificate_does_not_carry_fails_verification(ca: CertificateAuthority, tls_echo: int) -> None:
    samples = _run(f"tls://127.0.0.1:{tls_echo}/db?sni=api.example.com&ca={ca.cert_path}", seconds=0.2)
    assert samples
    assert {(s.status, s.error) for s in samples} == {(0, "tls: CERTIFICATE_VERIFY_FAILED")}


def test_a_certificate_from_another_ca_fails_verification(tmp_path: Path, tls_echo: int) -> None:
    other = CertificateAuthority(tmp_path, "another-ca")
    samples = _run(f"tls://127.0.0.1:{tls_echo}/db?sni=db.example.com&ca={other.cert_path}", seconds=0.2)
    assert samples
    assert {(s.status, s.error) for s in samples} == {(0, "tls: CERTIFICATE_VERIFY_FAILED")}


def test_the_echo_backend_serves_https_only_with_both_certificate_and_key(ca: CertificateAuthority,
                                                                           tmp_path: Path) -> None:
    cert = ca.issue("half", "half", server=True)
    result = subprocess.run([sys.executable, "-m", "mcgw.app.echo", "--host", "127.0.0.1", "--cluster", "east",
                             "--pod", "p", "--tls-cert", str(cert.cert)], cwd=REPO, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "--tls-cert and --tls-key go together" in result.stderr


def test_an_https_echo_backend_refuses_cleartext_http(tls_echo: int) -> None:
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{tls_echo}/db", timeout=3)
