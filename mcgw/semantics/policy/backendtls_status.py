"""BackendTLSPolicy ``status.ancestors``: one entry per Gateway of ours whose routes use a policy's target.

A Gateway is an ancestor of a policy when one of its routes (accepted there) has a backendRef or mirror that
resolves to a Service the policy targets, or to a ServiceImport of that namespace and name (which the
policy covers too). Every ancestor carries the policy's own conditions (Accepted, ResolvedRefs): they do not
depend on the Gateway. At most 16 ancestors, as the API allows, in namespace/name order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcgw.objects.model import GATEWAY_GROUP
from mcgw.semantics.gateway import CONTROLLER_NAME
from mcgw.semantics.gateway.evaluate import RouteResult
from mcgw.semantics.policy.backendtls import BackendTLSResolution, NamespacedName

MAX_ANCESTORS = 16


def _used_by(resolution: BackendTLSResolution,
             routes: Iterable[RouteResult]) -> dict[NamespacedName, set[NamespacedName]]:
    """(namespace, name) of each targeted backend -> the Gateways whose routes use it."""
    targeted = resolution.targeted
    used: dict[NamespacedName, set[NamespacedName]] = {}
    for result in routes:
        gateways = [(parent.gateway_namespace, parent.ref.name) for parent in result.parents
                    if parent.accepted.status == "True"]
        if not gateways:
            continue
        refs = [(b.namespace, b.ref.name) for rule in result.backends for b in rule if b.problem is None]
        refs += [(m.namespace, m.ref.name) for rule in result.mirrors for m in rule if m.problem is None]
        for key in refs:
            if key in targeted:
                used.setdefault(key, set()).update(gateways)
    return used


def backend_tls_statuses(resolution: BackendTLSResolution, routes: Iterable[RouteResult]) -> dict[str, Any]:
    """Every policy's status, keyed ``namespace/name``."""
    if not resolution.policies:
        return {}
    used = _used_by(resolution, routes)
    statuses: dict[str, Any] = {}
    for (namespace, name), outcome in sorted(resolution.policies.items()):
        gateways: set[NamespacedName] = set()
        for ref in outcome.policy.spec.target_refs:
            gateways |= used.get((namespace, ref.name), set())
        conditions = [outcome.accepted.as_dict(), outcome.resolved_refs.as_dict()]
        statuses[f"{namespace}/{name}"] = {"ancestors": [
            {"ancestorRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": gw_ns, "name": gw_name},
             "controllerName": CONTROLLER_NAME, "conditions": conditions}
            for gw_ns, gw_name in sorted(gateways)[:MAX_ANCESTORS]]}
    return statuses
