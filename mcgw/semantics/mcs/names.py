"""Labels and names of the objects the MCS controller owns in each member cluster.

Label values may not contain ``/``, so the manager is named ``mcs-controller.mcgw.io`` (the shape of
Kubernetes' own ``endpointslice-controller.k8s.io``). Ownership is decided by these labels alone:
an object without them was made by someone else and is never changed or deleted.
"""

from __future__ import annotations

import hashlib

from mcgw.objects.model import MCS_GROUP

MANAGER = "mcs-controller.mcgw.io"
# On ServiceImports: which controller owns the object.
IMPORT_MANAGED_BY = "app.kubernetes.io/managed-by"
# On imported EndpointSlices (KEP-1645): not Kubernetes' own slice controller, and not kubernetes.io/service-name,
# so neither kube's controllers nor our own Service endpoint lookup ever read them as a local Service's.
SLICE_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SERVICE_NAME = "multicluster.kubernetes.io/service-name"
SOURCE_CLUSTER = "multicluster.kubernetes.io/source-cluster"
LOCAL_SERVICE_NAME = "kubernetes.io/service-name"
MCS_API_VERSION = f"{MCS_GROUP}/v1beta1"

MAX_NAME = 63


def slice_name(service: str, cluster: str, part: int = 0) -> str:
    """``<service>.<cluster>`` (``.<part>`` for extra slices): stable, unambiguous (service names and cluster
    IDs have no dots), and never one of the ``<service>-<random>`` names Kubernetes gives a Service's own
    slices. Longer than 63 characters, it is cut and ends with a hash of the full name instead."""
    full = f"{service}.{cluster}" + (f".{part}" if part else "")
    if len(full) <= MAX_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:10]
    return f"{full[:MAX_NAME - len(digest) - 1].rstrip('.-')}-{digest}"
