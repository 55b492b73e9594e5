"""Backend IR → Envoy ``Cluster`` (EDS over ADS) and its ``ClusterLoadAssignment``.

A locality per source cluster, with its failover ``priority``; localities without endpoints are
left out. A cluster with no endpoints at all is valid and answers 503.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from mcgw import ir

from .listeners import ADS

_CONNECT_TIMEOUT = {"seconds": 5}


def cluster(backend: ir.BackendIR) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(name=backend.name, type=cluster_pb2.Cluster.EDS, connect_timeout=_CONNECT_TIMEOUT,
                               eds_cluster_config={"eds_config": ADS})


def load_assignment(backend: ir.BackendIR) -> endpoint_pb2.ClusterLoadAssignment:
    localities = [{
        "locality": {"region": loc.region, "zone": loc.zone, "sub_zone": loc.cluster},
        "priority": loc.priority,
        "lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": e.address, "port_value": e.port}}},
                          "health_status": e.health} for e in loc.endpoints],
    } for loc in backend.localities if loc.endpoints]
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=backend.name, endpoints=localities)
