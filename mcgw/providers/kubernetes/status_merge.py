"""Merging computed status into what is stored, without losing what is not ours.

- A condition keeps its ``lastTransitionTime`` unless its status changes.
- Condition types we do not set are kept as they are.
- HTTPRoute ``status.parents`` entries of other controllers are kept.
Pure functions: the status writer reads, merges, and writes only when something changed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from mcgw.objects.kinds import StatusMerge
from mcgw.semantics.gateway import CONTROLLER_NAME

# (stored status, our status, now) -> the status to store
Merge = Callable[[dict[str, Any], dict[str, Any], str], dict[str, Any]]


def merge_conditions(stored: list[dict[str, Any]], ours: list[dict[str, Any]], now: str) -> list[dict[str, Any]]:
    by_type = {c.get("type"): c for c in stored}
    merged = []
    for condition in ours:
        previous = by_type.get(condition["type"])
        transition = previous.get("lastTransitionTime") if previous and previous.get("status") == condition[
            "status"] else None
        merged.append({**condition, "lastTransitionTime": transition or now})
    ours_types = {c["type"] for c in ours}
    merged += [c for c in stored if c.get("type") not in ours_types]
    return merged


def merge_condition_status(stored: dict[str, Any], ours: dict[str, Any], now: str) -> dict[str, Any]:
    """A status of conditions (FailoverPolicy; a GatewayClass's also has supportedFeatures): the other fields we
    set replace the stored ones, fields we do not set are kept."""
    return {**stored, **{key: value for key, value in ours.items() if key != "conditions"},
            "conditions": merge_conditions(stored.get("conditions", []), ours["conditions"], now)}


def merge_gateway_status(stored: dict[str, Any], ours: dict[str, Any], now: str) -> dict[str, Any]:
    merged = copy.deepcopy(stored)
    merged["conditions"] = merge_conditions(stored.get("conditions", []), ours["conditions"], now)
    merged["addresses"] = ours["addresses"]
    stored_listeners = {listener.get("name"): listener for listener in stored.get("listeners", [])}
    merged["listeners"] = [
        {**listener, "conditions": merge_conditions(stored_listeners.get(listener["name"], {}).get("conditions", []),
                                                    listener["conditions"], now)}
        for listener in ours["listeners"]
    ]
    return merged


def _parent_key(parent: dict[str, Any]) -> tuple[object, ...]:
    ref = parent.get("parentRef", {})
    return (ref.get("group", "gateway.networking.k8s.io"), ref.get("kind", "Gateway"), ref.get("namespace"),
            ref.get("name"), ref.get("sectionName"), ref.get("port"))


def merge_route_status(stored: dict[str, Any], ours: dict[str, Any], now: str) -> dict[str, Any]:
    merged = copy.deepcopy(stored)
    previous = {_parent_key(p): p for p in stored.get("parents", []) if p.get("controllerName") == CONTROLLER_NAME}
    parents = [p for p in stored.get("parents", []) if p.get("controllerName") != CONTROLLER_NAME]
    for parent in ours["parents"]:
        before = previous.get(_parent_key(parent), {})
        parents.append({**parent, "conditions": merge_conditions(before.get("conditions", []), parent["conditions"],
                                                                 now)})
    merged["parents"] = parents[:32]  # the API allows at most 32 parents
    return merged


# How each ``Kind.status`` merges.
MERGES: Mapping[StatusMerge, Merge] = {"conditions": merge_condition_status, "gateway": merge_gateway_status,
                                       "route": merge_route_status}


def stored_generation_is_newer(stored: dict[str, Any], ours_generation: int) -> bool:
    """Skip writing when the stored status already describes a newer generation than ours."""
    generations = [c.get("observedGeneration", 0) for c in stored.get("conditions", [])]
    generations += [c.get("observedGeneration", 0) for p in stored.get("parents", []) for c in p.get("conditions", [])]
    return bool(generations) and max(generations) > ours_generation
