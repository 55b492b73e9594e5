"""A source cluster's EndpointSlices → its endpoints per import port, and the slices imported elsewhere.

Imported slices mirror the source slices' endpoint conditions (ready, serving, terminating) as they
are, so consumers in the importing cluster see exactly what the source cluster's endpoint controller
decided. ``nodeName`` and ``targetRef`` are not copied: they name a Node and a Pod of another cluster,
and a local object of the same name (every cluster has a ``node-1``) would be taken for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mcgw.objects.model import Endpoint, EndpointSlice, ServicePort
from mcgw.semantics.endpoints import target_port
from mcgw.semantics.mcs.names import MANAGER, SERVICE_NAME, SLICE_MANAGED_BY, SOURCE_CLUSTER, slice_name
from mcgw.semantics.mcs.view import ImportPort

MAX_ENDPOINTS = 1000  # the API's limit per EndpointSlice
_FAMILY_ORDER = {"IPv4": 0, "IPv6": 1}


def is_imported(endpoint_slice: EndpointSlice) -> bool:
    """A slice an MCS controller (mcgw or another) imported: never a source of endpoints."""
    labels = endpoint_slice.metadata.labels
    return labels.get(SLICE_MANAGED_BY) == MANAGER or SOURCE_CLUSTER in labels or SERVICE_NAME in labels


def _endpoint(endpoint: Endpoint) -> dict[str, Any]:
    conditions = {key: value for key, value in (("ready", endpoint.conditions.ready),
                                                ("serving", endpoint.conditions.serving),
                                                ("terminating", endpoint.conditions.terminating))
                  if value is not None}
    data: dict[str, Any] = {"addresses": list(endpoint.addresses), "conditions": conditions}
    if endpoint.hostname:
        data["hostname"] = endpoint.hostname
    if endpoint.zone:
        data["zone"] = endpoint.zone
    return data


def source_slices(namespace: str, service: str, cluster: str, slices: Sequence[EndpointSlice],
                  exposed: Mapping[ImportPort, ServicePort]) -> list[dict[str, Any]]:
    """The EndpointSlices that carry ``cluster``'s endpoints of ``service`` into an importing cluster.

    One slice per source cluster; more only when the source has more than 1,000 endpoints, several
    address types, or endpoints whose target ports differ (one slice can hold one of each).
    Endpoints listed in two source slices (the slice controller moving them) are kept once.
    """
    groups: dict[tuple[str, tuple[tuple[str, int, str, str | None], ...]], list[dict[str, Any]]] = {}
    seen: dict[tuple[str, tuple[tuple[str, int, str, str | None], ...]], set[tuple[str, ...]]] = {}
    for endpoint_slice in sorted(slices, key=lambda s: s.metadata.name):
        targets = []
        for port, own in sorted(exposed.items(), key=lambda item: (item[0].port, item[0].protocol)):
            target = target_port(endpoint_slice, own.name)
            if target is not None:
                targets.append((port.name, target, port.protocol, port.app_protocol))
        if not targets or not endpoint_slice.endpoints:
            continue
        key = (endpoint_slice.address_type, tuple(targets))
        members = groups.setdefault(key, [])
        known = seen.setdefault(key, set())
        for endpoint in endpoint_slice.endpoints:
            if endpoint.addresses not in known:
                known.add(endpoint.addresses)
                members.append(_endpoint(endpoint))
    result = []
    part = 0
    # Ordered by address type and ports only, so a slice keeps its name while its endpoints change.
    for (address_type, ports), members in sorted(
            groups.items(), key=lambda item: (_FAMILY_ORDER.get(item[0][0], 2), item[0][0], item[0][1])):
        port_list = []
        for name, number, protocol, app_protocol in ports:
            entry: dict[str, Any] = {"name": name, "port": number, "protocol": protocol}
            if app_protocol:
                entry["appProtocol"] = app_protocol
            port_list.append(entry)
        for start in range(0, len(members), MAX_ENDPOINTS):
            result.append({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": slice_name(service, cluster, part), "namespace": namespace,
                             "labels": {SERVICE_NAME: service, SOURCE_CLUSTER: cluster, SLICE_MANAGED_BY: MANAGER}},
                "addressType": address_type,
                "ports": port_list,
                "endpoints": members[start:start + MAX_ENDPOINTS],
            })
            part += 1
    return result

