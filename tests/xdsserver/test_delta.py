"""Delta (incremental) ADS: each protocol rule, with a Python client playing Envoy."""

from __future__ import annotations

from tests.xdsserver.conftest import NODE, XdsHarness, names_of
from xdsserver import CLUSTER, ENDPOINT, LISTENER, ROUTE


async def test_legacy_wildcard_gets_everything_and_later_additions(xds: XdsHarness) -> None:
    stream = xds.open(delta=True)
    stream.send(node=NODE, type_url=CLUSTER)
    first = await stream.recv()
    assert names_of(first) == ["c1"]
    assert first.nonce
    stream.ack(first)
    xds.publish(clusters=("c1", "c2"))
    assert names_of(await stream.recv()) == ["c2"]  # only what changed


async def test_explicit_subscribe_and_unsubscribe(xds: XdsHarness) -> None:
    xds.publish(clusters=("c1", "c2"))
    stream = xds.open(delta=True)
    stream.send(node=NODE, type_url=ENDPOINT, resource_names_subscribe=["c1"])
    stream.ack(await stream.recv())
    stream.send(type_url=ENDPOINT, resource_names_subscribe=["c2"])
    assert names_of(await stream.recv()) == ["c2"]
    stream.send(type_url=ENDPOINT, resource_names_unsubscribe=["c1"])
    await stream.assert_silent()
    xds.publish(clusters=("c1", "c2"), port=9090)
    assert names_of(await stream.recv()) == ["c2"]  # c1 is no longer followed
    await stream.assert_silent()


async def test_star_subscribe_and_unsubscribe_switch_wildcard(xds: XdsHarness) -> None:
    xds.publish(clusters=("c1", "c2"))
    stream = xds.open(delta=True)
    stream.send(node=NODE, type_url=CLUSTER, resource_names_subscribe=["c1"])
    assert names_of(await stream.recv()) == ["c1"]
    stream.send(type_url=CLUSTER, resource_names_subscribe=["*"])
    assert names_of(await stream.recv()) == ["c2"]
    stream.send(type_url=CLUSTER, resource_names_unsubscribe=["*"])
    await stream.assert_silent()  # nothing is sent for what only the wildcard covered
    xds.publish(clusters=("c1", "c2", "c3"))
    await stream.assert_silent()  # c3 is only covered by the dropped wildcard


async def test_unsubscribing_an_explicit_name_still_covered_by_wildcard_is_answered(xds: XdsHarness) -> None:
    stream = xds.open(delta=True)
    stream.send(node=NODE, type_url=CLUSTER, resource_names_subscribe=["*", "c1"])
    stream.ack(await stream.recv())
    stream.send(type_url=CLUSTER, resource_names_unsubscribe=["c1"])
    assert names_of(await stream.recv()) == ["c1"]


async def test_unsubscribe_of_never_subscribed_name_is_ignored(xds: XdsHarness) -> None:
    stream = xds.open(delta=True)
    stream.send(node=NODE, type_url=ENDPOINT, resource_names_subscribe=["c1"])
    stream.ack(await stream.recv())
    stream.send(type_url=ENDPOINT, resource_names_unsubscribe=["never"])
    await stream.assert_silent()


async def test_initial_resource_versions_suppress_unchanged_resources(xds: XdsHarness) -> None:
    xds.publish(clusters=("c1", "c2"))
    snapshot = xds.cache.get(("east", "infra/gw"))
    assert snapshot is not None
    held = {"c1": snapshot.of_type(CLUSTER)["c1"].version, "c2": "an-old-version", "gone": "x"}
    stream = xds.open(delta=True)
    stream.send(node=NODE, type_url=CLUSTER, initial_resource_versions=held)
    response = await stream.recv()
    assert names_of(response) == ["c2"]
    assert list(response.removed_resources) == ["gone"]


async def test_removed_resources_for_deletion_and_for_names_that_do_not_exist(xds: XdsHarness) -> None:
    xds.publish(clusters=("c1", "c2"))
    stream = xds.open(delta=True)
    stream.send(node=NODE, type_url=ENDPOINT, resource_names_subscribe=["c1", "c2", "nope"])
    first = await stream.recv()
    assert sorted(names_of(first)) == ["c1", "c2"]
    assert list(first.removed_resources) == ["nope"]
    stream.ack(first)
    xds.publish(clusters=("c1",))
    removal = await stream.recv()
    assert names_of(removal) == []
    assert list(removal.removed_resources) == ["c2"]


async def test_subscriptions_apply_even_with_a_stale_nonce(xds: XdsHarness) -> None:
    xds.publish(clusters=("c1", "c2"))
    stream = xds.open(delta=True)
    stream.send(node=NODE, type_url=ENDPOINT, resource_names_subscribe=["c1"])
    await stream.recv()
    stream.send(type_url=ENDPOINT, resource_names_subscribe=["c2"], response_nonce="stale")
    assert names_of(await stream.recv()) == ["c2"]


async def test_nacked_resources_are_not_resent_until_they_change(xds: XdsHarness) -> None:
    stream = xds.open(delta=True)
    stream.send(node=NODE, type_url=ENDPOINT, resource_names_subscribe=["c1"])
    sent = await stream.recv()
    stream.send(type_url=ENDPOINT, response_nonce=sent.nonce, nack="endpoint rejected")
    await stream.assert_silent()
    xds.publish()
    await stream.assert_silent()
    xds.publish(port=9090)
    assert names_of(await stream.recv()) == ["c1"]
    (node,) = xds.server.status.nodes()
    assert node.types[ENDPOINT].nack_message == "endpoint rejected"


async def test_updates_in_warming_order_then_removals_parents_first(xds: XdsHarness) -> None:
    stream = xds.open(delta=True)
    stream.send(node=NODE, type_url=CLUSTER)
    stream.ack(await stream.recv())
    stream.send(type_url=ENDPOINT, resource_names_subscribe=["c1"])
    stream.ack(await stream.recv())
    stream.send(type_url=LISTENER)
    stream.ack(await stream.recv())
    stream.send(type_url=ROUTE, resource_names_subscribe=["r1"])
    stream.ack(await stream.recv())
    stream.send(type_url=ENDPOINT, resource_names_subscribe=["c2"])  # Envoy follows the new cluster's EDS
    stream.ack(await stream.recv())
    # The route moves to c2 and c1 goes away.
    xds.publish(clusters=("c2",))
    pushed = await stream.recv_all(5)
    assert [(p.type_url, names_of(p), list(p.removed_resources)) for p in pushed] == [
        (CLUSTER, ["c2"], []),
        (ENDPOINT, ["c2"], []),
        (ROUTE, ["r1"], []),
        (CLUSTER, [], ["c1"]),
        (ENDPOINT, [], ["c1"]),
    ]
    await stream.assert_silent()


async def test_a_changed_cluster_gets_its_unchanged_endpoints_again(xds: XdsHarness) -> None:
    """Envoy warms a changed cluster anew and waits for its endpoints: without them it would wait 15 s."""
    stream = xds.open(delta=True)
    stream.send(node=NODE, type_url=CLUSTER)
    stream.ack(await stream.recv())
    stream.send(type_url=ENDPOINT, resource_names_subscribe=["c1"])
    endpoints = await stream.recv()
    stream.ack(endpoints)
    xds.publish(connect_timeout="2s")  # the cluster changes, its endpoints do not
    cluster = await stream.recv()
    assert (cluster.type_url, names_of(cluster)) == (CLUSTER, ["c1"])
    again = await stream.recv()
    assert (again.type_url, names_of(again)) == (ENDPOINT, ["c1"])
    assert again.resources[0].version == endpoints.resources[0].version
    stream.ack(cluster)
    stream.ack(again)
    xds.publish(connect_timeout="2s", clusters=("c1", "c2"))  # a new cluster: only it is sent
    added = await stream.recv()
    assert (added.type_url, names_of(added)) == (CLUSTER, ["c2"])
    await stream.assert_silent()
