"""Where each cluster's load-balancer pool lies in the test network, and starting the load balancer.

The pools are the last /24 of the run's /20, split evenly between the run's clusters (a /26 each for
three clusters, a /28 each at the network's limit of 14). Pods take the /24s right after the host's
(cluster ``i`` the ``i+1``-th) and at most 14 clusters exist, so that /24 is never a pod's: Service
addresses cannot collide with pod addresses however many pods a cluster runs, and an address tells
by its third octet alone that it is a load-balancer address. It stays inside the bridge's on-link /20,
so every cluster namespace reaches every cluster's Service addresses without a route.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

from ..cluster import MemberCluster
from ..network import TestNetwork
from ..processes import ManagedProcess, wait_until
from .host import sweep_stale_lb
from .plan import LB_CLASS, Pool, usable_samples

REPO = Path(__file__).resolve().parents[4]


def pool_for(block: ipaddress.IPv4Network, clusters: list[str], cluster: str) -> Pool:
    """``cluster``'s share of the last /24 of ``block``; the block's broadcast address is left out."""
    subnets = list(block.subnets(new_prefix=24))
    if len(clusters) + 1 >= len(subnets):
        raise ValueError(f"{len(clusters)} clusters leave no /24 of {block} free for load-balancer addresses")
    index = clusters.index(cluster)
    bits = (len(clusters) - 1).bit_length()
    share = list(subnets[-1].subnets(prefixlen_diff=bits))[index]
    last = share.broadcast_address
    if last == block.broadcast_address:
        last -= 1
    return Pool(share.network_address, last)


def lb_pool(network: TestNetwork, cluster: str) -> Pool:
    """The pool of ``cluster`` in ``network`` (what ``--pool`` gets from ``start_loadbalancer``)."""
    return pool_for(network.block, list(network.clusters), cluster)


def sample_addresses(network: TestNetwork, cluster: str, count: int = 1) -> tuple[list[str], list[str]]:
    """(usable, unusable) addresses for the conformance suite's ``--usable-address`` and ``--unusable-address``.

    Usable: the top of the cluster's pool, which dynamic allocation reaches last. Unusable: the top of
    the host's /24, which holds nothing but the host's own address and is in no pool.
    """
    host_subnet = next(network.block.subnets(new_prefix=24))
    unusable = [str(host_subnet.broadcast_address - 1 - i) for i in range(count)]
    return usable_samples(lb_pool(network, cluster), count), unusable


def start_loadbalancer(cluster: MemberCluster, network: TestNetwork, *, pool: Pool | None = None,
                       lb_class: str = LB_CLASS, timeout: float = 30.0) -> ManagedProcess:
    """Start the load balancer of ``cluster`` and wait until it has listed and reconciled once.

    Its log is ``<cluster workdir>/loadbalancer/loadbalancer.log``. Stop it with ``.stop()`` (SIGTERM:
    it removes its addresses); a killed one's addresses are swept by ``sweep_stale_lb``, which runs here first.
    """
    sweep_stale_lb()
    pool = pool or lb_pool(network, cluster.name)
    workdir = cluster.workdir / "loadbalancer"
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "ready"
    ready.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tests.e2e.testbed.loadbalancer", "--kubeconfig", str(cluster.kubeconfig),
            "--context", cluster.name, "--cluster", cluster.name, "--pool", str(pool), "--bridge", network.bridge,
            "--class", lb_class, "--ready-file", str(ready)]
    process = ManagedProcess(f"loadbalancer[{cluster.name}]", argv, workdir / "loadbalancer.log", cwd=REPO)
    try:
        wait_until(ready.exists, timeout, f"the load balancer of {cluster.name} to be ready", process)
    except BaseException:
        process.stop()
        raise
    return process
