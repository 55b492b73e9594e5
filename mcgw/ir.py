"""The intermediate representation between Gateway API semantics and Envoy translation.

Everything here is already decided: attachment, precedence order, resolved backends, endpoints.
The translator reads only this, never Kubernetes objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PathType = Literal["Exact", "PathPrefix", "RegularExpression"]


@dataclass(frozen=True)
class StringMatchIR:
    name: str
    value: str
    regex: bool = False


@dataclass(frozen=True)
class MatchIR:
    path_type: PathType
    path: str
    headers: tuple[StringMatchIR, ...] = ()
    query_params: tuple[StringMatchIR, ...] = ()
    method: str | None = None


@dataclass(frozen=True)
class HeaderOpsIR:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class PathRewriteIR:
    full_path: str | None = None
    prefix: str | None = None  # replaces the matched prefix


@dataclass(frozen=True)
class RedirectIR:
    scheme: str | None
    hostname: str | None
    port: int | None
    path: PathRewriteIR | None
    status_code: int


@dataclass(frozen=True)
class EndpointIR:
    address: str
    port: int
    health: Literal["HEALTHY", "DRAINING"]


@dataclass(frozen=True)
class LocalityIR:
    """Endpoints of one source cluster; ``priority`` 0 is the most preferred."""

    cluster: str
    priority: int
    endpoints: tuple[EndpointIR, ...]
    region: str = ""
    zone: str = ""


@dataclass(frozen=True)
class BackendIR:
    """One backendRef. ``name`` is the Envoy cluster; ``valid`` False means its share answers 500."""

    name: str
    weight: int
    valid: bool
    kind: Literal["Service", "ServiceImport", "Invalid"]
    localities: tuple[LocalityIR, ...] = ()


@dataclass(frozen=True)
class RouteIR:
    """One match of one rule of one HTTPRoute, in precedence order within its virtual host."""

    name: str
    match: MatchIR
    backends: tuple[BackendIR, ...] = ()
    request_headers: HeaderOpsIR = HeaderOpsIR()
    response_headers: HeaderOpsIR = HeaderOpsIR()
    redirect: RedirectIR | None = None
    rewrite_hostname: str | None = None
    rewrite_path: PathRewriteIR | None = None
    mirrors: tuple[BackendIR, ...] = ()
    timeout: str | None = None
    backend_timeout: str | None = None
    retry_codes: tuple[int, ...] = ()
    retry_attempts: int | None = None
    retry_backoff: str | None = None


@dataclass(frozen=True)
class VirtualHostIR:
    name: str
    hostname: str  # "*" for any
    routes: tuple[RouteIR, ...]


@dataclass(frozen=True)
class TlsChainIR:
    """One HTTPS Gateway listener: the SNI names it answers (empty: any) and its certificates (PEM)."""

    server_names: tuple[str, ...]
    certificates: tuple[tuple[str, str], ...]  # (certificate chain, private key)


@dataclass(frozen=True)
class PortIR:
    """All Gateway listeners on one port share one Envoy listener (and, for HTTPS, one chain each)."""

    name: str
    port: int
    protocol: Literal["HTTP", "HTTPS"]
    virtual_hosts: tuple[VirtualHostIR, ...]
    tls: tuple[TlsChainIR, ...] = ()


@dataclass(frozen=True)
class GatewayIR:
    cluster: str
    namespace: str
    name: str
    address: str
    ports: tuple[PortIR, ...]
