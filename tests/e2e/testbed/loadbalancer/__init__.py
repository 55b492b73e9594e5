"""A LoadBalancer emulation for the test bed's member clusters, in the spirit of cloud-provider-kind.

One process per cluster (``python -m tests.e2e.testbed.loadbalancer``, or ``start_loadbalancer``)
gives each ``type: LoadBalancer`` Service an address from the cluster's pool, binds it on the host,
forwards every Service port to the endpoints of its EndpointSlices (the ready ones; while none is, the
serving terminating ones, as kube-proxy does), and publishes the address
in ``status.loadBalancer.ingress``. ``plan`` decides (pure), ``host``, ``proxy`` and ``controller``
act; docs/testbed.md says how the pools are laid out.
"""

from .host import sweep_stale_lb
from .launch import lb_pool, pool_for, sample_addresses, spare_pool, spare_pool_for, start_loadbalancer
from .plan import LB_CLASS, Pool, parse_pool, usable_samples

__all__ = [
    "LB_CLASS",
    "Pool",
    "lb_pool",
    "parse_pool",
    "pool_for",
    "sample_addresses",
    "spare_pool",
    "spare_pool_for",
    "start_loadbalancer",
    "sweep_stale_lb",
    "usable_samples",
]
