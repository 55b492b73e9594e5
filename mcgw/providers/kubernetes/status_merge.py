"""Merging computed status into what is stored, without losing what is not ours.

- A condition keeps its ``lastTransitionTime`` unless its status changes.
- Condition types we do not set are kept as they are, except the Gateway conditions mcgw sets only while
  they hold (``REMOVED_WHEN_ABSENT``), which go when mcgw no longer computes them.
- HTTPRoute ``status.parents`` and policy ``status.ancestors`` entries of other controllers are kept.
Pure functions: the status writer reads, merges, and writes only when something changed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from mcgw.objects.kinds import StatusMerge
from mcgw.semantics.gateway import CONTROLLER_NAME
from mcgw.semantics.gateway.conditions import REMOVED_WHEN_ABSENT

# (stored status, our status, now) -> the status to store
Merge = Callable[[dict[str, Any], dict[str, Any], str], dict[str, Any]]


def merge_conditions(stored: list[dict[str, Any]], ours: list[dict[str, Any]], now: str,
                     removed_when_absent: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    by_type = {c.get("type"): c for c in stored}
    merged = []
    for condition in ours:
        previous = by_type.get(condition["type"])
        transition = previous.get("lastTransitionTime") if previous and previous.get("status") == condition[
            "status"] else None
        merged.append({**condition, "lastTransitionTime": transition or now})
    ours_types = {c["type"] for c in ours}
    merged += [c for c in stored if c.get("type") not in ours_types and c.get("type") not in removed_when_absent]
    return merged


def merge_condition_status(stored: dict[str, Any], ours: dict[str, Any], now: str) -> dict[str, Any]:
    """A status of conditions (FailoverPolicy; a GatewayClass's also has supportedFeatures): the other fields we
    set replace the stored ones, fields we do not set are kept."""
    return {**stored, **{key: value for key, value in ours.items() if key != "conditions"},
            "conditions": merge_conditions(stored.get("conditions", []), ours["conditions"], now)}


def merge_gateway_status(stored: dict[str, Any], ours: dict[str, Any], now: str) -> dict[str, Any]:
    merged = copy.deepcopy(stored)
    merged["conditions"] = merge_conditions(stored.get("conditions", []), ours["conditions"], now, REMOVED_WHEN_ABSENT)
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


def _ancestor_key(ancestor: dict[str, Any]) -> tuple[object, ...]:
    ref = ancestor.get("ancestorRef", {})
    return (ref.get("group", "gateway.networking.k8s.io"), ref.get("kind", "Gateway"), ref.get("namespace"),
            ref.get("name"), ref.get("sectionName"), ref.get("port"))


def merge_ancestor_status(stored: dict[str, Any], ours: dict[str, Any], now: str) -> dict[str, Any]:
    """A policy's ``status.ancestors`` (GEP-713): ours replace our previous entries, others' are kept."""
    merged = copy.deepcopy(stored)
    previous = {_ancestor_key(a): a for a in stored.get("ancestors", [])
                if a.get("controllerName") == CONTROLLER_NAME}
    ancestors = [a for a in stored.get("ancestors", []) if a.get("controllerName") != CONTROLLER_NAME]
    for ancestor in ours["ancestors"]:
        before = previous.get(_ancestor_key(ancestor), {})
        ancestors.append({**ancestor, "conditions": merge_conditions(before.get("conditions", []),
                                                                     ancestor["conditions"], now)})
    merged["ancestors"] = ancestors[:16]  # the API allows at most 16 ancestors
    return merged


# How each ``Kind.status`` merges.
MERGES: Mapping[StatusMerge, Merge] = {"conditions": merge_condition_status, "gateway": merge_gateway_status,
                                       "route": merge_route_status, "ancestors": merge_ancestor_status}


def stored_generation_is_newer(stored: dict[str, Any], ours_generation: int) -> bool:
    """Skip writing when the stored status already describes a newer generation than ours. A status of ours
    without conditions (a policy no Gateway uses: no ancestors) says no generation, and is always written."""
    if not ours_generation:
        return False
    generations = [c.get("observedGeneration", 0) for c in stored.get("conditions", [])]
    generations += [c.get("observedGeneration", 0) for p in stored.get("parents", []) for c in p.get("conditions", [])]
    generations += [c.get("observedGeneration", 0) for a in stored.get("ancestors", [])
                    if a.get("controllerName") == CONTROLLER_NAME for c in a.get("conditions", [])]
    return bool(generations) and max(generations) > ours_generation
