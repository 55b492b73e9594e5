"""TCP and UDP listener IR → Envoy ``Listener``: one per Gateway port, forwarding connections or datagrams.

A TCP listener runs ``tcp_proxy``: one cluster, or ``weighted_clusters`` across the route's backendRefs
(a connection picks one by weight). When a backend is a ServiceImport that fails over, a failed connect
is tried again (``max_connect_attempts``, with a short backoff so that the first failure's outlier
ejection reaches the load balancer first), so a refused or timed-out connect goes on to the next healthy
priority instead of failing the client. Nothing can move a connection that was already open when its
backend died: it is closed.

A UDP listener runs the ``udp_proxy`` listener filter: a session (a client's source address and port)
goes to one cluster; across several backendRefs a matcher hashes the session's source port and takes
the backend whose share of the total weight the hash falls into (``consistent_hashing``), so weights
hold across sessions and one session stays on one backend.

An unusable backend (``valid`` False) is named by a cluster that does not exist: Envoy accepts the
configuration and closes (drops) what its share gets, as an HTTP route answers 500. A listener with no
backend weight at all gets no Envoy listener: connections are refused, datagrams dropped.

Each connection is written to the Gateway's access log (if it has one) when it closes, each UDP session
when it ends (:mod:`.accesslog`).
"""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.filters.udp.udp_proxy.v3 import route_pb2 as udp_route_pb2
from envoy.extensions.filters.udp.udp_proxy.v3 import udp_proxy_pb2
from envoy.extensions.matching.common_inputs.network.v3 import network_inputs_pb2
from envoy.extensions.matching.input_matchers.consistent_hashing.v3 import consistent_hashing_pb2

from mcgw import ir
from mcgw.translate.accesslog import Kind, access_logs
from mcgw.translate.listeners import pack

TCP_PROXY = "envoy.filters.network.tcp_proxy"
UDP_PROXY = "envoy.filters.udp_listener.udp_proxy"
# Between connect attempts: without a pause, every attempt can reach the refusing host again before its
# ejection (decided on Envoy's main thread) reaches the worker that retries.
_RETRY_BACKOFF = {"base_interval": {"nanos": 25_000_000}, "max_interval": {"nanos": 250_000_000}}
# A UDP session without datagrams for this long is forgotten (Envoy's default is 60 s).
_UDP_IDLE_TIMEOUT = {"seconds": 60}


def weighted(backends: tuple[ir.BackendIR, ...]) -> list[ir.BackendIR]:
    """The backends that get a share (weight 0 gets none, and Envoy refuses a weight of 0)."""
    return [backend for backend in backends if backend.weight > 0]


def connect_attempts(backends: tuple[ir.BackendIR, ...]) -> int:
    """1, or with a failing-over ServiceImport backend its retry attempts plus the first try."""
    retries = [backend.failover.retry.attempts for backend in backends
               if backend.valid and backend.failover is not None and backend.failover.retry is not None]
    return 1 + max(retries, default=0)


def _stat_prefix(name: str) -> str:
    return name.replace("/", "_")


def tcp_proxy(name: str, backends: tuple[ir.BackendIR, ...], access_log: ir.AccessLogIR | None = None,
              listener: str = "", kind: Kind = "TCP") -> dict[str, Any]:
    """The ``tcp_proxy`` filter of a TCP listener or a TLS filter chain (``name``): one cluster, or weighted
    clusters; none with a share: a cluster that does not exist (``<name>/no-backend``), so connections close.
    Connections are logged to ``access_log`` as ``listener``'s; a TLS chain's lines also name its route."""
    shares = weighted(backends)
    fields: dict[str, Any] = {"stat_prefix": _stat_prefix(name),
                              "access_log": access_logs(access_log, kind, listener or name,
                                                        name if kind == "TLS" else "")}
    if len(shares) == 1:
        fields["cluster"] = shares[0].name
    elif not shares:
        fields["cluster"] = f"{name}/no-backend"
    else:
        fields["weighted_clusters"] = {"clusters": [{"name": b.name, "weight": b.weight} for b in shares]}
    attempts = connect_attempts(backends)
    if attempts > 1:
        fields["max_connect_attempts"] = {"value": attempts}
        fields["backoff_options"] = _RETRY_BACKOFF
    return {"name": TCP_PROXY, "typed_config": pack(tcp_proxy_pb2.TcpProxy(**fields))}


def tcp_listener(address: str, item: ir.TCPListenerIR,
                 access_log: ir.AccessLogIR | None = None) -> listener_pb2.Listener | None:
    """The Envoy listener of one TCP Gateway listener; None when no backend has a share."""
    if not weighted(item.backends):
        return None
    return listener_pb2.Listener(
        name=item.name, address={"socket_address": {"address": address, "port_value": item.port}},
        filter_chains=[{"filters": [tcp_proxy(item.name, item.backends, access_log)]}])


def _udp_action(backend: ir.BackendIR) -> dict[str, Any]:
    return {"action": {"name": "route", "typed_config": pack(udp_route_pb2.Route(cluster=backend.name))}}


def _udp_matcher(backends: list[ir.BackendIR]) -> dict[str, Any]:
    """Every session to the one backend, or by the hash of its source port to a share of the total weight:
    backend i takes the hashes in [total - (w1 + … + wi), total - (w1 + … + wi-1)), the last one the rest."""
    if len(backends) == 1:
        return {"on_no_match": _udp_action(backends[0])}
    total = sum(backend.weight for backend in backends)
    source_port = {"name": "source_port", "typed_config": pack(network_inputs_pb2.SourcePortInput())}
    matchers = []
    threshold = total
    for backend in backends[:-1]:
        threshold -= backend.weight
        hashing = consistent_hashing_pb2.ConsistentHashing(threshold=threshold, modulo=total)
        matchers.append({"predicate": {"single_predicate": {
            "input": source_port,
            "custom_match": {"name": "weight", "typed_config": pack(hashing)}}},
            "on_match": _udp_action(backend)})
    return {"matcher_list": {"matchers": matchers}, "on_no_match": _udp_action(backends[-1])}


def udp_listener(address: str, item: ir.UDPListenerIR,
                 access_log: ir.AccessLogIR | None = None) -> listener_pb2.Listener | None:
    """The Envoy listener of one UDP Gateway listener; None when no backend has a share."""
    backends = weighted(item.backends)
    if not backends:
        return None
    proxy = udp_proxy_pb2.UdpProxyConfig(stat_prefix=_stat_prefix(item.name), matcher=_udp_matcher(backends),
                                         idle_timeout=_UDP_IDLE_TIMEOUT,
                                         access_log=access_logs(access_log, "UDP", item.name))
    return listener_pb2.Listener(
        name=item.name,
        address={"socket_address": {"protocol": "UDP", "address": address, "port_value": item.port}},
        udp_listener_config={},
        listener_filters=[{"name": UDP_PROXY, "typed_config": pack(proxy)}])


def stream_shape(address: str, item: ir.TCPListenerIR | ir.UDPListenerIR,
                 access_log: ir.AccessLogIR | None = None) -> tuple[object, ...]:
    """What the Envoy listener is made of: its backends' names, weights and retries (not their endpoints), and
    its access log."""
    return (address, type(item).__name__, item.name, item.port,
            tuple([(b.name, b.weight, b.valid) for b in item.backends]), connect_attempts(item.backends), access_log)


def stream_clusters(item: ir.TCPListenerIR | ir.UDPListenerIR) -> list[ir.BackendIR]:
    """The usable backends the listener sends to, each needing its cluster."""
    return [backend for backend in weighted(item.backends) if backend.valid]
