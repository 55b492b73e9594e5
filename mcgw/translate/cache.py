"""A Gateway's Envoy resources kept between translations, rebuilt only where the IR changed.

The IR arrives with unchanged parts as the very same objects (the incremental translator reuses
them), so reuse is decided by identity: a route's bytes are kept while its ``RouteIR`` is the same
object, a virtual host's while its ``VirtualHostIR`` is, and so on.

Route tables are the bulk of the output (a 1,000-route table is about half a megabyte), so a route
table is assembled as bytes: each route is encoded once when it changes (:mod:`.routes`), and the table
is the concatenation of its virtual hosts' encoded fields, which is exactly protobuf's deterministic
encoding. The message itself is parsed from those bytes only if someone asks for it (``mcgw translate``
output, tests); publishing uses the bytes. :func:`mcgw.translate.translate` builds the same resources
from scratch with the same encoder, keeping nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import compress
from operator import is_not, itemgetter

from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from mcgw import ir
from mcgw.translate.clusters import cluster, load_assignment
from mcgw.translate.listeners import listener
from mcgw.translate.routes import (
    listener_tables,
    route_clusters,
    route_field,
    route_table,
    virtual_host_field,
    virtual_host_fields,
)
from mcgw.translate.secrets import delivered, secret, trusted_ca
from mcgw.translate.streams import stream_clusters, stream_shape, tcp_listener, udp_listener
from mcgw.translate.tls import tls_backends, tls_listener, tls_ports
from xdsserver import ROUTE, Resource


class Built:
    """One Envoy resource as a message, as serialised bytes, or both; the missing form is made on demand.

    Never changed once made, so outputs of different translations can share it."""

    __slots__ = ("_message", "_payload", "_resource", "name")

    def __init__(self, name: str, message: Message | None = None, payload: bytes | None = None) -> None:
        self.name = name
        self._message = message
        self._payload = payload
        self._resource: Resource | None = None

    @property
    def message(self) -> Message:
        if self._message is None:
            assert self._payload is not None
            self._message = route_pb2.RouteConfiguration.FromString(self._payload)
        return self._message

    @property
    def resource(self) -> Resource:
        """The resource for an xDS snapshot: serialised and hashed once, then shared."""
        if self._resource is None:
            if self._payload is not None:
                self._resource = Resource.from_payload(ROUTE, self.name, self._payload)
            else:
                self._resource = Resource.from_message(self.message)
        return self._resource


def _backend_refs(backends: tuple[ir.BackendIR, ...]) -> tuple[tuple[str, int, bool], ...]:
    return tuple([(b.name, b.weight, b.valid) for b in backends])


def _fields_except(kind: type[tuple[object, ...]], *left_out: str) -> itemgetter[tuple[object, ...]]:
    """A getter of every field but ``left_out``, by name: a field added to the IR is compared by default."""
    fields: tuple[str, ...] = kind._fields  # type: ignore[attr-defined]
    unknown = set(left_out) - set(fields)
    assert not unknown, f"{kind.__name__} has no field {unknown}"
    return itemgetter(*[i for i, name in enumerate(fields) if name not in left_out])


# A route's fields that reach its Envoy route as they are; its backend lists are compared by reference.
_route_as_is = _fields_except(ir.RouteIR, "backends", "mirrors")
# An HTTP listener's fields that its Envoy listener is made of (its virtual hosts go to the route tables, whose
# names the TLS chains carry).
_listener_shape = _fields_except(ir.HTTPListenerIR, "virtual_hosts", "route_tables")


def _same_route(a: ir.RouteIR, b: ir.RouteIR) -> bool:
    """Whether two route IRs make the same Envoy route: everything but their backends' endpoints, which
    only the clusters' load assignments carry (the encoder reads a backend's name, weight and validity,
    nothing else). An endpoint change rebuilds the IR of every route that uses the Service; this keeps
    their serialised routes, and so the route table, as they were."""
    return (_route_as_is(a) == _route_as_is(b)
            and _backend_refs(a.backends) == _backend_refs(b.backends) and _backend_refs(a.mirrors) ==
            _backend_refs(b.mirrors))


# The listener a route is encoded for, (port, protocol): a redirect's port depends on it.
Where = tuple[int, str]


def _memo_key(route: ir.RouteIR, where: Where) -> object:
    """A route bound on several ports is encoded once, unless it redirects (then once per listener)."""
    return id(route) if route.redirect is None else (id(route), where)


class _Route:
    __slots__ = ("clusters", "encoded", "route", "where")

    def __init__(self, route: ir.RouteIR, where: Where, previous: _Route | None = None) -> None:
        self.route = route
        self.where = where
        self.encoded: bytes
        if previous is not None and previous.where == where and _same_route(previous.route, route):
            self.encoded = previous.encoded
        else:
            self.encoded = route_field(route, *where)
        # Clusters by name: their resources do not depend on a route's weight, so which route's backend
        # object stands for a cluster does not matter (the order of first use does, and dict updates keep it).
        self.clusters = {backend.name: backend for backend in route_clusters(route)}


class _VirtualHost:
    __slots__ = ("clusters", "encoded", "entries", "parts", "routes", "vhost", "where")

    def __init__(self, vhost: ir.VirtualHostIR, where: Where, previous: _VirtualHost | None,
                 memo: dict[object, _Route]) -> None:
        self.vhost = vhost
        self.where = where
        self.encoded: bytes
        self.routes: dict[str, _Route]  # by route name
        self.entries: list[_Route]  # in the virtual host's order
        self.parts: list[bytes]  # its encoded fields: name, domains, then one per route
        self.clusters: dict[str, ir.BackendIR]  # in the order its routes first name them
        if previous is None or previous.where != where or len(previous.entries) != len(vhost.routes) \
                or not self._patch(previous, memo):
            self._build(previous, memo)
        encoded = virtual_host_field(self.parts)
        # The same bytes object when nothing Envoy sees changed, so the route table is kept as it was.
        self.encoded = previous.encoded if previous is not None and previous.encoded == encoded else encoded

    def _entry(self, route: ir.RouteIR, known: Mapping[str, _Route], memo: dict[object, _Route]) -> _Route:
        entry = known.get(route.name)
        where = self.where
        if entry is None or entry.route is not route or entry.where != where:
            key = _memo_key(route, where)
            shared = memo.get(key)
            entry = shared if shared is not None and shared.route is route else _Route(route, where, entry)
            memo[key] = entry
        return entry

    def _build(self, previous: _VirtualHost | None, memo: dict[object, _Route]) -> None:
        known = previous.routes if previous is not None else {}
        vhost = self.vhost
        self.parts = virtual_host_fields(vhost)
        self.entries = [self._entry(route, known, memo) for route in vhost.routes]
        self.routes = {entry.route.name: entry for entry in self.entries}
        self.parts += [entry.encoded for entry in self.entries]
        self.clusters = {}
        for entry in self.entries:
            self.clusters.update(entry.clusters)

    def _patch(self, previous: _VirtualHost, memo: dict[object, _Route]) -> bool:
        """The common case, as many routes as before and most of them the very same objects: touch only the
        positions that changed (found by pointer comparison, at C speed). False if the order in which
        routes first name clusters may have changed; then the virtual host is built in full."""
        routes = self.vhost.routes
        changed = list(compress(range(len(routes)), map(is_not, previous.vhost.routes, routes)))
        self.entries = previous.entries[:]
        self.parts = previous.parts[:]
        self.routes = dict(previous.routes)
        head = len(self.parts) - len(self.entries)
        updated = []
        for i in changed:
            entry = self._entry(routes[i], previous.routes, memo)
            if list(entry.clusters) != list(self.entries[i].clusters):
                return False
            del self.routes[self.entries[i].route.name]
            self.entries[i] = entry
            self.parts[head + i] = entry.encoded
            updated.append(entry)
        for entry in updated:
            self.routes[entry.route.name] = entry
        self.clusters = dict(previous.clusters)
        for entry in updated:  # the same names at the same places: new backend objects, same order
            self.clusters.update(entry.clusters)
        return True


class _Cluster:
    __slots__ = ("client_certificate", "cluster", "endpoints", "failover", "grpc", "h2c", "localities", "stream",
                 "tls")

    def __init__(self, backend: ir.BackendIR, client_certificate: str | None, previous: _Cluster | None) -> None:
        self.localities = backend.localities
        self.failover = backend.failover
        self.h2c = backend.h2c
        self.grpc = backend.grpc
        self.stream = backend.stream
        self.tls = backend.tls
        self.client_certificate = client_certificate
        self.cluster: Built = previous.cluster if previous is not None \
            and not previous.differs(backend, client_certificate) \
            else Built(backend.name, cluster(backend, client_certificate))
        self.endpoints = Built(backend.name, load_assignment(backend))

    def differs(self, backend: ir.BackendIR, client_certificate: str | None) -> bool:
        """Whether the Envoy cluster (not its endpoints) of ``backend`` is another one than this."""
        return self.failover != backend.failover or self.h2c != backend.h2c or self.tls != backend.tls \
            or self.grpc != backend.grpc or self.stream != backend.stream \
            or (backend.tls is not None and self.client_certificate != client_certificate)


class GatewayResources:
    """The Envoy resources of one Gateway; :meth:`update` gives the same resources, in the same order, as
    :func:`mcgw.translate.translate`, reusing whatever did not change since the previous call."""

    def __init__(self) -> None:
        self._vhosts: dict[str, _VirtualHost] = {}
        self._tables: dict[str, tuple[tuple[bytes, ...], Built]] = {}
        self._listeners: dict[str, tuple[tuple[object, ...], Built]] = {}
        self._clusters: dict[str, _Cluster] = {}
        self._secrets: dict[str, tuple[ir.SecretIR, Built]] = {}
        self._trusted_cas: dict[str, tuple[ir.TrustedCaIR, Built]] = {}

    def update(self, gateway: ir.GatewayIR) -> tuple[Built, ...]:
        memo: dict[object, _Route] = {}
        vhosts: dict[str, _VirtualHost] = {}
        tables: dict[str, tuple[tuple[bytes, ...], Built]] = {}
        listeners: dict[str, tuple[tuple[object, ...], Built]] = {}
        backends: dict[str, ir.BackendIR] = {}
        for port in gateway.http:
            built_vhosts = []
            where = (port.port, port.protocol)
            for vhost in port.virtual_hosts:
                known_vhost = self._vhosts.get(vhost.name)
                if known_vhost is None or known_vhost.vhost is not vhost or known_vhost.where != where:
                    known_vhost = _VirtualHost(vhost, where, known_vhost, memo)
                vhosts[vhost.name] = known_vhost
                built_vhosts.append(known_vhost)
                backends.update(known_vhost.clusters)
            for name, key in listener_tables(port, [v.encoded for v in built_vhosts]):
                table = self._tables.get(name)
                if table is None or table[0] != key:
                    table = (key, Built(name, payload=route_table(name, key)))
                tables[name] = table
            shape = (gateway.address, gateway.access_log, _listener_shape(port))
            known_listener = self._listeners.get(port.name)
            listeners[port.name] = known_listener if known_listener is not None and known_listener[0] == shape else (
                shape, Built(port.name, listener(gateway.address, port, gateway.access_log)))
        streams: list[ir.TCPListenerIR | ir.UDPListenerIR] = [*gateway.tcp, *gateway.udp]
        for stream in streams:
            stream_key = stream_shape(gateway.address, stream, gateway.access_log)
            known_stream = self._listeners.get(stream.name)
            if known_stream is not None and known_stream[0] == stream_key:
                listeners[stream.name] = known_stream
            else:
                log = gateway.access_log
                built = tcp_listener(gateway.address, stream, log) if isinstance(stream, ir.TCPListenerIR) \
                    else udp_listener(gateway.address, stream, log)
                if built is None:
                    continue
                listeners[stream.name] = (stream_key, Built(stream.name, built))
            for backend in stream_clusters(stream):
                backends.setdefault(backend.name, backend)
        for number, (passthrough, terminate) in tls_ports(gateway).items():
            name = f"{gateway.namespace}/{gateway.name}/{number}"
            tls_shape = (gateway.address, gateway.access_log, passthrough, terminate)
            known_listener = self._listeners.get(name)
            listeners[name] = known_listener if known_listener is not None and known_listener[0] == tls_shape else (
                tls_shape, Built(name, tls_listener(gateway, number, passthrough, terminate)))
        for name, backend in tls_backends(gateway).items():
            backends.setdefault(name, backend)
        clusters: dict[str, _Cluster] = {}
        client_certificate = gateway.client_certificate
        tls_clusters = False
        for name, backend in backends.items():
            known_cluster = self._clusters.get(name)
            if known_cluster is None or known_cluster.differs(backend, client_certificate) or (
                    known_cluster.localities is not backend.localities
                    and known_cluster.localities != backend.localities):
                known_cluster = _Cluster(backend, client_certificate, known_cluster)
            clusters[name] = known_cluster
            tls_clusters = tls_clusters or backend.tls is not None
        # A rotated certificate is a new Secret under the same name; the listener naming it stays as it was.
        secrets: dict[str, tuple[ir.SecretIR, Built]] = {}
        for item in delivered(gateway, tls_clusters):
            known_secret = self._secrets.get(item.name)
            secrets[item.name] = known_secret if known_secret is not None and known_secret[0] == item else (
                item, Built(item.name, secret(item)))
        trusted_cas: dict[str, tuple[ir.TrustedCaIR, Built]] = {}
        for ca in gateway.trusted_cas:
            known_ca = self._trusted_cas.get(ca.name)
            trusted_cas[ca.name] = known_ca if known_ca is not None and known_ca[0] == ca else (
                ca, Built(ca.name, trusted_ca(ca)))
        self._vhosts, self._tables, self._listeners, self._clusters = vhosts, tables, listeners, clusters
        self._secrets, self._trusted_cas = secrets, trusted_cas
        out = [table for _, table in tables.values()]
        out += [built for _, built in listeners.values()]
        for built in clusters.values():
            out += (built.cluster, built.endpoints)
        out += [built for _, built in secrets.values()]
        out += [built for _, built in trusted_cas.values()]
        return tuple(out)
