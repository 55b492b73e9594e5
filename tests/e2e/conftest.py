"""Fixtures for the e2e tier: real API servers, real network namespaces, real Envoy.

Without root the tier skips and says why; under CI (``CI`` set) it fails instead, because CI runs
as root and a skipped e2e tier there would hide a broken test bed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.testbed import ClusterSet, can_create_namespaces, ensure_artifacts, start_clusterset

_started: list[str] = []


def require_testbed() -> None:
    """Skip (developer without root) or fail (CI) when the test network cannot be built."""
    ok, why = can_create_namespaces()
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"e2e tier cannot run in CI: {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def clusterset() -> Iterator[ClusterSet]:
    """Member clusters (3, or ``MCGW_CLUSTERS``), each with etcd, kube-apiserver, established CRDs and a
    network namespace for its pods."""
    require_testbed()
    size = int(os.environ.get("MCGW_CLUSTERS", "3"))
    with start_clusterset(size=size, artifacts=ensure_artifacts()) as started:
        per_cluster = ", ".join(f"{name} {c.start_seconds:.1f}s" for name, c in started.clusters.items())
        _started.append(f"{len(started.clusters)} member clusters up in {started.start_seconds:.1f}s ({per_cluster})")
        yield started


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _started:
        terminalreporter.write_line(f"clusterset: {line}")
