"""The test bed's LoadBalancer emulation against a real API server and echo backends in east's namespace.

The load balancer runs with a class of its own and the spare pool (``spare_pool``), so it cannot meet a
load balancer the ClusterSet may run for east: each takes only Services of its class, from its own pool.
Services are selectorless, fed by hand-made EndpointSlices, as in the smoke test. The tests share one
load balancer and run in order: each leaves the Service as the next one expects it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.testbed.cluster import MemberCluster
from tests.e2e.testbed.clusterset import ClusterSet, EchoBackend
from tests.e2e.testbed.loadbalancer import sample_addresses, spare_pool, start_loadbalancer, sweep_stale_lb
from tests.e2e.testbed.loadbalancer.host import link_name
from tests.e2e.testbed.loadbalancer.plan import Pool
from tests.e2e.testbed.network import TestNetwork
from tests.e2e.testbed.processes import ManagedProcess, wait_until

CLUSTER = "east"
NAMESPACE = "lb-e2e"
TEST_CLASS = "testbed.mcgw.dev/e2e-loadbalancer"
SERVICE = "web"
SERVICES = f"/api/v1/namespaces/{NAMESPACE}/services"


@dataclass
class Bed:
    cluster: MemberCluster
    process: ManagedProcess
    pool: Pool
    link: str
    backends: list[EchoBackend]
    spare: EchoBackend  # marked not ready in the slice
    network: TestNetwork


def _service(name: str, ports: list[dict[str, Any]], lb_class: str | None = TEST_CLASS,
             ip: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "LoadBalancer", "ports": ports, "allocateLoadBalancerNodePorts": False}
    if lb_class:
        spec["loadBalancerClass"] = lb_class
    if ip:
        spec["loadBalancerIP"] = ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


def _port(name: str, port: int, target: int = 8080) -> dict[str, Any]:
    return {"name": name, "port": port, "targetPort": target, "protocol": "TCP"}


def _slice(service: str, names: list[str], endpoints: list[tuple[str, bool]]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-1", "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": name, "port": 8080, "protocol": "TCP"} for name in names],
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready}} for address, ready in endpoints],
    }


def _get_service(cluster: MemberCluster, name: str) -> dict[str, Any] | None:
    try:
        service: dict[str, Any] = cluster.request("GET", f"{SERVICES}/{name}")
        return service
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def _ingress(cluster: MemberCluster, name: str) -> list[dict[str, Any]]:
    service = _get_service(cluster, name) or {}
    ingress: list[dict[str, Any]] = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return ingress


def _wait_ingress(cluster: MemberCluster, name: str, timeout: float = 30) -> str:
    wait_until(lambda: bool(_ingress(cluster, name)), timeout, f"an ingress address on Service {name}")
    return str(_ingress(cluster, name)[0]["ip"])


def _patch(cluster: MemberCluster, path: str, body: dict[str, Any]) -> Any:
    return cluster.request("PATCH", path, body, content_type="application/merge-patch+json")


def _http(address: str, port: int, path: str = "/", timeout: float = 5) -> dict[str, Any]:
    """One GET on a connection of its own (http.client: never an environment proxy)."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body: dict[str, Any] = json.loads(response.read())
        return body
    finally:
        connection.close()


def _ask_again(connection: http.client.HTTPConnection, path: str) -> bytes:
    connection.request("GET", path)
    return connection.getresponse().read()


def _refused(address: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a connection is refused or reset at once (nothing listens on a bound address)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return sock.recv(1) == b""
    except (ConnectionRefusedError, ConnectionResetError):
        return True


def _unreachable(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return False
    except OSError:
        return True


def _link_addresses(link: str) -> set[str]:
    result = subprocess.run(["ip", "-json", "addr", "show", "dev", link], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return set()
    return {a["local"] for entry in json.loads(result.stdout or "[]") for a in entry.get("addr_info", [])
            if a.get("family") == "inet"}


def _link_exists(link: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", link], capture_output=True, check=False).returncode == 0


def _events(cluster: MemberCluster, name: str, reason: str) -> list[dict[str, Any]]:
    query = f"fieldSelector=involvedObject.name%3D{name},reason%3D{reason}"
    items: list[dict[str, Any]] = cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}/events?{query}")["items"]
    return items


@pytest.fixture(scope="module")
def bed(clusterset: ClusterSet) -> Iterator[Bed]:
    cluster = clusterset.clusters[CLUSTER]
    try:
        cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    except urllib.error.HTTPError as error:
        if error.code != 409:
            raise
    pool = spare_pool(clusterset.network)
    started = time.monotonic()
    process = start_loadbalancer(cluster, clusterset.network, pool=pool, lb_class=TEST_CLASS)
    print(f"\n[loadbalancer] started and synced in {(time.monotonic() - started) * 1000:.0f} ms", flush=True)
    backends = [clusterset.start_echo(CLUSTER, NAMESPACE, pod=f"lb-echo-{i}") for i in range(3)]
    state = Bed(cluster, process, pool, link_name(process.pid), backends[:2], backends[2], clusterset.network)
    try:
        yield state
    finally:
        state.process.stop()
    assert not _link_exists(state.link), f"the load balancer left its link {state.link} behind"


def test_ingress_appears_and_traffic_reaches_every_ready_backend(bed: Bed, clusterset: ClusterSet) -> None:
    cluster = bed.cluster
    slice_ = _slice(SERVICE, ["http"], [(b.address, True) for b in bed.backends] + [(bed.spare.address, False)])
    cluster.request("POST", f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices", slice_)
    started = time.monotonic()
    cluster.request("POST", SERVICES, _service(SERVICE, [_port("http", 80)]))
    address = _wait_ingress(cluster, SERVICE)
    print(f"\n[loadbalancer] Service created -> ingress in status: {(time.monotonic() - started) * 1000:.0f} ms")
    assert _ingress(cluster, SERVICE) == [{"ip": address, "ipMode": "VIP"}]
    assert address in bed.pool
    assert address in _link_addresses(bed.link)

    pods = Counter(_http(address, 80)["pod"] for _ in range(20))
    assert set(pods) == {b.pod for b in bed.backends}, pods
    assert pods[bed.backends[0].pod] == pods[bed.backends[1].pod] == 10, "round-robin over two endpoints"
    assert bed.spare.pod not in pods
    wait_until(lambda: bool(_events(cluster, SERVICE, "IPAllocated")), 30, "an IPAllocated Event")

    # Pods reach it too: the pool is on-link on the bridge for every cluster namespace.
    probe = (f"import http.client,json; c=http.client.HTTPConnection({address!r}, 80, timeout=5); "
             "c.request('GET', '/'); print(json.loads(c.getresponse().read())['pod'])")
    answer = subprocess.run(clusterset.net(CLUSTER).exec_argv([sys.executable, "-c", probe]), capture_output=True,
                            text=True, timeout=30, check=False)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() in {b.pod for b in bed.backends}


def test_throughput_through_the_proxy(bed: Bed) -> None:
    """Requests per second for a small answer, through the proxy and straight to one backend, for scale."""
    address = _wait_ingress(bed.cluster, SERVICE)

    def rate(host: str, port: int, keep_alive: bool, seconds: float = 1.5) -> float:
        count, deadline = 0, time.monotonic() + seconds
        connection = http.client.HTTPConnection(host, port, timeout=5)
        while time.monotonic() < deadline:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            count += 1
            if not keep_alive:
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=5)
        connection.close()
        return count / seconds

    backend = bed.backends[0]
    proxied, direct = rate(address, 80, True), rate(backend.address, backend.port, True)
    proxied_new, direct_new = rate(address, 80, False), rate(backend.address, backend.port, False)
    print(f"\n[loadbalancer] keep-alive: {proxied:.0f} req/s through the proxy, {direct:.0f} direct; "
          f"a connection per request: {proxied_new:.0f} req/s through the proxy, {direct_new:.0f} direct")
    assert proxied > 50
    assert proxied_new > 20


def test_port_change_opens_the_new_port_and_keeps_connections_on_the_one_that_stays(bed: Bed) -> None:
    cluster = bed.cluster
    address = _wait_ingress(cluster, SERVICE)
    long_lived = http.client.HTTPConnection(address, 80, timeout=5)
    long_lived.request("GET", "/before")
    first = long_lived.getresponse()
    assert json.loads(first.read())["path"] == "/before"

    assert _refused(address, 8081)
    slice_path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/{SERVICE}-1"
    _patch(cluster, slice_path, {"ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                                           {"name": "alt", "port": 8080, "protocol": "TCP"}]})
    _patch(cluster, f"{SERVICES}/{SERVICE}", {"spec": {"ports": [_port("http", 80), _port("alt", 8081)]}})
    wait_until(lambda: _http(address, 8081, timeout=1)["path"] == "/", 30, "the new port 8081 to answer")

    long_lived.request("GET", "/after")
    again = long_lived.getresponse()
    assert json.loads(again.read())["path"] == "/after", "the connection on the port that stayed was kept"

    # Port 80 leaves the Service: new connections are refused and the established one is closed.
    _patch(cluster, f"{SERVICES}/{SERVICE}", {"spec": {"ports": [_port("alt", 8081)]}})
    wait_until(lambda: _refused(address, 80), 30, "port 80 to refuse connections")
    with pytest.raises(ConnectionError):  # reset, or closed: RemoteDisconnected is one too
        _ask_again(long_lived, "/gone")
    long_lived.close()
    assert _http(address, 8081)["pod"] in {b.pod for b in bed.backends}


def test_no_ready_endpoints_refuses_at_once_and_recovers(bed: Bed) -> None:
    cluster = bed.cluster
    address = _wait_ingress(cluster, SERVICE)
    slice_path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/{SERVICE}-1"
    def endpoints(ready: set[str]) -> list[dict[str, Any]]:
        return [{"addresses": [b.address], "conditions": {"ready": b.pod in ready}}
                for b in [*bed.backends, bed.spare]]

    _patch(cluster, slice_path, {"endpoints": endpoints(set())})
    wait_until(lambda: _refused(address, 8081), 30, "8081 to refuse connections without ready endpoints")
    started = time.monotonic()
    assert _refused(address, 8081)
    assert time.monotonic() - started < 0.5, "a refusal is immediate, not a timeout"

    _patch(cluster, slice_path, {"endpoints": endpoints({bed.spare.pod})})
    wait_until(lambda: _http(address, 8081, timeout=1)["pod"] == bed.spare.pod, 30, "the spare backend to serve")
    assert {_http(address, 8081)["pod"] for _ in range(4)} == {bed.spare.pod}


def test_requested_address_inside_the_pool_is_honoured_and_outside_refused(bed: Bed, clusterset: ClusterSet) -> None:
    cluster = bed.cluster
    usable = str(bed.pool.last)
    _, unusable = sample_addresses(clusterset.network, CLUSTER)
    cluster.request("POST", SERVICES, _service("foreign", [_port("http", 80)], lb_class="example.com/other"))
    cluster.request("POST", SERVICES, _service("outside", [_port("http", 80)], ip=unusable[0]))
    cluster.request("POST", SERVICES, _service("static", [_port("http", 80)], ip=usable))
    assert _wait_ingress(cluster, "static") == usable
    wait_until(lambda: bool(_events(cluster, "outside", "AllocationFailed")), 30, "an AllocationFailed Event")
    event = _events(cluster, "outside", "AllocationFailed")[0]
    assert event["type"] == "Warning", event
    assert "outside the pool" in event["message"], event
    assert _ingress(cluster, "outside") == []
    assert _ingress(cluster, "foreign") == [], "a Service of another class is not ours"

    # The same request from a second Service is refused while the first holds the address.
    cluster.request("POST", SERVICES, _service("static-2", [_port("http", 80)], ip=usable))
    wait_until(lambda: bool(_events(cluster, "static-2", "AllocationFailed")), 30, "an AllocationFailed Event")
    assert "already used" in _events(cluster, "static-2", "AllocationFailed")[0]["message"]
    assert _ingress(cluster, "static-2") == []
    for name in ("foreign", "outside", "static-2"):
        cluster.request("DELETE", f"{SERVICES}/{name}")


_UDP_ECHO = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 5353))
while True:
    data, peer = sock.recvfrom(2048)
    sock.sendto(b"udp:" + data, peer)
"""


def test_udp_ports_are_forwarded_too(bed: Bed, clusterset: ClusterSet) -> None:
    cluster = bed.cluster
    net = clusterset.net(CLUSTER)
    backend = net.add_pod_address()
    echo = ManagedProcess("udp-echo", net.exec_argv([sys.executable, "-c", _UDP_ECHO, backend]),
                          clusterset.workdir / "backends" / "udp-echo.log")
    try:
        slice_ = {**_slice("dns", [], [(backend, True)]), "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}]}
        cluster.request("POST", f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices", slice_)
        cluster.request("POST", SERVICES, _service("dns", [{"name": "dns", "port": 53, "targetPort": 5353,
                                                            "protocol": "UDP"}]))
        address = _wait_ingress(cluster, "dns")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.5)
            sock.connect((address, 53))

            def answered() -> bool:
                sock.send(b"ping")
                return sock.recv(64) == b"udp:ping"

            wait_until(answered, 30, "a UDP answer through the load balancer", echo)
        cluster.request("DELETE", f"{SERVICES}/dns")
        cluster.request("DELETE", f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/dns-1")
    finally:
        echo.stop()


def test_deleting_the_service_removes_and_releases_its_address(bed: Bed) -> None:
    cluster = bed.cluster
    address = _wait_ingress(cluster, SERVICE)
    cluster.request("DELETE", f"{SERVICES}/{SERVICE}")
    wait_until(lambda: address not in _link_addresses(bed.link), 30, f"{address} to leave the link")
    assert _unreachable(address, 8081)

    # Released: a new Service asking for exactly that address gets it.
    cluster.request("POST", SERVICES, _service("reuse", [_port("alt", 8081)], ip=address))
    assert _wait_ingress(cluster, "reuse") == address
    cluster.request("DELETE", f"{SERVICES}/reuse")

    # A Service that stops being a LoadBalancer loses its address and its status.
    static = str(bed.pool.last)
    assert _wait_ingress(cluster, "static") == static
    _patch(cluster, f"{SERVICES}/static", {"spec": {"type": "ClusterIP", "loadBalancerClass": None,
                                                               "loadBalancerIP": None,
                                                               "allocateLoadBalancerNodePorts": None}})
    wait_until(lambda: _ingress(cluster, "static") == [], 30, "the status of a Service no longer LoadBalancer")
    wait_until(lambda: static not in _link_addresses(bed.link), 30, f"{static} to leave the link")
    cluster.request("DELETE", f"{SERVICES}/static")


def test_a_killed_load_balancer_is_swept(bed: Bed) -> None:
    """A SIGKILLed load balancer cannot clean up; ``sweep_stale_lb`` removes its link and addresses."""
    cluster = bed.cluster
    bed.process.stop()
    assert not _link_exists(bed.link), "SIGTERM removes the link"
    bed.process = start_loadbalancer(cluster, bed.network, pool=bed.pool, lb_class=TEST_CLASS)
    bed.link = link_name(bed.process.pid)
    cluster.request("POST", SERVICES, _service("leftover", [_port("http", 80)]))
    address = _wait_ingress(cluster, "leftover")
    assert address in _link_addresses(bed.link)
    os.kill(bed.process.pid, signal.SIGKILL)
    bed.process.popen.wait(10)
    bed.process.stop()  # reaps nothing more: only closes its log
    assert _link_exists(bed.link), "a killed load balancer leaves its link"
    assert bed.link in sweep_stale_lb()
    assert not _link_exists(bed.link)
    # A restarted load balancer gives the Service the address its status already shows.
    bed.process = start_loadbalancer(cluster, bed.network, pool=bed.pool, lb_class=TEST_CLASS)
    bed.link = link_name(bed.process.pid)
    wait_until(lambda: address in _link_addresses(bed.link), 30, f"{address} to be bound again")
    assert _ingress(cluster, "leftover") == [{"ip": address, "ipMode": "VIP"}]
    cluster.request("DELETE", f"{SERVICES}/leftover")


def test_forwarding_survives_an_api_server_restart_and_a_compaction_relists(bed: Bed) -> None:
    """With its API server gone the data plane carries on; back after etcd was compacted, the watch's
    resourceVersion is too old (410), and a relist finds the Service created meanwhile."""
    cluster = bed.cluster
    server = cluster.add_apiserver("lb-restart")
    bed.process.stop()
    bed.process = start_loadbalancer(cluster, bed.network, pool=bed.pool, lb_class=TEST_CLASS,
                                     kubeconfig=server.kubeconfig)
    bed.link = link_name(bed.process.pid)
    slice_ = _slice("steady", ["http"], [(b.address, True) for b in bed.backends])
    cluster.request("POST", f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices", slice_)
    cluster.request("POST", SERVICES, _service("steady", [_port("http", 80)]))
    address = _wait_ingress(cluster, "steady")
    wait_until(lambda: _http(address, 80, timeout=1)["pod"] in {b.pod for b in bed.backends}, 30, "steady to serve")

    server.stop()
    assert _http(address, 80)["pod"] in {b.pod for b in bed.backends}, "forwarding needs no API server"
    cluster.request("POST", SERVICES, _service("missed", [_port("http", 80)]))
    cluster.compact_etcd()
    server.start()
    missed = _wait_ingress(cluster, "missed", timeout=60)
    assert missed in bed.pool
    assert missed != address
    assert "relisting" in bed.process.log_path.read_text()
    assert _http(address, 80)["pod"] in {b.pod for b in bed.backends}
    for name in ("steady", "missed"):
        cluster.request("DELETE", f"{SERVICES}/{name}")
    cluster.request("DELETE", f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/steady-1")
