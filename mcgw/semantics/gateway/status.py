"""Computed results rendered in the shape of the objects' ``status`` subresources (minus timestamps,
which the status writer adds when a condition actually changes)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from mcgw.semantics.gateway import CONTROLLER_NAME
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.evaluate import RouteResult
from mcgw.semantics.gateway.listeners import GatewayResult


def conditions_dict(conditions: Sequence[c.Condition]) -> list[dict[str, object]]:
    return [condition.as_dict() for condition in conditions]


def _address(value: str) -> dict[str, str]:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return {"type": "Hostname", "value": value}
    return {"type": "IPAddress", "value": value}


def gateway_status_dict(result: GatewayResult) -> dict[str, Any]:
    return {
        "addresses": [_address(a) for a in result.addresses],
        "conditions": conditions_dict(result.conditions),
        "listeners": [
            {
                "name": listener.name,
                "supportedKinds": [{"group": g, "kind": k} for g, k in listener.supported_kinds],
                "attachedRoutes": listener.attached_routes,
                "conditions": conditions_dict(listener.conditions),
            }
            for listener in result.listeners
        ],
    }


def route_status_dict(result: RouteResult) -> dict[str, Any]:
    parents = []
    for parent, conditions in zip(result.parents, result.parent_conditions, strict=True):
        ref: dict[str, Any] = {"group": parent.ref.group, "kind": parent.ref.kind,
                               "namespace": parent.gateway_namespace, "name": parent.ref.name}
        if parent.ref.section_name is not None:
            ref["sectionName"] = parent.ref.section_name
        if parent.ref.port is not None:
            ref["port"] = parent.ref.port
        parents.append({"parentRef": ref, "controllerName": CONTROLLER_NAME,
                        "conditions": conditions_dict(conditions)})
    return {"parents": parents}
