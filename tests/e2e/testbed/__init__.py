"""The real multi-cluster test bed: kube-apiserver and etcd built from Go modules, upstream CRDs,
network namespaces with pod addresses, a pod runner per cluster, echo backends and real Envoy gateways.

Shared by ``tests/e2e`` and ``benchmarks/``. The names below load on first use, so a process that needs
one module only (the pod runner) does not import the whole test bed and mcgw with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .build import Artifacts, cached_artifacts, ensure_artifacts
    from .clusterset import ClusterSet, EchoBackend, start_clusterset
    from .network import can_create_namespaces

_EXPORTS = {
    "Artifacts": "build",
    "cached_artifacts": "build",
    "ensure_artifacts": "build",
    "ClusterSet": "clusterset",
    "EchoBackend": "clusterset",
    "start_clusterset": "clusterset",
    "can_create_namespaces": "network",
}

__all__ = [
    "Artifacts",
    "ClusterSet",
    "EchoBackend",
    "cached_artifacts",
    "can_create_namespaces",
    "ensure_artifacts",
    "start_clusterset",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
