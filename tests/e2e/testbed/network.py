"""The data-plane network: one network namespace per member cluster, joined by a bridge on the host.

The API server refuses loopback EndpointSlice addresses, so "pods" need real addresses. Each run takes
a free /20 of the benchmarking range 198.18.0.0/15; the host holds the first address of it on the
bridge, and cluster ``i`` takes its pod addresses from the ``i+1``-th /24. Names carry the owning
PID, so a later run can sweep what a killed run left behind without touching a live one.

A pod runner (``tests/e2e/testbed/podrunner``) gives each of its pods a network namespace of its own
on the same bridge, with addresses from the upper half of the cluster's /24 (``pod_pool``); the lower
half stays with ``add_pod_address``. Those namespaces carry the runner's PID, so the same sweep removes
them once the runner is gone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import re
import subprocess
from dataclasses import dataclass, field

BENCHMARK_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
_BLOCK_PREFIX = 20
# Within a cluster's /24: .10-.127 for add_pod_address, .128-.254 for the pod runner's pods.
_SHARED_FIRST, _POOL_FIRST, _POOL_LAST = 10, 128, 254
_NS_PATTERN = re.compile(r"^mcgw-t(\d+)-")
_BRIDGE_PATTERN = re.compile(r"^mgb([0-9a-f]+)n\d+$")
_instances = itertools.count()


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    argv = ["ip", "-netns", netns, *args] if netns else ["ip", *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Remove namespaces and bridges whose owning test process is gone; returns what was removed."""
    removed = []
    for line in _ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.strip() else ""
        match = _NS_PATTERN.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _ip("netns", "delete", name, check=False)
            removed.append(name)
    for link in json.loads(_ip("-json", "link", "show", "type", "bridge", check=False) or "[]"):
        match = _BRIDGE_PATTERN.match(link.get("ifname", ""))
        if match and not _pid_alive(int(match.group(1), 16)):
            _ip("link", "delete", link["ifname"], check=False)
            removed.append(link["ifname"])
    return removed


def _used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    for link in json.loads(_ip("-json", "addr", "show") or "[]"):
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet":
                used.append(ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return used


def _free_block() -> ipaddress.IPv4Network:
    used = _used_networks()
    for block in BENCHMARK_RANGE.subnets(new_prefix=_BLOCK_PREFIX):
        if not any(block.overlaps(net) for net in used):
            return block
    raise RuntimeError("no free /20 left in 198.18.0.0/15 for the test network")


@dataclass
class ClusterNetwork:
    """One cluster's namespace and the pod addresses handed out in it."""

    cluster: str
    netns: str
    subnet: ipaddress.IPv4Network
    prefixlen: int
    pods: list[str] = field(default_factory=list)
    bridge: str = ""
    host_address: str = ""

    @property
    def pod_pool(self) -> tuple[str, str]:
        """First and last address a pod runner may give its pods; disjoint from ``add_pod_address``."""
        base = self.subnet.network_address
        return str(base + _POOL_FIRST), str(base + _POOL_LAST)

    def add_pod_address(self) -> str:
        """Give the namespace one more address, as if one more pod were scheduled there."""
        if _SHARED_FIRST + len(self.pods) >= _POOL_FIRST:
            raise RuntimeError(f"cluster {self.cluster}: no pod address left below the pod runner's pool")
        address = str(self.subnet.network_address + _SHARED_FIRST + len(self.pods))
        _ip("addr", "add", f"{address}/{self.prefixlen}", "dev", "eth0", netns=self.netns)
        self.pods.append(address)
        return address

    def exec_argv(self, argv: list[str]) -> list[str]:
        """Wrap ``argv`` so it runs inside this cluster's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]


class TestNetwork:
    """The bridge and every cluster namespace of one test run; ``close`` removes all of them."""

    __test__ = False  # not a pytest test class

    def __init__(self, cluster_names: list[str]) -> None:
        if len(cluster_names) > 14:
            raise ValueError("the test network supports at most 14 clusters per run")
        from .loadbalancer.host import sweep_stale_lb  # local: the load balancer's package imports this module

        sweep_stale()
        sweep_stale_lb()  # a killed run's load-balancer addresses would make its /20 look taken
        self.owner = os.getpid()
        # Interface names are limited to 15 characters: "mgb" + pid in hex + "n" + instance number.
        self.tag = f"{self.owner:x}n{next(_instances)}"
        self.block: ipaddress.IPv4Network = _free_block()
        self.host_address = str(self.block.network_address + 1)
        self.bridge = f"mgb{self.tag}"
        self.clusters: dict[str, ClusterNetwork] = {}
        self._created_netns: list[str] = []
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.host_address}/{_BLOCK_PREFIX}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            subnets = list(self.block.subnets(new_prefix=24))
            for index, name in enumerate(cluster_names):
                self.clusters[name] = self._add_cluster(index, name, subnets[index + 1])
        except BaseException:
            self.close()
            raise

    def _add_cluster(self, index: int, name: str, subnet: ipaddress.IPv4Network) -> ClusterNetwork:
        netns = f"mcgw-t{self.owner}-{self.tag}-{name}"
        _ip("netns", "add", netns)
        self._created_netns.append(netns)
        host_end, ns_end = f"mgh{self.tag}x{index}", f"mgp{self.tag}x{index}"
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", netns)
        _ip("link", "set", host_end, "master", self.bridge)
        _ip("link", "set", host_end, "up")
        _ip("link", "set", "lo", "up", netns=netns)
        _ip("link", "set", ns_end, "name", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        return ClusterNetwork(name, netns, subnet, _BLOCK_PREFIX, bridge=self.bridge, host_address=self.host_address)

    def close(self) -> None:
        for netns in self._created_netns:
            _ip("netns", "delete", netns, check=False)
        self._created_netns.clear()
        with contextlib.suppress(RuntimeError):
            _ip("link", "delete", self.bridge, check=False)


def pod_netns_name(owner: int, cluster: str, namespace: str, pod: str, uid: str) -> str:
    """A pod's namespace name: the owner's PID first, so ``sweep_stale`` finds it once the owner is gone."""
    return f"mcgw-t{owner}-{cluster}-{namespace[:30]}-{pod[:60]}-{uid[:8]}"


def host_veth_name(address: str) -> str:
    """The bridge side of a pod's veth: named by the pod address, which is unique on the host while it lives.

    Interface names have 15 characters at most; the offset into 198.18.0.0/15 fits in 5 hex digits.
    """
    offset = int(ipaddress.ip_address(address)) - int(BENCHMARK_RANGE.network_address)
    if not 0 <= offset < BENCHMARK_RANGE.num_addresses:
        raise ValueError(f"{address} is outside {BENCHMARK_RANGE}")
    return f"mgv{offset:05x}"


def create_pod_netns(netns: str, bridge: str, address: str, prefixlen: int) -> None:
    """A namespace with loopback up and ``eth0`` holding ``address``, its veth peer on ``bridge``.

    No default route: pods reach the bridge's block (every cluster of the run and the host) and nothing else.
    """
    host_end = host_veth_name(address)
    _ip("netns", "add", netns)
    try:
        _ip("link", "delete", host_end, check=False)  # a leftover of a pod whose namespace outlived it
        _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", host_end, "master", bridge, "up")
        _ip("link", "set", "lo", "up", netns=netns)
        _ip("addr", "add", f"{address}/{prefixlen}", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
    except BaseException:
        delete_pod_netns(netns, address)
        raise


def delete_pod_netns(netns: str, address: str | None = None) -> None:
    """Remove a pod's namespace; its veth pair goes with it (also its bridge end, if ``address`` is given)."""
    _ip("netns", "delete", netns, check=False)
    if address is not None:
        _ip("link", "delete", host_veth_name(address), check=False)


def netns_exists(netns: str) -> bool:
    return os.path.exists(f"/run/netns/{netns}")


def can_create_namespaces() -> tuple[bool, str]:
    """Whether this process may build the test network, and if not, why."""
    if os.geteuid() != 0:
        return False, "the e2e tier needs root to create network namespaces (ip netns); run as root or in CI"
    probe = f"mcgw-t{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, FileNotFoundError) as error:
        return False, f"cannot create a network namespace: {error}"
    _ip("netns", "delete", probe, check=False)
    return True, ""
