"""Multi-Cluster Services (KEP-1645): exports across the ClusterSet → ServiceImports, imported slices, and the
view the failover translation reads. ``exports.compute_mcs`` is the pure core; ``controller.McsController``
runs it on every store change and hands the result to per-cluster writers."""

from mcgw.semantics.mcs.exports import (
           DEFAULT_LOST_CLUSTER_TTL,
           ClusterMcs,
           LostCluster,
           McsCache,
           McsResult,
           compute_mcs,
)
from mcgw.semantics.mcs.view import EMPTY_VIEW, ClusterSetView, ImportedService, ImportPort, SourceEndpoints

__all__ = ["DEFAULT_LOST_CLUSTER_TTL", "EMPTY_VIEW", "ClusterMcs", "ClusterSetView", "ImportPort", "ImportedService",
           "LostCluster", "McsCache", "McsResult", "SourceEndpoints", "compute_mcs"]
