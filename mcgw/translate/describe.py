"""What a ServiceImport backend's ClusterLoadAssignment tells Envoy, in terms a person checks a policy by: the
levels in priority order, the clusters (and zones) sharing each with their weights, shares and endpoints, and
how a level spills."""

from __future__ import annotations

from typing import Any

from envoy.config.endpoint.v3 import endpoint_pb2

from mcgw.translate.clusters import ALL_OR_NOTHING_OVERPROVISIONING

_HEALTHY, _DRAINING = 1, 3  # envoy.config.core.v3.HealthStatus


def failover_levels(assignment: endpoint_pb2.ClusterLoadAssignment) -> dict[str, Any]:
    """The levels of one assignment, best first; ``spillover`` reads its overprovisioning factor back."""
    levels: dict[int, list[dict[str, Any]]] = {}
    for locality in assignment.endpoints:
        entry: dict[str, Any] = {
            "cluster": locality.locality.sub_zone,
            "zone": locality.locality.zone,
            "endpoints": len(locality.lb_endpoints),
            "healthy": sum(1 for e in locality.lb_endpoints if e.health_status == _HEALTHY),
            "draining": sum(1 for e in locality.lb_endpoints if e.health_status == _DRAINING),
        }
        if locality.HasField("load_balancing_weight"):
            entry["weight"] = locality.load_balancing_weight.value
        levels.setdefault(locality.priority, []).append(entry)
    for members in levels.values():
        total = sum(member.get("weight", 0) for member in members)
        for member in members:
            if total and "weight" in member:
                member["share"] = f"{100 * member['weight'] / total:.0f}%"
    factor = assignment.policy.overprovisioning_factor.value if assignment.policy.HasField(
        "overprovisioning_factor") else 140
    if factor >= ALL_OR_NOTHING_OVERPROVISIONING:
        spillover = "AllOrNothing"
    else:
        spillover = f"Gradual: a level keeps all its traffic down to {round(10_000 / factor)}% healthy endpoints"
    return {"spillover": spillover,
            "levels": [{"priority": priority, "clusters": levels[priority]} for priority in sorted(levels)]}
