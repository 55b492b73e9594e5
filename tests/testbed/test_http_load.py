"""The test bed's HTTP load names the pod that answered each request, so an e2e test can tell two backends of one
cluster apart (a zone's from another's, a fallback Service's from the import's)."""

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
from tests.e2e.testbed.load import OpenLoopLoad

REPO = Path(__file__).resolve().parents[2]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except (urllib.error.URLError, ConnectionError):
        return False


@pytest.fixture
def echo_pods() -> Iterator[list[int]]:
    """Two echo backends of cluster east, pods db-east-a and db-east-b."""
    ports = [free_port(), free_port()]
    processes = [subprocess.Popen([sys.executable, "-m", "mcgw.app.echo", "--host", "127.0.0.1", "--port",
                                   str(port), "--cluster", "east", "--pod", f"db-east-{zone}"], cwd=REPO)
                 for port, zone in zip(ports, "ab", strict=True)]
    try:
        deadline = time.monotonic() + 20
        while not all(_answers(f"http://127.0.0.1:{port}/healthz") for port in ports):
            assert all(p.poll() is None for p in processes), "an echo backend exited"
            assert time.monotonic() < deadline, "the echo backends never listened"
            time.sleep(0.05)
        yield ports
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_each_http_sample_names_the_cluster_and_pod_that_answered(echo_pods: list[int]) -> None:
    seen = []
    for port in echo_pods:
        load = OpenLoopLoad(f"http://127.0.0.1:{port}/db", rate=40, timeout=3)
        with load:
            time.sleep(0.3)
        seen.append({(s.status, s.cluster, s.pod) for s in load.samples})
    assert seen == [{(200, "east", "db-east-a")}, {(200, "east", "db-east-b")}]


def test_a_failed_http_sample_names_no_pod() -> None:
    load = OpenLoopLoad(f"http://127.0.0.1:{free_port()}/db", rate=40, timeout=1)
    with load:
        time.sleep(0.2)
    assert load.samples
    assert {(s.status, s.pod) for s in load.samples} == {(0, "")}
