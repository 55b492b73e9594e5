"""The registry of kinds: every kind mcgw reads or writes, declared once.

Each list of kinds elsewhere (what the informers watch, whose status the writers write and how it
merges, what ``/api/status`` lists, what re-evaluates the Gateway layer, which kinds are routes) is
derived from :data:`KINDS`, so a new kind is one entry here plus its model class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mcgw.objects.model import (
    GATEWAY_GROUP,
    MCS_GROUP,
    POLICY_GROUP,
    SUPPORTED_KINDS,
    BackendTLSPolicy,
    ConfigMap,
    Deployment,
    EndpointSlice,
    EnvoyProxy,
    FailoverPolicy,
    Gateway,
    GatewayClass,
    GRPCRoute,
    HorizontalPodAutoscaler,
    HTTPRoute,
    Namespace,
    PodDisruptionBudget,
    ReferenceGrant,
    Secret,
    Service,
    ServiceAccount,
    ServiceExport,
    ServiceImport,
    TCPRoute,
    TLSRoute,
    UDPRoute,
)

TLS_SECRET_TYPE = "kubernetes.io/tls"
# The label provisioning puts on everything it generates (app.kubernetes.io/managed-by: mcgw).
GENERATED_SELECTOR = "app.kubernetes.io/managed-by=mcgw"

# How mcgw's computed status merges into the stored one: conditions only, a Gateway's (conditions,
# listeners, addresses), or a route's (one entry per parentRef of ours, other controllers' entries kept).
# A policy's (one entry per ancestor of ours in ``status.ancestors``, other controllers' entries kept).
StatusMerge = Literal["conditions", "gateway", "route", "ancestors"]
# Who writes a kind's status: the reconcile loop (Gateway API and policies) or the MCS loop (exports).
StatusWriter = Literal["reconciler", "mcs"]

# What the reconcile loop hands the status writers: kind -> "namespace/name" (or "name") -> status.
Statuses = Mapping[str, Mapping[str, dict[str, Any]]]


@dataclass(frozen=True)
class Kind:
    """One kind: where it lives in the API, which of its objects mcgw wants, and what mcgw does with it."""

    name: str
    model: type
    api_version: str  # "v1" for core, else "group/version"
    plural: str
    namespaced: bool = True
    field_selector: str = ""  # only these objects are watched (Secrets: TLS only)
    label_selector: str = ""  # only these objects are watched (generated kinds: ours only)
    provisioned: bool = False  # generated for Gateways; watched only while provisioning is enabled
    status: StatusMerge | None = None  # mcgw writes this kind's status, merged this way
    status_writer: StatusWriter = "reconciler"
    listed: bool = False  # /api/status lists every object of this kind with mcgw's status for it
    gateway_layer: bool = False  # a change re-evaluates Gateways and listeners (then routes, if attachment moved)
    route: bool = False  # a route kind: attaches to Gateways through parentRefs

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def path(self) -> str:
        """The all-namespaces collection path, for lists and watches alike."""
        prefix = "/api" if "/" not in self.api_version else "/apis"
        return f"{prefix}/{self.api_version}/{self.plural}"

    def namespaced_path(self, namespace: str) -> str:
        """The collection path within one namespace."""
        prefix = "/api" if "/" not in self.api_version else "/apis"
        return f"{prefix}/{self.api_version}/namespaces/{namespace}/{self.plural}"


KINDS: tuple[Kind, ...] = (
    Kind("GatewayClass", GatewayClass, f"{GATEWAY_GROUP}/v1", "gatewayclasses", namespaced=False,
         status="conditions", listed=True, gateway_layer=True),
    Kind("Gateway", Gateway, f"{GATEWAY_GROUP}/v1", "gateways", status="gateway", listed=True, gateway_layer=True),
    Kind("HTTPRoute", HTTPRoute, f"{GATEWAY_GROUP}/v1", "httproutes", status="route", listed=True, route=True),
    Kind("GRPCRoute", GRPCRoute, f"{GATEWAY_GROUP}/v1", "grpcroutes", status="route", listed=True, route=True),
    Kind("TLSRoute", TLSRoute, f"{GATEWAY_GROUP}/v1", "tlsroutes", status="route", listed=True, route=True),
    Kind("TCPRoute", TCPRoute, f"{GATEWAY_GROUP}/v1", "tcproutes", status="route", listed=True, route=True),
    Kind("UDPRoute", UDPRoute, f"{GATEWAY_GROUP}/v1", "udproutes", status="route", listed=True, route=True),
    Kind("ReferenceGrant", ReferenceGrant, f"{GATEWAY_GROUP}/v1beta1", "referencegrants", listed=True,
         gateway_layer=True),
    Kind("Namespace", Namespace, "v1", "namespaces", namespaced=False, gateway_layer=True),
    # Only TLS Secrets can be a Gateway's certificateRefs (or hold its frontend CA bundle, under ca.crt);
    # leaving service-account tokens and other secrets on the server keeps them out of mcgw's memory and off
    # the wire.
    Kind("Secret", Secret, "v1", "secrets", field_selector=f"type={TLS_SECRET_TYPE}", gateway_layer=True),
    Kind("Service", Service, "v1", "services"),
    Kind("EndpointSlice", EndpointSlice, "discovery.k8s.io/v1", "endpointslices"),
    Kind("ServiceExport", ServiceExport, f"{MCS_GROUP}/v1beta1", "serviceexports", status="conditions",
         status_writer="mcs", listed=True),
    Kind("ServiceImport", ServiceImport, f"{MCS_GROUP}/v1beta1", "serviceimports", listed=True),
    Kind("FailoverPolicy", FailoverPolicy, f"{POLICY_GROUP}/v1alpha2", "failoverpolicies", status="conditions"),
    # How the Gateway reaches backend Services over TLS; its CA bundles are ConfigMaps (below).
    Kind("BackendTLSPolicy", BackendTLSPolicy, f"{GATEWAY_GROUP}/v1", "backendtlspolicies", status="ancestors",
         listed=True),
    # Every ConfigMap: a BackendTLSPolicy's caCertificateRefs name any ConfigMap of its namespace, a Gateway's
    # frontend validation any ConfigMap a ReferenceGrant opens (no label or field selector can pick them), and
    # the bootstraps provisioning generates are ConfigMaps too (ownership is by label, as for Services). Only
    # the metadata and the ``ca.crt`` key are kept.
    Kind("ConfigMap", ConfigMap, "v1", "configmaps"),
    # Gateway parameters: a change re-evaluates the classes and Gateways naming it (InvalidParameters).
    Kind("EnvoyProxy", EnvoyProxy, f"{POLICY_GROUP}/v1alpha1", "envoyproxies", gateway_layer=True),
    # What provisioning generates for a Gateway's Envoys (Services and ConfigMaps are watched whole above): only objects
    # with our managed-by label, which are the only ones provisioning ever changes or deletes.
    Kind("ServiceAccount", ServiceAccount, "v1", "serviceaccounts", label_selector=GENERATED_SELECTOR,
         provisioned=True),
    Kind("Deployment", Deployment, "apps/v1", "deployments", label_selector=GENERATED_SELECTOR, provisioned=True),
    Kind("HorizontalPodAutoscaler", HorizontalPodAutoscaler, "autoscaling/v2", "horizontalpodautoscalers",
         label_selector=GENERATED_SELECTOR, provisioned=True),
    Kind("PodDisruptionBudget", PodDisruptionBudget, "policy/v1", "poddisruptionbudgets",
         label_selector=GENERATED_SELECTOR, provisioned=True),
)

BY_NAME: Mapping[str, Kind] = {kind.name: kind for kind in KINDS}
ROUTE_KINDS = frozenset(kind.name for kind in KINDS if kind.route)
GATEWAY_LAYER_KINDS = frozenset(kind.name for kind in KINDS if kind.gateway_layer)
LISTED_KINDS = tuple(kind.name for kind in KINDS if kind.listed)
# What provisioning generates, in the order it applies them (a Deployment names its ServiceAccount,
# ConfigMap and xDS credentials Secret); deletions go the other way. The Secret is watched as every TLS
# Secret is (above), not only ours.
GENERATED_KINDS = ("ServiceAccount", "Secret", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                   "PodDisruptionBudget")
# The kinds watched without provisioning.
UNPROVISIONED_KINDS = tuple(kind for kind in KINDS if not kind.provisioned)
# Kinds whose status the reconcile loop writes, in the order they are written.
RECONCILER_STATUS_KINDS = tuple(kind for kind in KINDS if kind.status and kind.status_writer == "reconciler")

assert set(BY_NAME) == set(SUPPORTED_KINDS), "every parsed kind needs exactly one registry entry"
assert all(kind.model.__name__ == kind.name for kind in KINDS)
