"""Multi-Cluster Services (KEP-1645): exports across the ClusterSet → ServiceImports, imported slices, and the
view the failover translation reads. ``exports.compute_mcs`` is the pure core; the MCS loop
(:mod:`mcgw.runtime.mcs_loop`) runs it on every store change and hands the result to per-cluster writers."""

from mcgw.semantics.mcs.exports import (
           DEFAULT_LOST_CLUSTER_TTL,
           ClusterMcs,
           LostCluster,
           McsCache,
           McsResult,
           compute_mcs,
)
from mcgw.semantics.mcs.names import IMPORT_MANAGED_BY, MANAGER, MCS_API_VERSION, SLICE_MANAGED_BY, slice_name
from mcgw.semantics.mcs.view import EMPTY_VIEW, ClusterSetView, ImportedService, ImportPort, SourceEndpoints

__all__ = ["DEFAULT_LOST_CLUSTER_TTL", "EMPTY_VIEW", "IMPORT_MANAGED_BY", "MANAGER", "MCS_API_VERSION",
           "SLICE_MANAGED_BY", "ClusterMcs", "ClusterSetView", "ImportPort", "ImportedService", "LostCluster",
           "McsCache", "McsResult", "SourceEndpoints", "compute_mcs", "slice_name"]
