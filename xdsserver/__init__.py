"""An Envoy xDS control-plane server: ADS (state of the world and delta) over grpc.aio, serving
immutable, consistency-checked snapshots per node group, and the Load Reporting Service (LRS) that hands
Envoy's per-cluster, per-locality load reports to its owner as plain data.

It knows the xDS protocol and nothing of mcgw, so it can be used on its own. The import name is
``xdsserver`` because xds-protos already owns the ``xds`` package (the CNCF xds protos that every
Envoy proto imports); a package of ours called ``xds`` would shadow them.
"""

from . import wire
from .admission import Admission, NodeGrouper
from .auth import RotatingTls, ServerCertificate, ServerTls, TlsConfig, spiffe_authorizer, spiffe_id
from .cache import InconsistentSnapshotError, NodeGroup, Snapshot, SnapshotCache
from .limits import XdsLimits
from .loader import message_from_dict
from .lrs import (
    ClusterLoad,
    ClusterNames,
    LoadReport,
    LoadReporting,
    LoadReportingService,
    LoadReportSink,
    LocalityLoad,
)
from .metrics import XdsMetrics, short_type, type_label
from .resources import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE, SECRET, Resource
from .server import AggregatedDiscoveryService, XdsServer, default_node_group
from .status import NodeRejections, NodeStatus, Rejection, StatusRegistry, TypeStatus, excerpt

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "PUSH_ORDER",
    "ROUTE",
    "SECRET",
    "Admission",
    "AggregatedDiscoveryService",
    "ClusterLoad",
    "ClusterNames",
    "InconsistentSnapshotError",
    "LoadReport",
    "LoadReportSink",
    "LoadReporting",
    "LoadReportingService",
    "LocalityLoad",
    "NodeGroup",
    "NodeGrouper",
    "NodeRejections",
    "NodeStatus",
    "Rejection",
    "Resource",
    "RotatingTls",
    "ServerCertificate",
    "ServerTls",
    "Snapshot",
    "SnapshotCache",
    "StatusRegistry",
    "TlsConfig",
    "TypeStatus",
    "XdsLimits",
    "XdsMetrics",
    "XdsServer",
    "default_node_group",
    "excerpt",
    "message_from_dict",
    "short_type",
    "spiffe_authorizer",
    "spiffe_id",
    "type_label",
    "wire",
]
