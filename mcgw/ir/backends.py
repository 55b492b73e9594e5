"""Backend IR: one Envoy cluster per backend Service or ServiceImport port, built once and shared."""

from __future__ import annotations

from typing import Literal

from mcgw import ir
from mcgw.ir.failover import FailoverContext
from mcgw.semantics.endpoints import EndpointLookup
from mcgw.semantics.gateway.backends import (
    APP_PROTOCOL_H2C,
    AppProtocolLookup,
    PortNameLookup,
    ResolvedBackend,
    port_app_protocol,
    port_name,
)
from mcgw.semantics.gateway.routes import RouteKey
from mcgw.semantics.policy.backendtls import NO_BACKEND_TLS, BackendTLSResolution

_new = tuple.__new__


def backend_cluster_name(kind: str, namespace: str, name: str, port: int | None) -> str:
    """One Envoy cluster per backend Service (or ServiceImport) port, shared by every route that uses it,
    so an endpoint change touches one ClusterLoadAssignment whatever the number of routes."""
    return f"{kind.lower()}/{namespace}/{name}/{port or 0}"


class Backends:
    """Backend IR, shared: one BackendIR per (cluster, weight) and one locality tuple per Service port.

    Thousands of rules name the same few Services; sharing makes them cheap to build and to compare.
    The incremental translator keeps one of these and calls :meth:`forget` when a Service's endpoints
    may have changed. ServiceImport backends come from ``failover`` (the ClusterSet's imports, cluster
    properties and FailoverPolicies); a route with a FailoverPolicy of its own gets clusters of its own.
    ``app_protocols`` gives a Service port's appProtocol (a ServiceImport's comes from its import's ports),
    which decides the protocol Envoy speaks upstream. ``backend_tls`` (BackendTLSPolicies, matched by the
    port names ``port_names`` gives) says which backends are reached over TLS; one whose policy is unusable
    is an invalid backend (500), never a plaintext one."""

    def __init__(self, cluster: str, endpoints: EndpointLookup, failover: FailoverContext | None = None,
                 app_protocols: AppProtocolLookup | None = None,
                 backend_tls: BackendTLSResolution = NO_BACKEND_TLS,
                 port_names: PortNameLookup | None = None) -> None:
        self.cluster = cluster
        self.endpoints = endpoints
        self.failover = failover
        self.app_protocols = app_protocols
        self.backend_tls = backend_tls
        self.port_names = port_names
        self._backends: dict[tuple[str, str, str, int | None, int, str | None], ir.BackendIR] = {}
        self._localities: dict[tuple[str, str, int], tuple[ir.LocalityIR, ...]] = {}
        self._keys: dict[tuple[str, str], list[tuple[str, str, str, int | None, int, str | None]]] = {}
        self._grpc: dict[tuple[str, int], tuple[ir.BackendIR, ir.BackendIR]] = {}
        self._streams: dict[tuple[str, int, str], tuple[ir.BackendIR, ir.BackendIR]] = {}

    def forget(self, namespace: str, name: str) -> None:
        """Drop what was built for this Service (or ServiceImport): its endpoints may have changed."""
        for key in self._keys.pop((namespace, name), ()):
            _, _, _, port, _, _ = key
            self._backends.pop(key, None)
            self._localities.pop((namespace, name, port or 0), None)

    def get(self, kind: str, namespace: str, name: str, port: int | None, weight: int,
            route: RouteKey | None = None) -> ir.BackendIR:
        """``kind`` is ``Service`` or ``ServiceImport``; ``route`` is the route asking (for its policy)."""
        policy = None
        if kind != "Service" and route is not None and self.failover is not None:
            route_policy = self.failover.resolution.for_target(route)
            policy = route_policy.metadata.name if route_policy is not None else None
        key = (namespace, name, kind, port, weight, policy)
        backend = self._backends.get(key)
        if backend is None:
            backend = self._add(key, route if policy else None)
        return backend

    def of_rule(self, resolved_refs: tuple[ResolvedBackend, ...], route: RouteKey,
                index: int) -> tuple[ir.BackendIR, ...]:
        """One rule's backendRefs as backend IR, in order; an unresolved one keeps its weight (its share answers
        500). Called once per rule of every route, so Service backends, the common case, take a short path."""
        known = self._backends
        if len(resolved_refs) == 1 and resolved_refs[0].problem is None and resolved_refs[0].ref.kind == "Service":
            resolved = resolved_refs[0]
            ref = resolved.ref
            key = (resolved.namespace, ref.name, "Service", ref.port, ref.weight, None)
            return (known.get(key) or self._add(key, None),)
        out = []
        for j, resolved in enumerate(resolved_refs):
            ref = resolved.ref
            if resolved.problem is not None:
                out.append(_new(ir.BackendIR, (f"{route[1]}/{route[2]}/rule/{index}/invalid-backend/{j}", ref.weight,
                                               False, "Invalid", (), None, False, None, False, None)))
            elif ref.kind == "Service":
                key = (resolved.namespace, ref.name, "Service", ref.port, ref.weight, None)
                out.append(known.get(key) or self._add(key, None))
            else:
                out.append(self.get("ServiceImport", resolved.namespace, ref.name, ref.port, ref.weight, route))
        return tuple(out)

    def as_grpc(self, backend: ir.BackendIR) -> ir.BackendIR:
        """``backend`` as a GRPCRoute's: a cluster of its own (an HTTPRoute may send HTTP/1.1 to the same
        port), speaking HTTP/2. Shared while ``backend`` itself is (it is built again after :meth:`forget`)."""
        if not backend.valid:
            return backend
        key = (backend.name, backend.weight)
        cached = self._grpc.get(key)
        if cached is not None and cached[0] is backend:
            return cached[1]
        derived = backend._replace(name=f"{backend.name}/grpc", grpc=True)
        self._grpc[key] = (backend, derived)
        return derived

    def as_stream(self, backend: ir.BackendIR, protocol: Literal["TCP", "UDP"],
                  originate_tls: bool = True) -> ir.BackendIR:
        """``backend`` as a TCPRoute's, TLSRoute's or UDPRoute's: a cluster of its own (``…/tcp``, ``…/udp``)
        whose health checks connect rather than speak HTTP (UDP: none), and no HTTP protocol options. A backend
        that a BackendTLSPolicy says to reach over TLS is unusable over UDP (there is no TLS for datagrams
        here), never sent datagrams in plaintext. ``originate_tls`` False (a TLSRoute: the connection already
        carries TLS) drops the policy's upstream TLS, in a cluster named apart (``…/tcp/no-tls``) so a TCPRoute
        to the same port keeps it. Shared while ``backend`` itself is."""
        if not backend.valid:
            return backend
        if protocol == "UDP" and backend.tls is not None:
            return ir.BackendIR(f"{backend.name}/udp/tls-not-possible", backend.weight, False, "Invalid")
        dropped = not originate_tls and backend.tls is not None
        key = (backend.name, backend.weight, protocol + ("/no-tls" if dropped else ""))
        cached = self._streams.get(key)
        if cached is not None and cached[0] is backend:
            return cached[1]
        name = f"{backend.name}/{protocol.lower()}" + ("/no-tls" if dropped else "")
        derived = backend._replace(name=name, h2c=False, grpc=False, stream=protocol,
                                   tls=None if dropped else backend.tls)
        self._streams[key] = (backend, derived)
        return derived

    def _add(self, key: tuple[str, str, str, int | None, int, str | None], route: RouteKey | None) -> ir.BackendIR:
        backend = self._backends[key] = self._build(key, route)
        namespace, name, *_ = key
        self._keys.setdefault((namespace, name), []).append(key)
        return backend

    def _build(self, key: tuple[str, str, str, int | None, int, str | None],
               route: RouteKey | None) -> ir.BackendIR:
        namespace, name, kind, port, weight, policy = key
        cluster_name = backend_cluster_name(kind, namespace, name, port)
        if kind != "Service":
            imported = self.failover.imports.get((namespace, name)) if self.failover is not None else None
            tls = self.backend_tls.lookup(kind, namespace, name,
                                          port_name(imported.ports, port) if imported is not None else None)
            if tls is not None and tls.tls is None:
                return ir.BackendIR(f"{cluster_name}/invalid-tls", weight, False, "Invalid")
            upstream_tls = tls.tls if tls is not None else None
            if self.failover is None:
                return ir.BackendIR(cluster_name, weight, True, "ServiceImport", tls=upstream_tls)
            settings = self.failover.settings(namespace, name, route)
            if policy is not None:
                cluster_name += f"/policy/{policy}"
            h2c = imported is not None and port_app_protocol(imported.ports, port) == APP_PROTOCOL_H2C
            return ir.BackendIR(cluster_name, weight, True, "ServiceImport",
                                self.failover.localities(namespace, name, port or 0, settings, self.endpoints),
                                settings, h2c,
                                upstream_tls)
        tls = None
        if self.backend_tls.by_target:
            names = self.port_names
            tls = self.backend_tls.lookup(kind, namespace, name,
                                          names(namespace, name, port or 0) if names is not None else None)
            if tls is not None and tls.tls is None:
                return ir.BackendIR(f"{cluster_name}/invalid-tls", weight, False, "Invalid")
        localities = self._localities.get((namespace, name, port or 0))
        if localities is None:
            localities = (ir.LocalityIR(self.cluster, 0, self.endpoints(namespace, name, port or 0)),)
            self._localities[(namespace, name, port or 0)] = localities
        h2c = self.app_protocols is not None and self.app_protocols(namespace, name, port or 0) == APP_PROTOCOL_H2C
        return ir.BackendIR(cluster_name, weight, True, "Service", localities, None, h2c,
                            tls.tls if tls is not None else None)
