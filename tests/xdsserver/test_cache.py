"""Snapshots are consistent before anyone can publish them, and versions follow content."""

from __future__ import annotations

import pytest

from tests.xdsserver.resources_fixture import eds_cluster, endpoints, gateway_resources, listener, route
from xdsserver import CLUSTER, ENDPOINT, ROUTE, InconsistentSnapshotError, Snapshot


def test_consistent_snapshot_indexes_every_type() -> None:
    snapshot = Snapshot.from_messages(gateway_resources())
    assert set(snapshot.of_type(CLUSTER)) == {"c1"}
    assert set(snapshot.of_type(ENDPOINT)) == {"c1"}
    assert set(snapshot.of_type(ROUTE)) == {"r1"}


def test_missing_endpoints_for_eds_cluster_is_rejected() -> None:
    with pytest.raises(InconsistentSnapshotError, match="ClusterLoadAssignment referenced but missing: c2"):
        Snapshot.from_messages([*gateway_resources(), eds_cluster("c2")])


def test_orphan_endpoints_and_routes_are_rejected() -> None:
    with pytest.raises(InconsistentSnapshotError, match="not referenced by any cluster: stray"):
        Snapshot.from_messages([*gateway_resources(), endpoints("stray")])
    with pytest.raises(InconsistentSnapshotError, match="RouteConfiguration referenced but missing: r2"):
        Snapshot.from_messages([*gateway_resources(), listener("l2", "r2", port=10001)])


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(InconsistentSnapshotError, match="duplicate RouteConfiguration 'r1'"):
        Snapshot.from_messages([*gateway_resources(), route("r1", "c1", "other")])


def test_versions_change_only_with_content() -> None:
    first, same, changed = (Snapshot.from_messages(gateway_resources(header=h)) for h in ("v1", "v1", "v2"))
    assert first.version(ROUTE) == same.version(ROUTE)
    assert first.version(ROUTE) != changed.version(ROUTE)
    assert first.version(CLUSTER) == changed.version(CLUSTER)
    assert first.of_type(ROUTE)["r1"].version != changed.of_type(ROUTE)["r1"].version
    # A subscriber to names that do not exist sees a different (empty) view than one to r1.
    assert first.version(ROUTE, ["r1"]) != first.version(ROUTE, ["missing"])


def test_unchanged_resources_are_reused_from_the_previous_snapshot() -> None:
    first = Snapshot.from_messages(gateway_resources(clusters=("c1", "c2")))
    second = Snapshot.from_messages(gateway_resources(clusters=("c1", "c2"), ports={"c2": 9090}), previous=first)
    assert second.of_type(ENDPOINT)["c1"] is first.of_type(ENDPOINT)["c1"]
    assert second.of_type(ENDPOINT)["c2"] is not first.of_type(ENDPOINT)["c2"]
    assert second.of_type(ENDPOINT)["c2"].version != first.of_type(ENDPOINT)["c2"].version
    assert first.changed_names(second) == {ENDPOINT: frozenset({"c2"})}
