"""Fixtures for the e2e tier: real API servers, real network namespaces, real Envoy.

Without root the whole tier skips and says why; under CI (``CI`` set) it fails instead, because CI
runs as root and a skipped e2e tier there would hide a broken test bed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.testbed import ClusterSet, can_create_namespaces, ensure_artifacts, start_clusterset


def _require_testbed() -> None:
    ok, why = can_create_namespaces()
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"e2e tier cannot run in CI: {why}", pytrace=False)
    pytest.skip(why)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def clusterset() -> Iterator[ClusterSet]:
    """Three member clusters (``MCGW_CLUSTERS`` overrides the count), each with etcd, kube-apiserver,
    established CRDs and a network namespace for its pods."""
    _require_testbed()
    size = int(os.environ.get("MCGW_CLUSTERS", "3"))
    with start_clusterset(size=size, artifacts=ensure_artifacts()) as started:
        yield started
