"""List every object the semantics read from one member cluster, as typed model objects.

A one-shot list (the informer with watches, bookmarks and relists comes with the runtime). Objects
that do not parse are reported, not dropped silently: the caller decides whether to go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from kubernetes.aio import client

from mcgw.model import GATEWAY_GROUP, MCS_GROUP, AnyObject, ManifestError, parse_object

from .retry import with_retries

# (group, version, plural, kind) of the custom resources mcgw reads.
CUSTOM_KINDS = (
    (GATEWAY_GROUP, "v1", "gatewayclasses", "GatewayClass"),
    (GATEWAY_GROUP, "v1", "gateways", "Gateway"),
    (GATEWAY_GROUP, "v1", "httproutes", "HTTPRoute"),
    (GATEWAY_GROUP, "v1beta1", "referencegrants", "ReferenceGrant"),
    (MCS_GROUP, "v1beta1", "serviceimports", "ServiceImport"),
)


@dataclass
class Listing:
    objects: list[AnyObject] = field(default_factory=list)
    errors: list[ManifestError] = field(default_factory=list)

    def add(self, data: dict[str, Any], source: str) -> None:
        try:
            self.objects.append(parse_object(data, source))
        except ManifestError as error:
            self.errors.append(error)


async def list_cluster(api: client.ApiClient, cluster: str) -> Listing:
    listing = Listing()
    custom = client.CustomObjectsApi(api)
    for group, version, plural, kind in CUSTOM_KINDS:
        result = cast(dict[str, Any], await with_retries(
            partial(custom.list_cluster_custom_object, group, version, plural), f"list {plural}"))
        for item in result.get("items", []):
            listing.add({**item, "kind": kind}, f"cluster {cluster} {kind}")
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    typed: tuple[tuple[str, str, Any], ...] = (
        ("Namespace", "v1", await with_retries(core.list_namespace, "list namespaces")),
        ("Service", "v1", await with_retries(core.list_service_for_all_namespaces, "list services")),
        ("Secret", "v1", await with_retries(core.list_secret_for_all_namespaces, "list secrets")),
        ("EndpointSlice", "discovery.k8s.io/v1",
         await with_retries(discovery.list_endpoint_slice_for_all_namespaces, "list endpointslices")),
    )
    for kind, api_version, typed_list in typed:
        for item in typed_list.items:
            data = cast(dict[str, Any], api.sanitize_for_serialization(item))  # type: ignore[no-untyped-call]
            listing.add({**data, "kind": kind, "apiVersion": api_version}, f"cluster {cluster} {kind}")
    return listing
