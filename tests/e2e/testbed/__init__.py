"""The real multi-cluster test bed: kube-apiserver and etcd built from Go modules, upstream CRDs,
network namespaces with pod addresses, echo backends and real Envoy gateways.

Shared by ``tests/e2e`` and ``benchmarks/``.
"""

from .build import Artifacts, cached_artifacts, ensure_artifacts
from .clusterset import ClusterSet, EchoBackend, start_clusterset
from .network import can_create_namespaces

__all__ = [
    "Artifacts",
    "ClusterSet",
    "EchoBackend",
    "cached_artifacts",
    "can_create_namespaces",
    "ensure_artifacts",
    "start_clusterset",
]
