"""The intermediate representation between Gateway API semantics and Envoy translation.

Everything here is already decided: attachment, precedence order, resolved backends, endpoints.
The translator reads only this, never Kubernetes objects.

The types are named tuples: immutable (outputs are shared between translations, so nothing may
change them), and about four times cheaper to build than frozen dataclasses, which matters at
thousands of routes. :func:`to_data` renders any of them as plain data and :func:`from_data` reads it
back. :func:`validate` states what the translator may take for granted; the builders guarantee it, the
tests check it, and the translation does not spend time on it.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple, TypeVar, Union, get_args, get_origin, get_type_hints

from mcgw.semantics.endpoints import Endpoint
from mcgw.semantics.policy.backendtls import UpstreamTLS
from mcgw.semantics.policy.failover import FailoverSettings, HealthCheckSettings, OutlierSettings, RetrySettings

PathType = Literal["Exact", "PathPrefix", "RegularExpression"]


class StringMatchIR(NamedTuple):
    name: str
    value: str
    regex: bool = False


class MatchIR(NamedTuple):
    path_type: PathType
    path: str
    headers: tuple[StringMatchIR, ...] = ()
    query_params: tuple[StringMatchIR, ...] = ()
    method: str | None = None


class HeaderOpsIR(NamedTuple):
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


NO_HEADER_OPS = HeaderOpsIR()


class BackendHeadersIR(NamedTuple):
    """A backendRef's own header filters: they change only the requests (and responses) of its share."""

    request: HeaderOpsIR = NO_HEADER_OPS
    response: HeaderOpsIR = NO_HEADER_OPS


NO_BACKEND_HEADERS = BackendHeadersIR()


class PathRewriteIR(NamedTuple):
    full_path: str | None = None
    prefix: str | None = None  # replaces the matched prefix


class RedirectIR(NamedTuple):
    scheme: str | None
    hostname: str | None
    port: int | None
    path: PathRewriteIR | None
    status_code: int


class OriginMatchIR(NamedTuple):
    """One allowed CORS origin as Envoy matches it: exactly, or as an RE2 pattern."""

    value: str
    regex: bool = False


class CorsIR(NamedTuple):
    """A rule's CORS policy, for Envoy's CORS filter: a preflight from an allowed origin is answered at the
    gateway, other requests from one get the allow-origin (and credentials, expose) headers on their response.
    ``allow_methods`` or ``allow_headers`` of ``("*",)`` answer with what the preflight asks for."""

    origins: tuple[OriginMatchIR, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None  # seconds
    allow_credentials: bool = False


# Endpoints pass from the semantics into the IR unchanged (the same objects, shared).
EndpointIR = Endpoint


class LocalityIR(NamedTuple):
    """Endpoints of one source cluster; ``priority`` 0 is the most preferred. ``weight`` is the locality's share
    of its priority against the others there (0: no locality weights, endpoints share it evenly)."""

    cluster: str
    priority: int
    endpoints: tuple[EndpointIR, ...]
    region: str = ""
    zone: str = ""
    weight: int = 0


# A ServiceImport backend's failover settings pass from the policy semantics into the IR unchanged.
HealthCheckIR = HealthCheckSettings
OutlierIR = OutlierSettings
RetryIR = RetrySettings
FailoverIR = FailoverSettings
# A backend's TLS settings (BackendTLSPolicy) pass from the policy semantics into the IR unchanged.
UpstreamTlsIR = UpstreamTLS


class BackendIR(NamedTuple):
    """One backendRef. ``name`` is the Envoy cluster; ``valid`` False means its share answers 500.

    ``failover`` is set for ServiceImport backends (their localities carry one priority per level).
    ``h2c``: the backend speaks HTTP/2 with prior knowledge (appProtocol ``kubernetes.io/h2c``), else HTTP/1.1.
    ``tls``: the backend is reached over TLS, validated as a BackendTLSPolicy says (never in plaintext).
    ``grpc``: a GRPCRoute's backend: HTTP/2 (h2c, or ALPN h2 over TLS) and gRPC health checks.
    ``stream``: a TCPRoute's or TLSRoute's (``TCP``: TCP connect health checks) or UDPRoute's (``UDP``: no active health
    checks, Envoy has no UDP health checker) backend: bytes or datagrams, no HTTP."""

    name: str
    weight: int
    valid: bool
    kind: Literal["Service", "ServiceImport", "Invalid"]
    localities: tuple[LocalityIR, ...] = ()
    failover: FailoverIR | None = None
    h2c: bool = False
    tls: UpstreamTlsIR | None = None
    grpc: bool = False
    stream: Literal["TCP", "UDP"] | None = None


class RouteIR(NamedTuple):
    """One match of one rule of one HTTPRoute, in precedence order within its virtual host."""

    name: str
    match: MatchIR
    backends: tuple[BackendIR, ...] = ()
    request_headers: HeaderOpsIR = NO_HEADER_OPS
    response_headers: HeaderOpsIR = NO_HEADER_OPS
    redirect: RedirectIR | None = None
    rewrite_hostname: str | None = None
    rewrite_path: PathRewriteIR | None = None
    mirrors: tuple[BackendIR, ...] = ()
    timeout: str | None = None
    backend_timeout: str | None = None
    retry_codes: tuple[int, ...] = ()
    retry_attempts: int | None = None
    retry_backoff: str | None = None
    failover_retry: RetryIR | None = None  # retries across priorities and hosts (ServiceImport backends)
    # The share of requests each mirror gets, (numerator, denominator) in the order of ``mirrors``; empty
    # when every mirror gets every request, the common case.
    mirror_fractions: tuple[tuple[int, int], ...] = ()
    # Each backend's own header filters, in the order of ``backends``; empty when no backendRef has any,
    # the common case.
    backend_headers: tuple[BackendHeadersIR, ...] = ()
    cors: CorsIR | None = None


class VirtualHostIR(NamedTuple):
    name: str
    hostname: str  # "*" for any
    routes: tuple[RouteIR, ...]


class TlsChainIR(NamedTuple):
    """One HTTPS Gateway listener: the SNI names it answers (empty: any) and the names of its certificates,
    which the Gateway's ``secrets`` carry. Names, not contents: a rotated certificate leaves the listener as it was.

    ``route_table`` names its own route table (one of the port's ``route_tables``) where HTTPS listeners
    share the port; empty, it uses the port's one table."""

    server_names: tuple[str, ...]
    certificates: tuple[str, ...]  # SecretIR names
    route_table: str = ""


class RouteTableIR(NamedTuple):
    """The route table of one HTTPS listener where several share a port: the port's virtual hosts that
    listener serves (by hostname), and the hostnames other listeners of the port serve (``*``: a listener
    without a hostname), which answer 421 Misdirected Request. A client that reused a connection whose SNI
    chose this listener for another listener's hostname (HTTP/2 connection coalescing) then retries on a
    connection of its own; a hostname no listener serves gets 404."""

    name: str
    hostnames: tuple[str, ...]
    misdirected: tuple[str, ...]


REDACTED = "[redacted]"


class SecretIR(NamedTuple):
    """A certificate chain and its private key (PEM), named after the Kubernetes Secret it comes from
    (``secret/<namespace>/<name>``), never after its content, so a rotation changes only this.

    Its ``repr`` and :func:`to_data` leave the key out: IR reaches logs, test failures and golden files."""

    name: str
    certificate_chain: str
    private_key: str

    def __repr__(self) -> str:
        return f"SecretIR(name={self.name!r}, certificate_chain=..., private_key={REDACTED!r})"


class TrustedCaIR(NamedTuple):
    """CA certificates (PEM) that client certificates are verified against, named after the Gateway
    configuration they come from (``client-ca/<namespace>/<gateway>/<default or port>``), never after their
    content, so a changed CA bundle changes only this."""

    name: str
    ca_certificates: str


class ClientValidationIR(NamedTuple):
    """How an HTTPS port verifies client certificates: against the ``trusted_ca`` bundle (a TrustedCaIR name);
    with ``allow_insecure_fallback``, a client without a certificate, or with one no CA here signed, is let
    through too."""

    trusted_ca: str
    allow_insecure_fallback: bool = False


class HTTPListenerIR(NamedTuple):
    """The Gateway listeners on one port that speak HTTP: plain, or HTTPS with TLS terminated here (one
    chain per Gateway listener, chosen by SNI). They share one Envoy listener and one route table, and so
    one client certificate validation (``client_validation``, None: none asked for)."""

    name: str
    port: int
    protocol: Literal["HTTP", "HTTPS"]
    virtual_hosts: tuple[VirtualHostIR, ...]
    tls: tuple[TlsChainIR, ...] = ()
    client_validation: ClientValidationIR | None = None
    # HTTPS listeners sharing the port: one route table each, in the order of ``tls``. Empty: one table for
    # the port, named after it, with every virtual host.
    route_tables: tuple[RouteTableIR, ...] = ()


class TLSRouteIR(NamedTuple):
    """TLS passed through untouched: connections whose SNI is one of ``server_names`` (empty: any) go to
    ``backends``, weighted."""

    name: str
    server_names: tuple[str, ...]
    backends: tuple[BackendIR, ...]


class TLSPassthroughListenerIR(NamedTuple):
    name: str
    port: int
    routes: tuple[TLSRouteIR, ...]


class TLSTerminateRouteIR(NamedTuple):
    """TLS terminated with ``certificates`` (SecretIR names, the Gateway's ``secrets`` carry them) for
    connections whose SNI is one of ``server_names`` (empty: any); the decrypted bytes go to ``backends``,
    weighted."""

    name: str
    server_names: tuple[str, ...]
    certificates: tuple[str, ...]
    backends: tuple[BackendIR, ...]


class TLSTerminateListenerIR(NamedTuple):
    """The TLS listeners of one port with ``tls.mode: Terminate``: every certificate they have (SecretIR
    names; each route names those of its listener) and their routes. A port may have a passthrough listener
    too (mixed modes): both become one Envoy listener, its filter chains chosen by SNI."""

    name: str
    port: int
    certificates: tuple[str, ...]
    routes: tuple[TLSTerminateRouteIR, ...]


class TCPListenerIR(NamedTuple):
    """Every connection on the port goes to ``backends``, weighted (the oldest route bound there wins)."""

    name: str
    port: int
    backends: tuple[BackendIR, ...]


class UDPListenerIR(NamedTuple):
    """Every datagram session on the port goes to ``backends``, weighted (the oldest route bound there wins).
    Named ``<ns>/<gateway>/<port>/udp``: a TCP-family listener may have the same port number."""

    name: str
    port: int
    backends: tuple[BackendIR, ...]


# Envoy's access log sampling denominator: a share is given in parts per million.
PER_MILLION = 1_000_000


class AccessLogIR(NamedTuple):
    """A Gateway's access log: every Envoy writes one line per HTTP request, TCP or TLS connection and UDP
    session to its stdout, as JSON or text, for ``sampled_per_million`` of them (chosen at random)."""

    format: Literal["json", "text"] = "json"
    sampled_per_million: int = PER_MILLION


DEFAULT_ACCESS_LOG = AccessLogIR()


class GatewayIR(NamedTuple):
    """One Gateway's listeners by kind, as Envoy needs them apart: HTTP ones carry route tables, the
    others forward connections (TLS passthrough by SNI) or datagrams."""

    cluster: str
    namespace: str
    name: str
    address: str
    http: tuple[HTTPListenerIR, ...]
    tls_passthrough: tuple[TLSPassthroughListenerIR, ...] = ()
    tcp: tuple[TCPListenerIR, ...] = ()
    udp: tuple[UDPListenerIR, ...] = ()
    secrets: tuple[SecretIR, ...] = ()  # what the TLS chains and the client certificate name, sorted by name
    trusted_cas: tuple[TrustedCaIR, ...] = ()  # what the client validations name, sorted by name
    # The SecretIR name of the certificate presented to every backend reached over TLS (spec.tls.backend).
    client_certificate: str | None = None
    tls_terminate: tuple[TLSTerminateListenerIR, ...] = ()
    access_log: AccessLogIR | None = DEFAULT_ACCESS_LOG  # None: the Gateway's parameters turn it off


def to_data(value: Any, *, private_keys: bool = False) -> Any:
    """IR as plain dicts and lists (field order kept), for golden files and debugging. Private keys are
    replaced by ``[redacted]`` unless ``private_keys`` asks for them (to write IR that can be read back)."""
    if isinstance(value, tuple):
        if hasattr(value, "_fields"):
            if isinstance(value, SecretIR) and not private_keys:
                value = value._replace(private_key=REDACTED)
            return {name: to_data(item, private_keys=private_keys)
                    for name, item in zip(value._fields, value, strict=True)}
        return [to_data(item, private_keys=private_keys) for item in value]
    return value


_T = TypeVar("_T")
_hints: dict[type, dict[str, Any]] = {}


def _field_types(kind: type) -> dict[str, Any]:
    found = _hints.get(kind)
    if found is None:
        found = _hints[kind] = get_type_hints(kind)
    return found


def _read(kind: Any, data: Any, where: str) -> Any:
    origin = get_origin(kind)
    if origin is Literal:
        if data not in get_args(kind):
            raise ValueError(f"{where}: {data!r} is not one of {', '.join(map(repr, get_args(kind)))}")
        return data
    if origin is Union or origin is types.UnionType:
        options = get_args(kind)
        if data is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _read(option, data, where)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError("; ".join(errors))
    if origin is tuple:
        args = get_args(kind)
        if not isinstance(data, list | tuple):
            raise ValueError(f"{where}: expected a list, got {data!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_read(args[0], item, f"{where}[{i}]") for i, item in enumerate(data))
        if len(data) != len(args):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(data)}")
        return tuple(_read(arg, item, f"{where}[{i}]") for i, (arg, item) in enumerate(zip(args, data, strict=True)))
    if isinstance(kind, type) and issubclass(kind, tuple) and hasattr(kind, "_fields"):
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a mapping for {kind.__name__}, got {data!r}")
        unknown = set(data) - set(kind._fields)
        if unknown:
            raise ValueError(f"{where}: {kind.__name__} has no field {', '.join(sorted(unknown))}")
        defaults: dict[str, Any] = getattr(kind, "_field_defaults", {})
        values = {}
        for name, field_type in _field_types(kind).items():
            if name in data:
                values[name] = _read(field_type, data[name], f"{where}.{name}")
            elif name not in defaults:
                raise ValueError(f"{where}: {kind.__name__} needs {name}")
        value = kind(**values)
        if kind is HeaderOpsIR and value == NO_HEADER_OPS:
            return NO_HEADER_OPS
        return NO_BACKEND_HEADERS if kind is BackendHeadersIR and value == NO_BACKEND_HEADERS else value
    if kind is int and (not isinstance(data, int) or isinstance(data, bool)):
        raise ValueError(f"{where}: expected an integer, got {data!r}")
    if kind in (str, bool) and not isinstance(data, kind):
        raise ValueError(f"{where}: expected {kind.__name__}, got {data!r}")
    return data


def from_data(kind: type[_T], data: Any) -> _T:
    """The inverse of :func:`to_data`: IR of type ``kind`` from plain data (fields with a default may be
    left out). Empty header operations come back as :data:`NO_HEADER_OPS`, as the builders make them."""
    result: _T = _read(kind, data, kind.__name__)
    return result


class InvalidIRError(ValueError):
    """The IR breaks an invariant that the translator relies on."""


Listener = HTTPListenerIR | TLSPassthroughListenerIR | TLSTerminateListenerIR | TCPListenerIR | UDPListenerIR


def _duplicates(values: Iterable[Any]) -> list[Any]:
    seen: set[Any] = set()
    repeated: dict[Any, None] = {}
    for value in values:
        if value in seen:
            repeated[value] = None
        seen.add(value)
    return list(repeated)


def _backend_problems(backend: BackendIR, where: str) -> list[str]:
    problems = []
    if backend.weight < 0:
        problems.append(f"{where}: backend {backend.name!r} has a negative weight")
    elif backend.weight > MAX_WEIGHT:
        problems.append(f"{where}: backend {backend.name!r} has weight {backend.weight}, over {MAX_WEIGHT}")
    if backend.valid:
        if not backend.name or backend.kind == "Invalid":
            problems.append(f"{where}: a valid backend needs a cluster name and kind Service or ServiceImport, "
                            f"got {backend.name!r} of kind {backend.kind}")
        if backend.failover is not None and backend.kind != "ServiceImport":
            problems.append(f"{where}: backend {backend.name!r}: only ServiceImport backends fail over")
    elif (backend.kind != "Invalid" or backend.localities or backend.failover is not None or backend.h2c
          or backend.tls is not None or backend.grpc or backend.stream is not None):
        problems.append(f"{where}: invalid backend {backend.name!r} must be of kind Invalid, without endpoints")
    priorities = sorted({locality.priority for locality in backend.localities})
    if priorities != list(range(len(priorities))):
        problems.append(f"{where}: backend {backend.name!r} has priorities {priorities}, not contiguous from 0")
    return problems


def _cluster_contents(backend: BackendIR) -> tuple[object, ...]:
    """What a backend's Envoy cluster is made of (its weight belongs to the route)."""
    return (backend.kind, backend.localities, backend.failover, backend.h2c, backend.tls, backend.grpc,
            backend.stream)


def _listener_routes(listener: Listener) -> Iterable[tuple[str, tuple[BackendIR, ...]]]:
    """(where, backends) of every backend list that a listener's traffic may reach."""
    if isinstance(listener, HTTPListenerIR):
        for vhost in listener.virtual_hosts:
            for route in vhost.routes:
                where = f"route {route.name} of {vhost.name}"
                yield where, route.backends
                yield where, route.mirrors
    elif isinstance(listener, TLSPassthroughListenerIR | TLSTerminateListenerIR):
        for tls_route in listener.routes:
            yield f"route {tls_route.name} of {listener.name}", tls_route.backends
    else:
        yield f"listener {listener.name}", listener.backends


def _http_problems(listener: HTTPListenerIR) -> list[str]:
    problems = []
    if listener.protocol == "HTTP" and listener.tls:
        problems.append(f"listener {listener.name}: HTTP, yet it has TLS chains")
    if listener.protocol == "HTTP" and listener.client_validation is not None:
        problems.append(f"listener {listener.name}: HTTP, yet it validates client certificates")
    if listener.protocol == "HTTPS":
        if not listener.tls:
            problems.append(f"listener {listener.name}: HTTPS without a TLS chain")
        problems += [f"listener {listener.name}: a TLS chain without certificates"
                     for chain in listener.tls if not chain.certificates]
        problems += [f"listener {listener.name}: a TLS chain names certificate {name!r} twice"
                     for chain in listener.tls for name in _duplicates(chain.certificates)]
        names = [name for chain in listener.tls for name in (chain.server_names or ("*any*",))]
        problems += [f"listener {listener.name}: SNI {name} chooses more than one TLS chain"
                     for name in _duplicates(names)]
    problems += _route_table_problems(listener)
    problems += [f"listener {listener.name}: virtual host name {name} repeated"
                 for name in _duplicates(v.name for v in listener.virtual_hosts)]
    problems += [f"listener {listener.name}: hostname {hostname} in more than one virtual host"
                 for hostname in _duplicates(v.hostname for v in listener.virtual_hosts)]
    for vhost in listener.virtual_hosts:
        problems += [f"virtual host {vhost.name}: route name {name} repeated"
                     for name in _duplicates(r.name for r in vhost.routes)]
        problems += [f"route {route.name} of {vhost.name}: mirror fractions {list(route.mirror_fractions)} are not "
                     f"one share of at most 1 per mirror" for route in vhost.routes
                     if route.mirror_fractions and not _shares(route)]
        problems += [f"route {route.name} of {vhost.name}: {len(route.backend_headers)} backend header filters for "
                     f"{len(route.backends)} backends" for route in vhost.routes
                     if route.backend_headers and len(route.backend_headers) != len(route.backends)]
    return problems


def _route_table_problems(listener: HTTPListenerIR) -> list[str]:
    """Per-listener route tables: one per TLS chain, named by it; each virtual host in at most one of them, and
    no table answering 421 for a hostname it serves."""
    tables = listener.route_tables
    where = f"listener {listener.name}"
    if not tables:
        return [f"{where}: a TLS chain names route table {chain.route_table!r}, but the port has one table"
                for chain in listener.tls if chain.route_table]
    problems = [] if listener.protocol == "HTTPS" else [f"{where}: per-listener route tables on HTTP"]
    if [chain.route_table for chain in listener.tls] != [table.name for table in tables]:
        problems.append(f"{where}: route tables {[t.name for t in tables]} are not the TLS chains' "
                        f"{[c.route_table for c in listener.tls]}")
    problems += [f"{where}: route table {name} repeated" for name in _duplicates(t.name for t in tables)]
    known = {vhost.hostname for vhost in listener.virtual_hosts}
    problems += [f"{where}: route table {table.name} serves hostname {hostname}, which has no virtual host"
                 for table in tables for hostname in table.hostnames if hostname not in known]
    problems += [f"{where}: hostname {hostname} in more than one route table"
                 for hostname in _duplicates(h for table in tables for h in table.hostnames)]
    for table in tables:
        problems += [f"{where}: route table {table.name} answers 421 for {hostname} twice"
                     for hostname in _duplicates(table.misdirected)]
        problems += [f"{where}: route table {table.name} both serves {hostname} and answers 421 for it"
                     for hostname in sorted(set(table.hostnames) & set(table.misdirected))]
    return problems


def _secret_problems(gateway: GatewayIR) -> list[str]:
    """Secrets are exactly those the TLS chains and the client certificate name: a Gateway's Envoys get no
    private key it does not name."""
    names = [secret.name for secret in gateway.secrets]
    problems = [f"secret {name} repeated" for name in _duplicates(names)]
    if names != sorted(names):
        problems.append("secrets not sorted by name")
    problems += [f"secret {secret.name}: no certificate chain or no private key" for secret in gateway.secrets
                 if not secret.certificate_chain or not secret.private_key]
    named = {name for listener in gateway.http for chain in listener.tls for name in chain.certificates}
    named |= {name for listener in gateway.tls_terminate for name in listener.certificates}
    problems += [f"certificate {name} named by a TLS chain but not among the secrets"
                 for name in sorted(named - set(names))]
    if gateway.client_certificate is not None:
        if gateway.client_certificate not in names:
            problems.append(f"client certificate {gateway.client_certificate} not among the secrets")
        named.add(gateway.client_certificate)
    problems += [f"secret {name} named by no TLS chain nor as the client certificate"
                 for name in sorted(set(names) - named)]
    cas = [ca.name for ca in gateway.trusted_cas]
    problems += [f"trusted CA {name} repeated" for name in _duplicates(cas)]
    if cas != sorted(cas):
        problems.append("trusted CAs not sorted by name")
    problems += [f"trusted CA {ca.name}: no CA certificates" for ca in gateway.trusted_cas if not ca.ca_certificates]
    trusted = {listener.client_validation.trusted_ca for listener in gateway.http
               if listener.client_validation is not None}
    problems += [f"trusted CA {name} named by a client validation but not among the trusted CAs"
                 for name in sorted(trusted - set(cas))]
    problems += [f"trusted CA {name} named by no client validation" for name in sorted(set(cas) - trusted)]
    return problems


def _shares(route: RouteIR) -> bool:
    return len(route.mirror_fractions) == len(route.mirrors) and all(
        d >= 1 and 0 <= n <= d for n, d in route.mirror_fractions)


def _passthrough_problems(listener: TLSPassthroughListenerIR | TLSTerminateListenerIR) -> list[str]:
    problems = [f"listener {listener.name}: route name {name} repeated"
                for name in _duplicates(r.name for r in listener.routes)]
    if isinstance(listener, TLSTerminateListenerIR):
        problems += [f"listener {listener.name}: route {route.name} terminates TLS without certificates"
                     for route in listener.routes if not route.certificates]
        problems += [f"listener {listener.name}: route {route.name} names certificate {name}, not the listener's"
                     for route in listener.routes for name in route.certificates if name not in listener.certificates]
    return problems


def _sni_problems(gateway: GatewayIR) -> list[str]:
    """Per port, every SNI name (or "any") chooses one route of the TLS listeners there, whatever their mode."""
    by_port: dict[int, list[str]] = {}
    tls: list[TLSPassthroughListenerIR | TLSTerminateListenerIR] = [*gateway.tls_passthrough, *gateway.tls_terminate]
    for listener in tls:
        by_port.setdefault(listener.port, []).extend(
            name for route in listener.routes for name in (route.server_names or ("*any*",)))
    return [f"port {port}: SNI {name} chooses more than one TLS route"
            for port, names in sorted(by_port.items()) for name in _duplicates(names)]


# The Gateway API's bound on a backendRef weight; at most 16 backends per rule keep the sum within uint32.
MAX_WEIGHT = 1_000_000


def validate(gateway: GatewayIR) -> None:
    """Check the invariants the translator relies on; :class:`InvalidIRError` lists every one broken.

    Listener names are unique in the Gateway; a port has at most one HTTP, HTTPS, TLS or TCP listener
    (a UDP listener may share its number; TLS passthrough and terminate listeners of one port count as one,
    every SNI name there choosing one route of either, and a terminate route naming only its listener's
    certificates); an HTTP listener has TLS chains exactly when it is HTTPS,
    each with certificates and no SNI name choosing two of them, and per-listener route tables (if any) one
    per chain, named by it, none serving a hostname another serves or that it answers 421 for; the
    Gateway's secrets are exactly the certificates its chains and its client certificate name, sorted,
    each with a chain and a key, and its trusted CAs exactly the ones its HTTPS listeners' client
    validations name, sorted, none empty; virtual host names and hostnames are unique per listener, route
    names per virtual host (TLS routes: per listener, SNI names too); a route's mirror fractions, if any,
    are one share of at most 1 per mirror, and its backend header filters, if any, one per backend. Every
    backend a route reaches is usable (a cluster name, kind Service or ServiceImport; only ServiceImport
    fails over) or marked unusable (``valid`` False, kind Invalid, nothing else); its locality priorities
    run from 0 without gaps; and backends that name the same Envoy cluster agree on what it holds. An access
    log samples between none and all (0 to 1,000,000 per million).
    """
    listeners: list[Listener] = [*gateway.http, *gateway.tls_passthrough, *gateway.tls_terminate, *gateway.tcp,
                                 *gateway.udp]
    problems = [f"listener name {name} repeated" for name in _duplicates(item.name for item in listeners)]
    problems += [f"listener {item.name}: port {item.port} out of range" for item in listeners
                 if not 0 < item.port < 65536]
    # A port's TLS listeners of both modes make one Envoy listener, so they count once.
    tls: list[TLSPassthroughListenerIR | TLSTerminateListenerIR] = [*gateway.tls_passthrough, *gateway.tls_terminate]
    stream_ports = [item.port for item in gateway.http] + [item.port for item in gateway.tcp] \
        + sorted({item.port for item in tls})
    problems += [f"port {port} has more than one TCP listener" for port in _duplicates(stream_ports)]
    problems += [f"port {port} has more than one TLS {mode} listener"
                 for mode, group in (("passthrough", gateway.tls_passthrough), ("terminate", gateway.tls_terminate))
                 for port in _duplicates(item.port for item in group)]
    problems += [f"port {port} has more than one UDP listener" for port in _duplicates(u.port for u in gateway.udp)]
    for listener in gateway.http:
        problems += _http_problems(listener)
    for passthrough in tls:
        problems += _passthrough_problems(passthrough)
    problems += _sni_problems(gateway)
    problems += _secret_problems(gateway)
    if gateway.access_log is not None and not 0 <= gateway.access_log.sampled_per_million <= PER_MILLION:
        problems.append(f"access log samples {gateway.access_log.sampled_per_million} per million, not 0 to "
                        f"{PER_MILLION}")
    clusters: dict[str, BackendIR] = {}
    for item in listeners:
        for where, backends in _listener_routes(item):
            for backend in backends:
                problems += _backend_problems(backend, where)
                if not backend.valid:
                    continue
                known = clusters.setdefault(backend.name, backend)
                if known is not backend and _cluster_contents(known) != _cluster_contents(backend):
                    problems.append(f"{where}: backend {backend.name!r} differs from another backend of that "
                                    "cluster in kind, endpoints, failover or protocol")
    if problems:
        raise InvalidIRError(f"gateway {gateway.namespace}/{gateway.name}: " + "; ".join(problems))
