"""Route backendRefs (every route kind): which resolve, which do not, and the route's ResolvedRefs condition.

Supported kinds are core Services (endpoints of the same cluster only, GEP-1748) and MCS
ServiceImports (endpoints across the ClusterSet). A backend that does not resolve keeps its weight,
so the translator can answer 500 for its share of the traffic.

A Service (or ServiceImport) port's ``appProtocol`` says what the backend speaks (GEP-1911, the standard
names of KEP-3726): ``kubernetes.io/h2c`` is HTTP/2 with prior knowledge, ``kubernetes.io/ws`` WebSocket
(upgrades pass on every route anyway), ``kubernetes.io/wss`` WebSocket over TLS, which needs a
BackendTLSPolicy for that port (the TLS it is spoken over). A route that cannot speak the port's protocol
has an UnsupportedProtocol backendRef (GEP-1911: the backend is invalid, and its share answers 500): for the
kinds that speak HTTP to their backends (HTTPRoute, GRPCRoute), a port with no TCP protocol, any other
``kubernetes.io/`` name (the prefix is KEP-3726's, so it is a standard protocol mcgw does not speak),
``kubernetes.io/wss`` without a BackendTLSPolicy, and for a GRPCRoute a WebSocket port (gRPC needs HTTP/2,
a WebSocket backend speaks HTTP/1.1). Any other value (an IANA service name such as ``http``, or a
domain-prefixed one) is not a standard name; mcgw speaks HTTP/1.1 to it, as without one (a GRPCRoute
HTTP/2), which GEP-1911 allows for a port whose protocol is not given in its terms.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import NamedTuple

from mcgw.objects.model import (
    CORE_GROUP,
    GATEWAY_GROUP,
    MCS_GROUP,
    BackendObjectReference,
    BackendRef,
    ReferenceGrant,
    Service,
    ServicePort,
)
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.refs import Reference, is_permitted
from mcgw.semantics.gateway.routes import RouteView
from mcgw.semantics.mcs.view import ImportedService, ImportPort

_new = tuple.__new__
SERVICE = (CORE_GROUP, "Service")
SERVICE_IMPORT = (MCS_GROUP, "ServiceImport")

APP_PROTOCOL_H2C = "kubernetes.io/h2c"
APP_PROTOCOL_WS = "kubernetes.io/ws"
APP_PROTOCOL_WSS = "kubernetes.io/wss"
_STANDARD_PREFIX = "kubernetes.io/"  # KEP-3726 reserves it for the standard application protocols
_STANDARD = frozenset({APP_PROTOCOL_H2C, APP_PROTOCOL_WS, APP_PROTOCOL_WSS})
_HTTP_KINDS = frozenset({"HTTPRoute", "GRPCRoute"})  # the route kinds that speak HTTP to their backends, over TCP

# (namespace, name, port) of a Service → that port's appProtocol, if any.
AppProtocolLookup = Callable[[str, str, int], str | None]
# (namespace, name, port) of a Service → that port's name, if any.
PortNameLookup = Callable[[str, str, int], str | None]
# (kind, namespace, name, port name) of a backend → whether a BackendTLSPolicy applies to it.
TlsLookup = Callable[[str, str, str, str | None], bool]


def port_app_protocol(ports: Iterable[ServicePort | ImportPort], number: int | None) -> str | None:
    """The ``appProtocol`` of port ``number`` for TCP (a UDP port of the same number is another port)."""
    for port in ports:
        if port.port == number and port.protocol == "TCP":
            return port.app_protocol
    return None


def port_name(ports: Iterable[ServicePort | ImportPort], number: int | None) -> str | None:
    """The name of TCP port ``number`` (a BackendTLSPolicy's sectionName names it)."""
    for port in ports:
        if port.port == number and port.protocol == "TCP":
            return port.name or None
    return None


def port_name_lookup(services: Mapping[tuple[str, str], object]) -> PortNameLookup:
    """What the IR builder asks for a Service backend port's name; ``services`` may be live."""
    def lookup(namespace: str, name: str, port: int) -> str | None:
        service = services.get((namespace, name))
        return port_name(service.spec.ports, port) if isinstance(service, Service) else None
    return lookup


def app_protocol_lookup(services: Mapping[tuple[str, str], object]) -> AppProtocolLookup:
    """What the IR builder asks for a Service backend's upstream protocol; ``services`` may be live."""
    def lookup(namespace: str, name: str, port: int) -> str | None:
        service = services.get((namespace, name))
        return port_app_protocol(service.spec.ports, port) if isinstance(service, Service) else None
    return lookup


def _protocol_problem(ports: Sequence[ServicePort | ImportPort], where: str, port: int | None,
                      what: str, tls: bool, kind: str) -> tuple[str, str] | None:
    """A port whose protocol a route of ``kind`` cannot speak is an unusable backend (GEP-1911:
    UnsupportedProtocol). Only the kinds that speak HTTP are judged here."""
    if kind not in _HTTP_KINDS:
        return None
    if not any(p.port == port and p.protocol == "TCP" for p in ports):
        protocols = "/".join(sorted({p.protocol for p in ports if p.port == port}))
        return (c.REASON_UNSUPPORTED_PROTOCOL,
                f"{_prefix(what)}{where} port {port} is {protocols}, not TCP: {kind}s reach their backends "
                "over TCP; use a TCP port")
    app_protocol = port_app_protocol(ports, port)
    if app_protocol is None:
        return None
    said = f"{_prefix(what)}{where} port {port} has appProtocol {app_protocol}"
    if app_protocol.startswith(_STANDARD_PREFIX) and app_protocol not in _STANDARD:
        return (c.REASON_UNSUPPORTED_PROTOCOL,
                f"{said}, a Kubernetes standard application protocol mcgw does not speak to backends (it speaks "
                f"{', '.join(sorted(_STANDARD))}, or HTTP/1.1 without an appProtocol)")
    if kind == "GRPCRoute" and app_protocol in (APP_PROTOCOL_WS, APP_PROTOCOL_WSS):
        return (c.REASON_UNSUPPORTED_PROTOCOL,
                f"{said}: a GRPCRoute speaks gRPC over HTTP/2, which a WebSocket backend does not; use "
                f"{APP_PROTOCOL_H2C} or no appProtocol")
    if app_protocol == APP_PROTOCOL_WSS and not tls:
        return (c.REASON_UNSUPPORTED_PROTOCOL,
                f"{said}: WebSocket over TLS to a backend needs a BackendTLSPolicy targeting that port; add one, "
                f"or use {APP_PROTOCOL_WS}")
    return None


class ResolvedMirror(NamedTuple):
    """One ``RequestMirror`` filter's backendRef: where it points and, if it does not resolve, the reason."""

    ref: BackendObjectReference
    namespace: str
    problem: tuple[str, str] | None  # (reason, message)


class ResolvedBackend(NamedTuple):
    """One backendRef: where it points and, if it does not resolve, the reason."""

    ref: BackendRef
    namespace: str
    problem: tuple[str, str] | None  # (reason, message)

    @property
    def kind(self) -> tuple[str, str]:
        return self.ref.group, self.ref.kind


def _port_problem(service: object, namespace: str, ref: BackendObjectReference, kind: str,
                  what: str = "backendRef", tls: TlsLookup | None = None) -> tuple[str, str] | None:
    """A Service reference needs a port the Service has: any other gets no endpoints (503 for every request)."""
    if not isinstance(service, Service):
        return None
    ports = service.spec.ports
    for service_port in ports:
        if service_port.port == ref.port:
            protected = tls is not None and tls("Service", namespace, ref.name, port_name(ports, ref.port))
            return _protocol_problem(ports, f"Service {namespace}/{ref.name}", ref.port, what, protected, kind)
    have = ", ".join(str(p.port) for p in ports) or "none"
    return (c.REASON_BACKEND_NOT_FOUND,
            f"{_prefix(what)}Service {namespace}/{ref.name} has no port {ref.port}; use one of its ports ({have})")


def _import_problem(imported: object, namespace: str, ref: BackendObjectReference, kind: str,
                    what: str = "backendRef", tls: TlsLookup | None = None) -> tuple[str, str] | None:
    """A ServiceImport that no cluster exports, or without the port asked for, has no endpoints to send to."""
    if not isinstance(imported, ImportedService):
        return None
    where = f"{namespace}/{ref.name}"
    if not imported.clusters:
        return (c.REASON_BACKEND_NOT_FOUND,
                f"{_prefix(what)}ServiceImport {where} has no exporting cluster; "
                f"export Service {where} with a ServiceExport")
    if ref.port is not None and all(port.port != ref.port for port in imported.ports):
        have = ", ".join(str(port.port) for port in imported.ports) or "none"
        return (c.REASON_BACKEND_NOT_FOUND,
                f"{_prefix(what)}ServiceImport {where} has no port {ref.port}; use one of its ports ({have})")
    if ref.port is not None:
        protected = tls is not None and tls("ServiceImport", namespace, ref.name,
                                            port_name(imported.ports, ref.port))
        return _protocol_problem(imported.ports, f"ServiceImport {where}", ref.port, what, protected, kind)
    return None


def _prefix(what: str) -> str:
    """Messages about a mirror say so; a backendRef's are the ones backendRefs always had."""
    return "" if what == "backendRef" else f"{what}: "


class _Known(NamedTuple):
    """What a route's references resolve against, read once per route."""

    services: Collection[tuple[str, str]]
    service_imports: Collection[tuple[str, str]]
    service_objects: Mapping[tuple[str, str], object] | None
    imported: Mapping[tuple[str, str], object] | None
    grants: tuple[ReferenceGrant, ...]
    tls: TlsLookup | None


def _known(services: Collection[tuple[str, str]], service_imports: Collection[tuple[str, str]],
           grants: Iterable[ReferenceGrant], tls: TlsLookup | None) -> _Known:
    return _Known(services, service_imports, services if isinstance(services, Mapping) else None,
                  service_imports if isinstance(service_imports, Mapping) else None, tuple(grants), tls)


def _problem(route: RouteView, ref: BackendObjectReference, namespace: str, known: _Known,
             what: str) -> tuple[str, str] | None:
    """Why one reference (a backendRef or a mirror's) does not resolve, or ``None``: the kind, then the
    ReferenceGrant (every cross-namespace reference goes through :func:`is_permitted`), then existence, port
    and exports."""
    route_ns = route.metadata.namespace
    group, kind = ref.group, ref.kind
    names = known.services if (kind == "Service" and group == CORE_GROUP) else \
        known.service_imports if (kind == "ServiceImport" and group == MCS_GROUP) else None
    if names is None:
        return (c.REASON_INVALID_KIND,
                f"{what} {group or 'core'}/{kind} {ref.name} is not supported; "
                "use a Service or a multicluster.x-k8s.io ServiceImport")
    if namespace != route_ns and not is_permitted(
            Reference(GATEWAY_GROUP, route.kind, route_ns, group, kind, namespace, ref.name), known.grants):
        return (c.REASON_REF_NOT_PERMITTED,
                f"{_prefix(what)}{kind} {namespace}/{ref.name} is in another namespace and no ReferenceGrant in "
                f"{namespace} allows {route.kind}s from {route_ns}")
    if (namespace, ref.name) not in names:
        return (c.REASON_BACKEND_NOT_FOUND,
                f"{_prefix(what)}{kind} {namespace}/{ref.name} does not exist")
    if names is known.services:
        if ref.port is None:  # whether or not the Service objects are known: a Service has no default port
            return c.REASON_BACKEND_NOT_FOUND, f"{what} to Service {namespace}/{ref.name} has no port; set port"
        if known.service_objects is not None:
            return _port_problem(known.service_objects.get((namespace, ref.name)), namespace, ref, route.kind, what,
                                 known.tls)
    elif known.imported is not None:
        return _import_problem(known.imported.get((namespace, ref.name)), namespace, ref, route.kind, what,
                               known.tls)
    return None


def resolve(route: RouteView, services: Collection[tuple[str, str]], service_imports: Collection[tuple[str, str]],
            grants: Iterable[ReferenceGrant], tls: TlsLookup | None = None) -> tuple[tuple[ResolvedBackend, ...], ...]:
    """Per rule, per backendRef, the resolution of the reference. ``services`` as a mapping to the Service
    objects also checks that each Service backendRef names a port the Service has; ``service_imports`` as a
    mapping to the ClusterSet's :class:`ImportedService` checks that some cluster exports it, with that port.
    ``tls`` says which backend ports a BackendTLSPolicy covers (appProtocol ``kubernetes.io/wss`` needs one)."""
    known = _known(services, service_imports, grants, tls)
    route_ns = route.metadata.namespace
    rules = []
    for rule in route.spec.rules:
        resolved = []
        for ref in rule.backend_refs:
            namespace = ref.namespace or route_ns
            problem = _problem(route, ref, namespace, known, "backendRef")
            resolved.append(_new(ResolvedBackend, (ref, namespace, problem)))  # skips the slow named-tuple __new__
        rules.append(tuple(resolved))
    return tuple(rules)


def resolve_mirrors(route: RouteView, services: Collection[tuple[str, str]],
                    service_imports: Collection[tuple[str, str]],
                    grants: Iterable[ReferenceGrant],
                    tls: TlsLookup | None = None) -> tuple[tuple[ResolvedMirror, ...], ...]:
    """Per rule, the rule's ``RequestMirror`` filters, resolved as backendRefs are (the same kinds, grants,
    existence and ports), so that a mirror nobody permitted or that has no endpoints is never configured.
    ``()`` for a route without mirrors, the common case, which then costs one pass over its filters."""
    route_ns = route.metadata.namespace
    known: _Known | None = None
    rules: list[tuple[ResolvedMirror, ...]] = []
    for index, rule in enumerate(route.spec.rules):
        resolved = []
        for route_filter in getattr(rule, "filters", ()):
            mirror = route_filter.request_mirror
            if route_filter.type != "RequestMirror" or mirror is None:
                continue
            if known is None:
                known = _known(services, service_imports, grants, tls)
            ref = mirror.backend_ref
            namespace = ref.namespace or route_ns
            resolved.append(_new(ResolvedMirror, (ref, namespace, _problem(route, ref, namespace, known,
                                                                           "RequestMirror backendRef"))))
        if resolved:
            rules.extend([()] * (index - len(rules)))
            rules.append(tuple(resolved))
    if not rules:
        return ()
    rules.extend([()] * (len(route.spec.rules) - len(rules)))
    return tuple(rules)


def resolved_refs_condition(route: RouteView, rules: Sequence[Sequence[ResolvedBackend]],
                            mirrors: Sequence[Sequence[ResolvedMirror]] = ()) -> c.Condition:
    """True when every backendRef and every mirror's backendRef resolves; otherwise the first problem (rule by
    rule, backendRefs before mirrors), by the spec's reasons."""
    problems = [backend.problem for rule in rules for backend in rule if backend.problem]
    if mirrors:
        problems = []
        for index, rule in enumerate(rules):
            problems += [backend.problem for backend in rule if backend.problem]
            if index < len(mirrors):
                problems += [mirror.problem for mirror in mirrors[index] if mirror.problem]
    generation = route.metadata.generation
    if not problems:
        return c.shared(c.RESOLVED_REFS, "True", c.REASON_RESOLVED_REFS, "all backend references resolved",
                        generation)
    reason, message = problems[0]
    extra = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return c.Condition(c.RESOLVED_REFS, "False", reason, message + extra, generation)
