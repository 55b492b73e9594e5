"""State-of-the-world ADS: each protocol rule, with a Python client playing Envoy."""

from __future__ import annotations

import grpc
import pytest
from envoy.config.core.v3 import base_pb2

from tests.xdsserver.conftest import GROUP, NODE, XdsHarness, names_of
from tests.xdsserver.resources_fixture import gateway_resources
from xdsserver import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot


async def test_every_response_has_a_fresh_nonce_and_per_type_version(xds: XdsHarness) -> None:
    stream = xds.open()
    stream.send(node=NODE, type_url=CLUSTER)
    clusters = await stream.recv()
    stream.send(type_url=ROUTE, resource_names=["r1"])
    routes = await stream.recv()
    assert clusters.nonce
    assert routes.nonce
    assert clusters.nonce != routes.nonce
    assert clusters.version_info != routes.version_info
    # A route change moves only the route version.
    stream.ack(clusters)
    stream.ack(routes, ["r1"])
    xds.publish(header="v2")
    changed = await stream.recv()
    assert changed.type_url == ROUTE
    assert changed.nonce not in (clusters.nonce, routes.nonce)
    await stream.assert_silent()


async def test_node_is_taken_from_the_first_message_only(xds: XdsHarness) -> None:
    stream = xds.open()
    stream.send(node=NODE, type_url=CLUSTER)
    await stream.recv()
    # Later requests carry no node (set_node_on_first_message_only) and are still served.
    stream.send(type_url=LISTENER)
    assert names_of(await stream.recv()) == ["l1"]


async def test_ack_gets_no_answer(xds: XdsHarness) -> None:
    stream = xds.open()
    stream.send(node=NODE, type_url=CLUSTER)
    stream.ack(await stream.recv())
    await stream.assert_silent()


async def test_stale_nonce_gets_no_answer(xds: XdsHarness) -> None:
    stream = xds.open()
    stream.send(node=NODE, type_url=ROUTE, resource_names=["r1"])
    first = await stream.recv()
    stream.send(type_url=ROUTE, resource_names=["r1", "r2"], response_nonce="stale")
    await stream.assert_silent()
    stream.send(type_url=ROUTE, resource_names=["r1", "r2"], response_nonce=first.nonce,
                version_info=first.version_info)
    assert (await stream.recv()).nonce != first.nonce


async def test_full_state_types_drop_what_is_absent(xds: XdsHarness) -> None:
    xds.publish(clusters=("c1", "c2"))
    stream = xds.open()
    stream.send(node=NODE, type_url=CLUSTER)
    first = await stream.recv()
    assert sorted(names_of(first)) == ["c1", "c2"]
    stream.ack(first)
    xds.publish(clusters=("c1",))
    assert names_of(await stream.recv()) == ["c1"]


async def test_eds_and_rds_carry_only_the_names_asked_for(xds: XdsHarness) -> None:
    xds.publish(clusters=("c1", "c2", "c3"))
    stream = xds.open()
    stream.send(node=NODE, type_url=ENDPOINT, resource_names=["c2"])
    assert names_of(await stream.recv()) == ["c2"]


async def test_names_asked_for_before_they_exist_are_pushed_when_they_appear(xds: XdsHarness) -> None:
    stream = xds.open()
    stream.send(node=NODE, type_url=ENDPOINT, resource_names=["c1", "c9"])
    first = await stream.recv()
    assert names_of(first) == ["c1"]
    stream.ack(first, ["c1", "c9"])
    xds.publish(clusters=("c1", "c9"))
    assert sorted(names_of(await stream.recv())) == ["c1", "c9"]


async def test_newly_asked_name_is_answered_even_if_nothing_changed(xds: XdsHarness) -> None:
    xds.publish(clusters=("c1", "c2"))
    stream = xds.open()
    stream.send(node=NODE, type_url=ENDPOINT, resource_names=["c1"])
    first = await stream.recv()
    stream.send(type_url=ENDPOINT, resource_names=["c1", "c2"], version_info=first.version_info,
                response_nonce=first.nonce)
    assert sorted(names_of(await stream.recv())) == ["c1", "c2"]


async def test_nack_is_detected_by_error_detail_and_the_version_is_never_resent(xds: XdsHarness) -> None:
    stream = xds.open()
    stream.send(node=NODE, type_url=ENDPOINT, resource_names=["c1"])
    sent = await stream.recv()
    # Envoy's NACK echoes its previous version (here: none), not the rejected one.
    stream.send(type_url=ENDPOINT, resource_names=["c1"], response_nonce=sent.nonce, nack="bad endpoint")
    await stream.assert_silent()
    xds.publish()  # same content again: still the NACKed version
    await stream.assert_silent()
    xds.publish(port=9090)
    fixed = await stream.recv()
    assert fixed.version_info != sent.version_info
    (node,) = xds.server.status.nodes()
    assert node.types[ENDPOINT].nacked_version == sent.version_info
    assert node.types[ENDPOINT].nack_message == "bad endpoint"
    (rejection,) = xds.server.status.rejections()
    assert (rejection.group, rejection.version, rejection.message) == (GROUP, sent.version_info, "bad endpoint")


async def test_changes_are_pushed_in_warming_order(xds: XdsHarness) -> None:
    stream = xds.open()
    stream.send(node=NODE, type_url=LISTENER)
    stream.ack(await stream.recv())
    stream.send(type_url=ROUTE, resource_names=["r1"])
    stream.ack(await stream.recv(), ["r1"])
    stream.send(type_url=ENDPOINT, resource_names=["c1"])
    stream.ack(await stream.recv(), ["c1"])
    stream.send(type_url=CLUSTER)
    stream.ack(await stream.recv())
    # Everything changes at once: a new cluster, its endpoints, a new listener, and the route.
    xds.cache.set_snapshot(GROUP, Snapshot.from_messages(
        gateway_resources(clusters=("c1", "c2"), port=9090, header="v2", listeners=("l1", "l2"))))
    pushed = await stream.recv_all(4)
    assert [p.type_url for p in pushed] == [CLUSTER, ENDPOINT, LISTENER, ROUTE]


async def test_removals_come_after_the_additions_that_replace_them(xds: XdsHarness) -> None:
    stream = xds.open()
    stream.send(node=NODE, type_url=CLUSTER)
    stream.ack(await stream.recv())
    stream.send(type_url=ROUTE, resource_names=["r1"])
    stream.ack(await stream.recv(), ["r1"])
    # The route moves from c1 to c2 and c1 goes away.
    xds.cache.set_snapshot(GROUP, Snapshot.from_messages(gateway_resources(clusters=("c2",))))
    first, route, last = await stream.recv_all(3)
    assert first.type_url == CLUSTER
    assert sorted(names_of(first)) == ["c1", "c2"]  # c1 stays while the route still points at it
    assert route.type_url == ROUTE
    assert last.type_url == CLUSTER
    assert names_of(last) == ["c2"]


async def test_publishing_wakes_only_streams_whose_resources_changed(start_xds: object) -> None:
    harness: XdsHarness = await start_xds()  # type: ignore[operator]
    harness.publish(clusters=("c1", "c2"))
    reads_c1, reads_c2 = harness.open(), harness.open()
    reads_c1.send(node=NODE, type_url=ENDPOINT, resource_names=["c1"])
    reads_c2.send(node=base_pb2.Node(id="infra/gw/1", cluster="east"), type_url=ENDPOINT, resource_names=["c2"])
    reads_c1.ack(await reads_c1.recv(), ["c1"])
    reads_c2.ack(await reads_c2.recv(), ["c2"])
    harness.publish(clusters=("c1", "c2"), ports={"c2": 9090})
    assert names_of(await reads_c2.recv()) == ["c2"]
    await reads_c1.assert_silent()
    # Publishing identical content wakes nobody.
    harness.publish(clusters=("c1", "c2"), ports={"c2": 9090})
    await reads_c2.assert_silent()


async def test_node_groups_are_served_separately(xds: XdsHarness) -> None:
    west_group = ("west", "infra/gw")
    xds.cache.set_snapshot(west_group, Snapshot.from_messages(gateway_resources(clusters=("w1",))))
    east, west = xds.open(), xds.open()
    east.send(node=NODE, type_url=CLUSTER)
    west.send(node=base_pb2.Node(id="infra/gw/0", cluster="west"), type_url=CLUSTER)
    assert names_of(await east.recv()) == ["c1"]
    assert names_of(await west.recv()) == ["w1"]


@pytest.mark.parametrize(("node", "code", "detail"), [
    (base_pb2.Node(id="infra/other/0", cluster="east"), grpc.StatusCode.NOT_FOUND, "east/infra/other"),
    (base_pb2.Node(id="just-a-name", cluster="east"), grpc.StatusCode.INVALID_ARGUMENT, "<namespace>/<gateway>"),
    (base_pb2.Node(id="infra/gw/0"), grpc.StatusCode.INVALID_ARGUMENT, "node.cluster"),
])
async def test_unknown_or_malformed_node_gets_a_clear_error(
    xds: XdsHarness, node: base_pb2.Node, code: grpc.StatusCode, detail: str
) -> None:
    stream = xds.open()
    stream.send(node=node, type_url=CLUSTER)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stream.recv()
    assert failure.value.code() == code
    assert detail in (failure.value.details() or "")


async def test_resources_are_serialised_once_whatever_the_number_of_streams(
    xds: XdsHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xdsserver import resources

    serialised: list[str] = []
    original = resources.Resource.from_message.__func__  # type: ignore[attr-defined]

    def counting(cls: type[resources.Resource], message: object, previous: object = None) -> resources.Resource:
        serialised.append(resources.resource_name(message))  # type: ignore[arg-type]
        return original(cls, message, previous)  # type: ignore[no-any-return]

    monkeypatch.setattr(resources.Resource, "from_message", classmethod(counting))
    xds.publish(clusters=("c1", "c2"), header="v2")
    assert sorted(serialised) == ["c1", "c1", "c2", "c2", "l1", "r1"]  # each cluster and its endpoints
    streams = [xds.open(delta=(i % 2 == 1)) for i in range(4)]
    for index, stream in enumerate(streams):
        stream.send(node=base_pb2.Node(id=f"infra/gw/{index}", cluster="east"), type_url=CLUSTER)
        assert sorted(names_of(await stream.recv())) == ["c1", "c2"]
    assert len(serialised) == 6  # pushing to four streams serialised nothing more


async def test_a_changed_cluster_gets_its_unchanged_endpoints_again(xds: XdsHarness) -> None:
    """Envoy warms a changed cluster anew and waits for its endpoints: without them it would wait 15 s."""
    stream = xds.open()
    stream.send(node=NODE, type_url=CLUSTER)
    stream.ack(await stream.recv())
    stream.send(type_url=ENDPOINT, resource_names=["c1"])
    endpoints = await stream.recv()
    stream.ack(endpoints, ["c1"])
    xds.publish(connect_timeout="2s")  # the cluster changes, its endpoints do not
    cluster = await stream.recv()
    assert (cluster.type_url, names_of(cluster)) == (CLUSTER, ["c1"])
    again = await stream.recv()
    assert (again.type_url, names_of(again)) == (ENDPOINT, ["c1"])
    assert again.version_info == endpoints.version_info
    assert again.nonce != endpoints.nonce
    stream.ack(cluster)
    stream.ack(again, ["c1"])
    xds.publish(connect_timeout="2s", header="v2")  # only a route changes: nothing for clusters or endpoints
    await stream.assert_silent()
