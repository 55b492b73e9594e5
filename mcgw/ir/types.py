"""The intermediate representation between Gateway API semantics and Envoy translation.

Everything here is already decided: attachment, precedence order, resolved backends, endpoints.
The translator reads only this, never Kubernetes objects.

The types are named tuples: immutable (outputs are shared between translations, so nothing may
change them), and about four times cheaper to build than frozen dataclasses, which matters at
thousands of routes. :func:`to_data` renders any of them as plain data.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from mcgw.semantics.endpoints import Endpoint
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


class PathRewriteIR(NamedTuple):
    full_path: str | None = None
    prefix: str | None = None  # replaces the matched prefix


class RedirectIR(NamedTuple):
    scheme: str | None
    hostname: str | None
    port: int | None
    path: PathRewriteIR | None
    status_code: int


# Endpoints pass from the semantics into the IR unchanged (the same objects, shared).
EndpointIR = Endpoint


class LocalityIR(NamedTuple):
    """Endpoints of one source cluster; ``priority`` 0 is the most preferred."""

    cluster: str
    priority: int
    endpoints: tuple[EndpointIR, ...]
    region: str = ""
    zone: str = ""


# A ServiceImport backend's failover settings pass from the policy semantics into the IR unchanged.
HealthCheckIR = HealthCheckSettings
OutlierIR = OutlierSettings
RetryIR = RetrySettings
FailoverIR = FailoverSettings


class BackendIR(NamedTuple):
    """One backendRef. ``name`` is the Envoy cluster; ``valid`` False means its share answers 500.

    ``failover`` is set for ServiceImport backends (their localities carry one priority per level)."""

    name: str
    weight: int
    valid: bool
    kind: Literal["Service", "ServiceImport", "Invalid"]
    localities: tuple[LocalityIR, ...] = ()
    failover: FailoverIR | None = None


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


class VirtualHostIR(NamedTuple):
    name: str
    hostname: str  # "*" for any
    routes: tuple[RouteIR, ...]


class TlsChainIR(NamedTuple):
    """One HTTPS Gateway listener: the SNI names it answers (empty: any) and its certificates (PEM)."""

    server_names: tuple[str, ...]
    certificates: tuple[tuple[str, str], ...]  # (certificate chain, private key)


class PortIR(NamedTuple):
    """All Gateway listeners on one port share one Envoy listener (and, for HTTPS, one chain each)."""

    name: str
    port: int
    protocol: Literal["HTTP", "HTTPS"]
    virtual_hosts: tuple[VirtualHostIR, ...]
    tls: tuple[TlsChainIR, ...] = ()


class GatewayIR(NamedTuple):
    cluster: str
    namespace: str
    name: str
    address: str
    ports: tuple[PortIR, ...]


def to_data(value: Any) -> Any:
    """IR as plain dicts and lists (field order kept), for golden files and debugging."""
    if isinstance(value, tuple):
        if hasattr(value, "_fields"):
            return {name: to_data(item) for name, item in zip(value._fields, value, strict=True)}
        return [to_data(item) for item in value]
    return value
