"""The data-plane network: one network namespace per member cluster, joined by a bridge on the host.

The API server refuses loopback EndpointSlice addresses, so "pods" need real addresses. Each run takes
a free /20 of the benchmarking range 198.18.0.0/15; the host holds the first address of it on the
bridge, and cluster ``i`` takes its pod addresses from the ``i+1``-th /24. Names carry the owning
PID, so a later run can sweep what a killed run left behind without touching a live one.
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

BENCHMARK_RANGE = ipaddress.ip_network("198.18.0.0/15")
_BLOCK_PREFIX = 20
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
                used.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return used


def _free_block() -> ipaddress.IPv4Network:
    used = _used_networks()
    for block in BENCHMARK_RANGE.subnets(new_prefix=_BLOCK_PREFIX):
        if not any(block.overlaps(net) for net in used):
            return block  # type: ignore[return-value]
    raise RuntimeError("no free /20 left in 198.18.0.0/15 for the test network")


@dataclass
class ClusterNetwork:
    """One cluster's namespace and the pod addresses handed out in it."""

    cluster: str
    netns: str
    subnet: ipaddress.IPv4Network
    prefixlen: int
    pods: list[str] = field(default_factory=list)

    def add_pod_address(self) -> str:
        """Give the namespace one more address, as if one more pod were scheduled there."""
        address = str(self.subnet.network_address + 10 + len(self.pods))
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
        sweep_stale()
        self.owner = os.getpid()
        # Interface names are limited to 15 characters: "mgb" + pid in hex + "n" + instance number.
        self.tag = f"{self.owner:x}n{next(_instances)}"
        self.block = _free_block()
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
                self.clusters[name] = self._add_cluster(index, name, subnets[index + 1])  # type: ignore[arg-type]
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
        return ClusterNetwork(name, netns, subnet, _BLOCK_PREFIX)

    def close(self) -> None:
        for netns in self._created_netns:
            _ip("netns", "delete", netns, check=False)
        self._created_netns.clear()
        with contextlib.suppress(RuntimeError):
            _ip("link", "delete", self.bridge, check=False)


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
