"""The test bed's load balancer without root or an API server: pools, allocation, endpoint selection,
the PID-tagged link's ownership rules, and forwarding on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import subprocess
import sys
from typing import Any, cast

import pytest

from tests.e2e.testbed.loadbalancer import host
from tests.e2e.testbed.loadbalancer.launch import pool_for, spare_pool_for
from tests.e2e.testbed.loadbalancer.plan import (
    LB_CLASS,
    Allocation,
    ServicePort,
    ServiceView,
    SlicePort,
    SliceView,
    is_ours,
    parse_pool,
    parse_service,
    parse_slice,
    plan_allocations,
    plan_listeners,
    seeded_holdings,
    select_endpoints,
    slice_port_for,
    stale_ingress,
    status_patch,
    usable_samples,
)
from tests.e2e.testbed.loadbalancer.proxy import Proxy, RoundRobin, TcpForwarder, UdpForwarder

POOL = parse_pool("198.18.15.0-198.18.15.3")


def service(name: str, *, created: str = "2026-01-01T00:00:00Z", type_: str = "LoadBalancer",
            lb_class: str | None = None, ip: str | None = None, ports: list[dict[str, Any]] | None = None,
            ingress: list[str] | None = None, namespace: str = "default") -> ServiceView:
    spec: dict[str, Any] = {"type": type_, "ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}]}
    if lb_class is not None:
        spec["loadBalancerClass"] = lb_class
    if ip is not None:
        spec["loadBalancerIP"] = ip
    obj = {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "creationTimestamp": created},
           "spec": spec,
           "status": {"loadBalancer": {"ingress": [{"ip": i, "ipMode": "VIP"} for i in ingress or []]}}}
    return parse_service(obj)


def endpoint_slice(name: str, service_name: str, ports: list[dict[str, Any]],
                   endpoints: list[tuple[str, bool | None]], address_type: str = "IPv4") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": service_name}},
        "addressType": address_type, "ports": ports,
        "endpoints": [{"addresses": [address], **({"conditions": {"ready": ready}} if ready is not None else {})}
                      for address, ready in endpoints],
    }


# -- pools -------------------------------------------------------------------------------------------


def test_pool_from_cidr_is_its_hosts_and_from_range_both_ends() -> None:
    cidr = parse_pool("10.0.0.0/30")
    assert [str(a) for a in cidr] == ["10.0.0.1", "10.0.0.2"]
    span = parse_pool("198.18.15.250-198.18.15.254")
    assert len(span) == 5
    assert "198.18.15.250" in span
    assert "198.18.15.254" in span
    assert "198.18.15.255" not in span
    assert str(span) == "198.18.15.250-198.18.15.254"
    assert [str(n) for n in span.networks()] == ["198.18.15.250/31", "198.18.15.252/31", "198.18.15.254/32"]
    assert "not an ip" not in span
    with pytest.raises(ValueError, match="empty"):
        parse_pool("198.18.15.9-198.18.15.1")
    with pytest.raises(ValueError, match="not IPv4"):
        parse_pool("fd00::/64")


def test_usable_samples_are_the_top_of_the_pool() -> None:
    assert usable_samples(POOL, 2) == ["198.18.15.3", "198.18.15.2"]
    assert usable_samples(parse_pool("198.18.15.7-198.18.15.7"), 3) == ["198.18.15.7"]


def test_pools_share_the_last_slash24_of_the_block_and_keep_a_spare_share() -> None:
    block = ipaddress.IPv4Network("198.18.32.0/20")
    names = ["east", "west", "central"]
    pools = [pool_for(block, names, n) for n in names]
    assert [str(p) for p in pools] == ["198.18.47.0-198.18.47.63", "198.18.47.64-198.18.47.127",
                                       "198.18.47.128-198.18.47.191"]
    # The last share is nobody's, and the block's broadcast address (the bridge's) is in no pool.
    assert str(spare_pool_for(block, names)) == "198.18.47.192-198.18.47.254"
    pod_subnets = list(block.subnets(new_prefix=24))[1:len(names) + 1]
    for pool in pools:
        assert not any(pool.first in s or pool.last in s for s in pod_subnets)
    # At the network's limit of 14 clusters each gets 16 addresses.
    many = [f"c{i}" for i in range(14)]
    assert str(pool_for(block, many, "c0")) == "198.18.47.0-198.18.47.15"
    assert str(pool_for(block, many, "c13")) == "198.18.47.208-198.18.47.223"
    assert str(spare_pool_for(block, many)) == "198.18.47.240-198.18.47.254"
    assert str(pool_for(block, ["only"], "only")) == "198.18.47.0-198.18.47.127"
    assert str(pool_for(block, ["a", "b", "c", "d"], "d")) == "198.18.47.96-198.18.47.127"
    with pytest.raises(ValueError, match="no /24"):
        pool_for(block, [f"c{i}" for i in range(15)], "c0")


# -- which Services, and their addresses --------------------------------------------------------------


def test_only_load_balancers_without_a_class_or_with_ours_are_ours() -> None:
    assert is_ours(service("a"))
    assert is_ours(service("b", lb_class=LB_CLASS))
    assert not is_ours(service("c", lb_class="example.com/other"))
    assert not is_ours(service("d", type_="ClusterIP"))
    # A load balancer of another class takes only Services naming it, never the classless ones.
    assert is_ours(service("e", lb_class="mine"), lb_class="mine")
    assert not is_ours(service("f"), lb_class="mine")
    assert not is_ours(service("g", lb_class=LB_CLASS), lb_class="mine")


def test_dynamic_allocation_takes_the_lowest_free_address_in_creation_order() -> None:
    services = [service("late", created="2026-01-02T00:00:00Z"), service("early", created="2026-01-01T00:00:00Z"),
                service("foreign", lb_class="example.com/other"), service("plain", type_="ClusterIP")]
    plan = plan_allocations(services, {}, POOL)
    assert plan == {("default", "early"): Allocation("198.18.15.0"), ("default", "late"): Allocation("198.18.15.1")}


def test_held_addresses_stay_put_and_a_new_service_takes_a_free_one() -> None:
    services = [service("a", created="1"), service("b", created="2"), service("c", created="3")]
    plan = plan_allocations(services, {("default", "c"): "198.18.15.0"}, POOL)
    assert plan[("default", "c")].ip == "198.18.15.0"
    assert plan[("default", "a")].ip == "198.18.15.1"
    assert plan[("default", "b")].ip == "198.18.15.2"


def test_requested_address_inside_the_pool_is_granted_outside_or_taken_is_refused() -> None:
    services = [service("static", created="1", ip="198.18.15.3"),
                service("outside", created="2", ip="198.18.0.254"),
                service("dup", created="3", ip="198.18.15.3"),
                service("garbage", created="4", ip="not-an-ip"),
                service("dynamic", created="5")]
    plan = plan_allocations(services, {}, POOL)
    assert plan[("default", "static")] == Allocation("198.18.15.3")
    assert plan[("default", "outside")].ip is None
    assert "outside the pool 198.18.15.0-198.18.15.3" in plan[("default", "outside")].failure
    assert plan[("default", "dup")].ip is None
    assert "already used by Service default/static" in plan[("default", "dup")].failure
    assert plan[("default", "garbage")].ip is None
    assert "not an IPv4" in plan[("default", "garbage")].failure
    assert plan[("default", "dynamic")].ip == "198.18.15.0"


def test_a_request_never_takes_an_address_another_service_holds() -> None:
    services = [service("holder", created="2"), service("asker", created="1", ip="198.18.15.0")]
    plan = plan_allocations(services, {("default", "holder"): "198.18.15.0"}, POOL)
    assert plan[("default", "holder")].ip == "198.18.15.0"
    assert plan[("default", "asker")].ip is None


def test_changing_the_request_moves_the_service_and_a_dynamic_one_can_take_the_old_address() -> None:
    services = [service("moved", created="1", ip="198.18.15.2"), service("new", created="2")]
    plan = plan_allocations(services, {("default", "moved"): "198.18.15.0"}, POOL)
    assert plan[("default", "moved")].ip == "198.18.15.2"
    assert plan[("default", "new")].ip == "198.18.15.0"


def test_an_exhausted_pool_refuses_the_newest() -> None:
    services = [service(f"s{i}", created=str(i)) for i in range(5)]
    plan = plan_allocations(services, {}, POOL)
    assert [plan[("default", f"s{i}")].ip for i in range(4)] == [str(a) for a in POOL]
    assert plan[("default", "s4")].ip is None
    assert "no free address" in plan[("default", "s4")].failure


def test_status_addresses_from_the_pool_are_held_after_a_restart() -> None:
    services = [service("a", ingress=["198.18.15.2"]), service("b", ingress=["10.1.1.1"])]
    held = seeded_holdings(services, {}, POOL)
    assert held == {("default", "a"): "198.18.15.2"}
    assert seeded_holdings(services, {("default", "a"): "198.18.15.1"}, POOL) == {("default", "a"): "198.18.15.1"}
    plan = plan_allocations(services, held, POOL)
    assert plan[("default", "a")].ip == "198.18.15.2"
    assert plan[("default", "b")].ip == "198.18.15.0"


def test_status_patch_and_stale_ingress() -> None:
    assert status_patch((("198.18.15.1", "VIP"),)) == {
        "status": {"loadBalancer": {"ingress": [{"ip": "198.18.15.1", "ipMode": "VIP"}]}}}
    assert status_patch(()) == {"status": {"loadBalancer": {"ingress": None}}}
    assert stale_ingress(service("was-lb", type_="ClusterIP", ingress=["198.18.15.1"]), POOL)
    assert not stale_ingress(service("foreign", lb_class="example.com/x", ingress=["198.18.15.1"]), POOL)
    assert not stale_ingress(service("other-pool", type_="ClusterIP", ingress=["10.0.0.1"]), POOL)


# -- endpoints ---------------------------------------------------------------------------------------


HTTP = ServicePort("http", "TCP", 80, 8080)


def test_only_ready_endpoints_are_selected_and_unset_ready_counts_as_ready() -> None:
    slices = [parse_slice(endpoint_slice("s1", "web", [{"name": "http", "port": 8080}],
                                         [("198.18.1.10", True), ("198.18.1.11", False), ("198.18.1.12", None)]))]
    assert select_endpoints(HTTP, slices) == (("198.18.1.10", 8080), ("198.18.1.12", 8080))


def _conditioned(*endpoints: tuple[str, dict[str, bool]]) -> SliceView:
    obj = endpoint_slice("s1", "web", [{"name": "http", "port": 8080}], [])
    obj["endpoints"] = [{"addresses": [address], "conditions": conditions} for address, conditions in endpoints]
    return parse_slice(obj)


def test_terminating_endpoints_get_new_connections_only_when_no_ready_one_is_left() -> None:
    terminating = ("198.18.1.10", {"ready": False, "serving": True, "terminating": True})
    unserving = ("198.18.1.11", {"ready": False, "serving": False, "terminating": True})
    fresh = ("198.18.1.12", {"ready": True, "serving": True, "terminating": False})
    starting = ("198.18.1.13", {"ready": False, "serving": False, "terminating": False})
    # A rollout: the old pod drains, the new one is ready and takes every new connection.
    assert select_endpoints(HTTP, [_conditioned(terminating, unserving, fresh, starting)]) == (("198.18.1.12", 8080),)
    # Every pod is terminating: the ones still serving keep the Service answering.
    assert select_endpoints(HTTP, [_conditioned(terminating, unserving, starting)]) == (("198.18.1.10", 8080),)
    # Across slices too: a ready endpoint in another slice wins.
    other = _conditioned(fresh)
    assert select_endpoints(HTTP, [_conditioned(terminating), SliceView("default", "s2", "web", "IPv4",
                                                                        other.ports, other.endpoints)]) == (
        ("198.18.1.12", 8080),)
    assert select_endpoints(HTTP, [_conditioned(unserving, starting)]) == ()
    # Serving unset reads as ready; terminating unset as false.
    assert parse_slice(endpoint_slice("s1", "web", [], [("198.18.1.10", False)])).endpoints[0].fallback is False
    assert _conditioned(("198.18.1.10", {"ready": False, "terminating": True})).endpoints[0].fallback is False
    assert _conditioned(("198.18.1.10", {"terminating": True})).endpoints[0].fallback is True


def test_named_ports_pick_the_slice_port_of_that_name() -> None:
    ports = [{"name": "metrics", "port": 9090}, {"name": "http", "port": 3000}]
    slices = [parse_slice(endpoint_slice("s1", "web", ports, [("198.18.1.10", True)]))]
    assert select_endpoints(HTTP, slices) == (("198.18.1.10", 3000),)
    assert select_endpoints(ServicePort("metrics", "TCP", 9000, "metrics"), slices) == (("198.18.1.10", 9090),)
    assert select_endpoints(ServicePort("admin", "TCP", 81, "admin"), slices) == ()


def test_unnamed_slice_ports_match_by_numeric_target_port_and_protocol() -> None:
    slices = [parse_slice(endpoint_slice("s1", "web", [{"port": 8080, "protocol": "TCP"},
                                                       {"port": 8080, "protocol": "UDP"}],
                                         [("198.18.1.10", True)]))]
    port = ServicePort("", "TCP", 80, 8080)
    assert slice_port_for(port, slices[0].ports) == SlicePort("", "TCP", 8080)
    assert select_endpoints(ServicePort("dns", "UDP", 53, 8080), slices) == (("198.18.1.10", 8080),)
    assert select_endpoints(ServicePort("other", "TCP", 80, 9999), slices) == ()


def test_endpoints_of_every_slice_are_merged_once_each_and_non_ipv4_skipped() -> None:
    ports = [{"name": "http", "port": 8080}]
    slices = [parse_slice(endpoint_slice("s1", "web", ports, [("198.18.1.20", True), ("198.18.1.10", True)])),
              parse_slice(endpoint_slice("s2", "web", ports, [("198.18.1.10", True), ("198.18.1.9", True)])),
              parse_slice(endpoint_slice("s3", "web", ports, [("fd00::1", True)], address_type="IPv6"))]
    assert select_endpoints(HTTP, slices) == (("198.18.1.9", 8080), ("198.18.1.10", 8080), ("198.18.1.20", 8080))


def test_endpoints_outside_the_allowed_networks_are_never_targets() -> None:
    slices = [parse_slice(endpoint_slice("s1", "web", [{"name": "http", "port": 8080}],
                                         [("198.18.1.10", True), ("192.0.2.7", True), ("10.0.0.1", True)]))]
    assert select_endpoints(HTTP, slices) == (("198.18.1.10", 8080),)
    assert select_endpoints(HTTP, slices, [ipaddress.IPv4Network("192.0.2.0/24")]) == (("192.0.2.7", 8080),)


def test_listeners_cover_tcp_and_udp_ports_that_have_ready_endpoints() -> None:
    svc = service("web", ports=[{"name": "http", "port": 80, "targetPort": 8080},
                                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
                                {"name": "sctp", "port": 99, "protocol": "SCTP"},
                                {"name": "idle", "port": 81, "targetPort": 8081}])
    slices = [parse_slice(endpoint_slice("s1", "web", [{"name": "http", "port": 8080},
                                                       {"name": "dns", "port": 5353, "protocol": "UDP"},
                                                       {"name": "sctp", "port": 99, "protocol": "SCTP"},
                                                       {"name": "idle", "port": 8081}],
                                         [("198.18.1.10", True)])),
              parse_slice(endpoint_slice("s2", "web", [{"name": "idle", "port": 8081}], [("198.18.1.11", False)]))]
    assert plan_listeners(svc, slices) == {("TCP", 80): (("198.18.1.10", 8080),),
                                           ("UDP", 53): (("198.18.1.10", 5353),),
                                           ("TCP", 81): (("198.18.1.10", 8081),)}
    assert plan_listeners(svc, slices[1:]) == {}


def test_round_robin_turns_and_offers_the_rest_for_retries() -> None:
    turns = RoundRobin([("a", 1), ("b", 1), ("c", 1)])
    assert turns.order(3) == [("a", 1), ("b", 1), ("c", 1)]
    assert turns.order(2) == [("b", 1), ("c", 1)]
    assert turns.order(1) == [("c", 1)]
    turns.update([("a", 1), ("b", 1)])  # the fourth turn of two endpoints is the second's
    assert turns.order(1) == [("b", 1)]
    assert RoundRobin().order() == []


# -- the PID-tagged link -----------------------------------------------------------------------------


def test_link_names_carry_the_pid_and_only_ours_with_a_gone_owner_are_stale() -> None:
    assert host.link_name(0x1A2B) == "mlb1a2b"
    assert len(host.link_name(4194304)) <= 15
    me = os.getpid()
    started = host.process_start_time(me)
    assert started is not None
    assert not host.owner_gone(host.link_name(me), f"mcgw-lb pid={me} start={started} cluster=east")
    assert not host.owner_gone(host.link_name(me), "")  # no alias yet: a live PID is never swept
    assert host.owner_gone(host.link_name(me), f"mcgw-lb pid={me} start={int(started) + 1}")  # PID reused
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert host.owner_gone(host.link_name(dead.pid), "")
    assert not host.owner_gone("mgb1234n0", "")
    assert not host.owner_gone("eth0", "")
    assert host.parse_alias("mcgw-lb pid=7 start=9 cluster=east") == {"pid": "7", "start": "9", "cluster": "east"}
    assert host.parse_alias("something else") == {}


# -- forwarding on loopback --------------------------------------------------------------------------


async def _backend(name: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(name + b":" + data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _ask(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def _cut(reader: asyncio.StreamReader) -> bool:
    """Whether the connection was ended (reset, as the forwarder does, or closed)."""
    try:
        return await asyncio.wait_for(reader.read(64), 5) == b""
    except ConnectionResetError:
        return True


async def test_tcp_forwarder_round_robins_and_refuses_without_endpoints() -> None:
    (one, one_port), (two, two_port) = await _backend(b"one"), await _backend(b"two")
    forwarder = TcpForwarder("127.0.0.1", 0, [("127.0.0.1", one_port), ("127.0.0.1", two_port)])
    proxy = Proxy()
    try:
        await forwarder.listen()
        assert forwarder._server is not None
        port = forwarder._server.sockets[0].getsockname()[1]
        answers = [await _ask(port, b"hi") for _ in range(4)]
        assert answers == [b"one:hi", b"two:hi", b"one:hi", b"two:hi"]

        # A long connection stays up when the listener stops (no endpoints left), and new ones are refused.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"first")
        assert await asyncio.wait_for(reader.read(64), 5) == b"one:first"
        forwarder.update([])
        forwarder.stop_listening()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"second")
        assert await asyncio.wait_for(reader.read(64), 5) == b"one:second"
        forwarder.close()  # the port is gone from the Service: its connections go too
        assert await _cut(reader)
        writer.close()
    finally:
        forwarder.close()
        proxy.close()
        one.close()
        two.close()


async def test_tcp_forwarder_skips_an_endpoint_that_refuses() -> None:
    good, good_port = await _backend(b"good")
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    forwarder = TcpForwarder("127.0.0.1", 0, [("127.0.0.1", dead_port), ("127.0.0.1", good_port)])
    try:
        await forwarder.listen()
        assert forwarder._server is not None
        port = forwarder._server.sockets[0].getsockname()[1]
        assert await _ask(port, b"x") == b"good:x"
    finally:
        forwarder.close()
        good.close()


async def test_proxy_sync_keeps_ports_that_stay_and_closes_removed_ones() -> None:
    backend, backend_port = await _backend(b"b")
    proxy = Proxy()
    try:
        # Port 0 cannot be used as a key twice, so take two free ports first.
        probe = [await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0) for _ in range(2)]
        ports = [p.sockets[0].getsockname()[1] for p in probe]
        for server in probe:
            server.close()
            await server.wait_closed()
        target = (("127.0.0.1", backend_port),)
        assert await proxy.sync("127.0.0.1", {("TCP", ports[0])}, {("TCP", ports[0]): target}) == []
        kept = proxy.forwarders["127.0.0.1"][("TCP", ports[0])]
        reader, writer = await asyncio.open_connection("127.0.0.1", ports[0])
        writer.write(b"long")
        assert await asyncio.wait_for(reader.read(64), 5) == b"b:long"
        wanted = {("TCP", ports[0]), ("TCP", ports[1])}
        assert await proxy.sync("127.0.0.1", wanted, {k: target for k in wanted}) == []
        assert proxy.forwarders["127.0.0.1"][("TCP", ports[0])] is kept
        assert await _ask(ports[1], b"new") == b"b:new"
        writer.write(b"still")
        assert await asyncio.wait_for(reader.read(64), 5) == b"b:still"
        assert await proxy.sync("127.0.0.1", {("TCP", ports[1])}, {("TCP", ports[1]): target}) == []
        assert await _cut(reader)
        writer.close()
    finally:
        proxy.close()
        backend.close()


class _UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, name: bytes) -> None:
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.name + b":" + data, addr)


async def test_udp_forwarder_keeps_each_client_on_one_endpoint_and_round_robins_new_ones() -> None:
    loop = asyncio.get_running_loop()
    backends = [await loop.create_datagram_endpoint(lambda n=n: _UdpEcho(n), local_addr=("127.0.0.1", 0))  # type: ignore[misc]
                for n in (b"one", b"two")]
    targets = [("127.0.0.1", t.get_extra_info("sockname")[1]) for t, _ in backends]
    forwarder = UdpForwarder("127.0.0.1", 0, targets)
    clients = []
    try:
        await forwarder.listen()
        assert forwarder._transport is not None
        port = forwarder._transport.get_extra_info("sockname")[1]
        for _ in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(("127.0.0.1", port))
            clients.append(sock)

        async def ask(sock: socket.socket, data: bytes) -> bytes:
            await loop.sock_sendall(sock, data)
            return await asyncio.wait_for(loop.sock_recv(sock, 512), 5)

        assert await ask(clients[0], b"a") == b"one:a"
        assert await ask(clients[1], b"b") == b"two:b"
        assert await ask(clients[0], b"c") == b"one:c"
        # The endpoint of the first client goes away: its next datagram goes to one that is still there.
        forwarder.update(targets[1:])
        assert await ask(clients[0], b"d") == b"two:d"
        forwarder.stop_listening()
        assert not forwarder.listening
        assert forwarder.sessions == {}
    finally:
        forwarder.close()
        for sock in clients:
            sock.close()
        for transport, _ in backends:
            transport.close()


async def test_tcp_forwarder_carries_large_transfers_both_ways_with_half_close() -> None:
    """Megabytes each way through flow control; the client's half-close reaches the endpoint, whose answer
    still comes back in full."""
    payload = bytes(range(256)) * 16384  # 4 MiB

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = await reader.read()  # until the forwarded EOF
        writer.write(len(received).to_bytes(8, "big") + received[::-1])
        await writer.drain()
        writer.close()

    backend = await asyncio.start_server(handle, "127.0.0.1", 0)
    forwarder = TcpForwarder("127.0.0.1", 0, [("127.0.0.1", backend.sockets[0].getsockname()[1])])
    try:
        await forwarder.listen()
        assert forwarder._server is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", forwarder._server.sockets[0].getsockname()[1])
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        assert int.from_bytes(answer[:8], "big") == len(payload)
        assert answer[8:] == payload[::-1]
        await asyncio.sleep(0.05)
        assert forwarder.connections == set(), "both ends closed: nothing is kept"
    finally:
        forwarder.close()
        backend.close()
