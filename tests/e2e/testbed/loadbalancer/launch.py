"""Where each cluster's load-balancer pool lies in the test network, and starting the load balancer.

The pools are the last /24 of the run's /20, split into the smallest power of two of equal shares
that is more than the run's clusters: cluster ``i`` has share ``i`` (a /26 each for three clusters,
a /28 each at the network's limit of 14), and the last share is nobody's, for a load balancer a test
starts beside the ClusterSet's with a class of its own (``spare_pool``). Pods take the /24s right after the host's
(cluster ``i`` the ``i+1``-th) and at most 14 clusters exist, so that /24 is never a pod's: Service
addresses cannot collide with pod addresses however many pods a cluster runs, and an address tells
by its third octet alone that it is a load-balancer address. It stays inside the bridge's on-link /20,
so every cluster namespace reaches every cluster's Service addresses without a route.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..processes import ManagedProcess, wait_until
from .host import sweep_stale_lb
from .plan import LB_CLASS, Pool, usable_samples

if TYPE_CHECKING:  # the load-balancer process itself needs neither
    from ..cluster import MemberCluster
    from ..network import TestNetwork

REPO = Path(__file__).resolve().parents[4]


def _share(block: ipaddress.IPv4Network, clusters: int, index: int) -> Pool:
    subnets = list(block.subnets(new_prefix=24))
    if clusters + 1 >= len(subnets):
        raise ValueError(f"{clusters} clusters leave no /24 of {block} free for load-balancer addresses")
    share = list(subnets[-1].subnets(prefixlen_diff=clusters.bit_length()))[index]
    last = share.broadcast_address
    if last == block.broadcast_address:  # the bridge's broadcast address is nobody's
        last -= 1
    return Pool(share.network_address, last)


def pool_for(block: ipaddress.IPv4Network, clusters: list[str], cluster: str) -> Pool:
    """``cluster``'s share of the last /24 of ``block``."""
    return _share(block, len(clusters), clusters.index(cluster))


def spare_pool_for(block: ipaddress.IPv4Network, clusters: list[str]) -> Pool:
    """The last share of the last /24 of ``block``, which no cluster has."""
    return _share(block, len(clusters), -1)


def lb_pool(network: TestNetwork, cluster: str) -> Pool:
    """The pool of ``cluster`` in ``network`` (what ``--pool`` gets from ``start_loadbalancer``)."""
    return pool_for(network.block, list(network.clusters), cluster)


def spare_pool(network: TestNetwork) -> Pool:
    """The pool no cluster has, for an extra load balancer (with a class of its own) that a test starts."""
    return spare_pool_for(network.block, list(network.clusters))


def sample_addresses(network: TestNetwork, cluster: str, count: int = 1) -> tuple[list[str], list[str]]:
    """(usable, unusable) addresses for the conformance suite's ``--usable-address`` and ``--unusable-address``.

    Usable: the top of the cluster's pool, which dynamic allocation reaches last. Unusable: the top of
    the host's /24, which holds nothing but the host's own address and is in no pool.
    """
    host_subnet = next(network.block.subnets(new_prefix=24))
    unusable = [str(host_subnet.broadcast_address - 1 - i) for i in range(count)]
    return usable_samples(lb_pool(network, cluster), count), unusable


def start_loadbalancer(cluster: MemberCluster, network: TestNetwork, *, pool: Pool | None = None,
                       lb_class: str = LB_CLASS, kubeconfig: Path | None = None,
                       timeout: float = 30.0) -> ManagedProcess:
    """Start the load balancer of ``cluster`` and wait until it has listed and reconciled once.

    ``pool`` defaults to the cluster's (``lb_pool``), ``kubeconfig`` to the cluster's own (another one
    points it at an extra API server of the cluster). Each start logs to
    ``<cluster workdir>/loadbalancer/loadbalancer-<n>.log``. Stop it with ``.stop()`` (SIGTERM: it
    removes its addresses); a killed one's are swept by ``sweep_stale_lb``, which runs here first.
    """
    sweep_stale_lb()
    pool = pool or lb_pool(network, cluster.name)
    workdir = cluster.workdir / "loadbalancer"
    workdir.mkdir(parents=True, exist_ok=True)
    start = len(list(workdir.glob("loadbalancer-*.log")))
    ready, log_path = workdir / f"ready-{start}", workdir / f"loadbalancer-{start}.log"
    ready.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tests.e2e.testbed.loadbalancer",
            "--kubeconfig", str(kubeconfig or cluster.kubeconfig),
            "--context", cluster.name, "--cluster", cluster.name, "--pool", str(pool), "--bridge", network.bridge,
            "--class", lb_class, "--ready-file", str(ready)]
    process = ManagedProcess(f"loadbalancer[{cluster.name}]", argv, log_path, cwd=REPO)
    try:
        wait_until(ready.exists, timeout, f"the load balancer of {cluster.name} to be ready", process)
    except BaseException:
        process.stop()
        raise
    return process
