"""The IR: what the Gateway API and MCS semantics decided, in the shape the Envoy translator reads.

``types`` holds the IR itself; ``build`` turns evaluated Gateways and routes into it.
``from mcgw import ir`` gives the types.
"""

from .types import (
    NO_HEADER_OPS,
    BackendIR,
    EndpointIR,
    FailoverIR,
    GatewayIR,
    HeaderOpsIR,
    HealthCheckIR,
    LocalityIR,
    MatchIR,
    OutlierIR,
    PathRewriteIR,
    PathType,
    PortIR,
    RedirectIR,
    RetryIR,
    RouteIR,
    StringMatchIR,
    TlsChainIR,
    VirtualHostIR,
    to_data,
)

__all__ = [
    "NO_HEADER_OPS",
    "BackendIR",
    "EndpointIR",
    "FailoverIR",
    "GatewayIR",
    "HeaderOpsIR",
    "HealthCheckIR",
    "LocalityIR",
    "MatchIR",
    "OutlierIR",
    "PathRewriteIR",
    "PathType",
    "PortIR",
    "RedirectIR",
    "RetryIR",
    "RouteIR",
    "StringMatchIR",
    "TlsChainIR",
    "VirtualHostIR",
    "to_data",
]
