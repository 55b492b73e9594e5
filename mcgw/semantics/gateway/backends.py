"""Route backendRefs (every route kind): which resolve, which do not, and the route's ResolvedRefs condition.

Supported kinds are core Services (endpoints of the same cluster only, GEP-1748) and MCS
ServiceImports (endpoints across the ClusterSet). A backend that does not resolve keeps its weight,
so the translator can answer 500 for its share of the traffic.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import NamedTuple

from mcgw.objects.model import CORE_GROUP, GATEWAY_GROUP, MCS_GROUP, BackendRef, ReferenceGrant, Service
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.refs import Reference, is_permitted
from mcgw.semantics.gateway.routes import RouteView
from mcgw.semantics.mcs.view import ImportedService

_new = tuple.__new__
SERVICE = (CORE_GROUP, "Service")
SERVICE_IMPORT = (MCS_GROUP, "ServiceImport")


class ResolvedBackend(NamedTuple):
    """One backendRef: where it points and, if it does not resolve, the reason."""

    ref: BackendRef
    namespace: str
    problem: tuple[str, str] | None  # (reason, message)

    @property
    def kind(self) -> tuple[str, str]:
        return self.ref.group, self.ref.kind


def _port_problem(service: object, namespace: str, ref: BackendRef) -> tuple[str, str] | None:
    """A Service backendRef needs a port the Service has: any other gets no endpoints (503 for every request)."""
    if not isinstance(service, Service):
        return None
    if ref.port is None:
        return c.REASON_BACKEND_NOT_FOUND, f"backendRef to Service {namespace}/{ref.name} has no port; set port"
    ports = service.spec.ports
    for service_port in ports:
        if service_port.port == ref.port:
            return None
    have = ", ".join(str(p.port) for p in ports) or "none"
    return (c.REASON_BACKEND_NOT_FOUND,
            f"Service {namespace}/{ref.name} has no port {ref.port}; use one of its ports ({have})")


def _import_problem(imported: object, namespace: str, ref: BackendRef) -> tuple[str, str] | None:
    """A ServiceImport that no cluster exports, or without the port asked for, has no endpoints to send to."""
    if not isinstance(imported, ImportedService):
        return None
    where = f"{namespace}/{ref.name}"
    if not imported.clusters:
        return (c.REASON_BACKEND_NOT_FOUND,
                f"ServiceImport {where} has no exporting cluster; export Service {where} with a ServiceExport")
    if ref.port is not None and all(port.port != ref.port for port in imported.ports):
        have = ", ".join(str(port.port) for port in imported.ports) or "none"
        return (c.REASON_BACKEND_NOT_FOUND,
                f"ServiceImport {where} has no port {ref.port}; use one of its ports ({have})")
    return None


def resolve(route: RouteView, services: Collection[tuple[str, str]], service_imports: Collection[tuple[str, str]],
            grants: Iterable[ReferenceGrant]) -> tuple[tuple[ResolvedBackend, ...], ...]:
    """Per rule, per backendRef, the resolution of the reference. ``services`` as a mapping to the Service
    objects also checks that each Service backendRef names a port the Service has; ``service_imports`` as a
    mapping to the ClusterSet's :class:`ImportedService` checks that some cluster exports it, with that port."""
    grants = tuple(grants)
    service_objects = services if isinstance(services, Mapping) else None
    imported = service_imports if isinstance(service_imports, Mapping) else None
    route_ns = route.metadata.namespace
    rules = []
    for rule in route.spec.rules:
        resolved = []
        for ref in rule.backend_refs:
            namespace = ref.namespace or route_ns
            group, kind = ref.group, ref.kind
            problem: tuple[str, str] | None = None
            known = services if (kind == "Service" and group == CORE_GROUP) else \
                service_imports if (kind == "ServiceImport" and group == MCS_GROUP) else None
            if known is None:
                problem = (c.REASON_INVALID_KIND,
                           f"backendRef {group or 'core'}/{kind} {ref.name} is not supported; "
                           "use a Service or a multicluster.x-k8s.io ServiceImport")
            elif namespace != route_ns and not is_permitted(
                    Reference(GATEWAY_GROUP, route.kind, route_ns, group, kind, namespace, ref.name), grants):
                problem = (c.REASON_REF_NOT_PERMITTED,
                           f"{kind} {namespace}/{ref.name} is in another namespace and no ReferenceGrant in "
                           f"{namespace} allows {route.kind}s from {route_ns}")
            elif (namespace, ref.name) not in known:
                problem = (c.REASON_BACKEND_NOT_FOUND, f"{kind} {namespace}/{ref.name} does not exist")
            elif known is services and service_objects is not None:
                problem = _port_problem(service_objects.get((namespace, ref.name)), namespace, ref)
            elif known is service_imports and imported is not None:
                problem = _import_problem(imported.get((namespace, ref.name)), namespace, ref)
            resolved.append(_new(ResolvedBackend, (ref, namespace, problem)))  # skips the slow named-tuple __new__
        rules.append(tuple(resolved))
    return tuple(rules)


def resolved_refs_condition(route: RouteView, rules: Sequence[Sequence[ResolvedBackend]]) -> c.Condition:
    """True when every backendRef resolves; otherwise the first problem, by the spec's reasons."""
    problems = [backend.problem for rule in rules for backend in rule if backend.problem]
    generation = route.metadata.generation
    if not problems:
        return c.shared(c.RESOLVED_REFS, "True", c.REASON_RESOLVED_REFS, "all backend references resolved",
                        generation)
    reason, message = problems[0]
    extra = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return c.Condition(c.RESOLVED_REFS, "False", reason, message + extra, generation)
