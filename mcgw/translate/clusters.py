"""Backend IR → Envoy ``Cluster`` (EDS over ADS) and its ``ClusterLoadAssignment``.

A locality per source cluster, with its failover ``priority``; localities without endpoints are
left out. A cluster with no endpoints at all is valid and answers 503.

A ServiceImport backend's cluster carries its failover settings (docs/failover.md): active HTTP
health checks that also probe idle priorities, outlier detection allowed to eject every host, no
panic routing (a dead priority is never used), a retry budget instead of the circuit breaker's
3 concurrent retries, and an overprovisioning factor that makes each priority all-or-nothing.

An h2c backend's cluster speaks HTTP/2 with prior knowledge (its health checks too); every other one
HTTP/1.1, Envoy's default, whatever the client spoke. A gRPC backend (a GRPCRoute's) speaks HTTP/2 too,
offers ALPN h2 when it is reached over TLS, and is health-checked with ``grpc.health.v1``. A TCPRoute's or TLSRoute's
backend is health-checked by connecting; a UDPRoute's is not checked at all (Envoy has no UDP checker).

A backend with a BackendTLSPolicy gets a TLS transport socket (health checks use it too): SNI, the CA
bundle inline (CA certificates are public), or the data plane's system trust store, and the SANs the
certificate must have. A handshake that fails validation fails the request; nothing is sent in plaintext.
The Gateway's client certificate (``spec.tls.backend``), if any, comes by SDS name like a listener's.
"""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from mcgw import ir
from mcgw.translate.listeners import ADS, pack

_CONNECT_TIMEOUT = {"seconds": 5}
_FAILOVER_CONNECT_TIMEOUT = {"nanos": 250_000_000}  # a refused or unroutable host is known within a quarter second
# Envoy's overprovisioning factor is in percent: 140 (1.4) is its default; a huge one keeps all traffic
# on a priority while it has a single healthy host, so failover is all-or-nothing.
ALL_OR_NOTHING_OVERPROVISIONING = 100_000
SPILLOVER_OVERPROVISIONING = 140
# Retries are what carries requests across a failover; never let the default 3 concurrent retries cap them.
_RETRY_BUDGET = {"thresholds": [{"retry_budget": {"budget_percent": {"value": 100.0},
                                                  "min_retry_concurrency": {"value": 1000}}}]}


def overprovisioning_factor(settings: ir.FailoverIR) -> int:
    """A level's health is min(100 %, factor x its healthy share): with the factor 100 / minHealthyPercent, it keeps
    all its traffic down to that share, then the next level gets the capacity lost below it."""
    if settings.all_or_nothing:
        return ALL_OR_NOTHING_OVERPROVISIONING
    if settings.min_healthy_percent is None:
        return SPILLOVER_OVERPROVISIONING
    return round(10_000 / settings.min_healthy_percent)


def _ms(value: int) -> dict[str, int]:
    return {"seconds": value // 1000, "nanos": value % 1000 * 1_000_000}


_HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# Packed once: every h2c cluster carries the same options.
_H2C_OPTIONS = {_HTTP_PROTOCOL_OPTIONS: pack(http_protocol_options_pb2.HttpProtocolOptions(
    explicit_http_config={"http2_protocol_options": {}}))}


def _failover_fields(failover: ir.FailoverIR, h2c: bool, grpc: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "connect_timeout": _FAILOVER_CONNECT_TIMEOUT,
        # Panic 0: a dead priority is never used. Merge window 0: a health change (check, ejection) reaches
        # the load balancer at once instead of up to 1 s later, which made failback 1 s slower.
        "common_lb_config": {"healthy_panic_threshold": {"value": 0.0}, "update_merge_window": {}},
        "circuit_breakers": _RETRY_BUDGET,
        # An endpoint mcgw withdraws (excluded by a policy, past maxLevels, not ready) leaves at once: by default
        # Envoy keeps a removed host while its active health check still passes, which would keep sending
        # traffic to a cluster a data-residency policy just excluded.
        "ignore_health_on_host_removal": True,
    }
    if failover.locality_weighted():  # every locality then carries a weight (load_assignment)
        fields["common_lb_config"]["locality_weighted_lb_config"] = {}
    check = failover.health_check
    if check is not None:
        fields["health_checks"] = [{
            "timeout": _ms(check.timeout_ms), "interval": _ms(check.interval_ms),
            "no_traffic_interval": _ms(check.no_traffic_interval_ms),
            "unhealthy_threshold": {"value": check.unhealthy_threshold},
            "healthy_threshold": {"value": check.healthy_threshold},
        }]
        if grpc:  # the server's overall health (service ""), as grpc.health.v1 defines it
            fields["health_checks"][0]["grpc_health_check"] = {}
        else:  # an h2c backend may refuse HTTP/1.1, probes included
            fields["health_checks"][0]["http_health_check"] = {
                "path": check.path, "codec_client_type": "HTTP2" if h2c else "HTTP1"}
    outlier = failover.outlier
    if outlier is not None:
        fields["outlier_detection"] = {
            "consecutive_5xx": {"value": outlier.consecutive_failures},
            "consecutive_gateway_failure": {"value": outlier.consecutive_failures},
            "enforcing_consecutive_gateway_failure": {"value": 100},
            "consecutive_local_origin_failure": {"value": outlier.consecutive_failures},
            "enforcing_consecutive_local_origin_failure": {"value": 100},
            "split_external_local_origin_errors": True,
            "interval": _ms(outlier.interval_ms),
            "base_ejection_time": _ms(outlier.base_ejection_time_ms),
            "max_ejection_percent": {"value": 100},
        }
    return fields


# wellKnownCACertificates: System. The Envoy images mcgw runs (and Debian, Ubuntu, Alpine) keep the system
# trust store here.
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
_SAN_DNS = common_pb2.SubjectAltNameMatcher.DNS
_SAN_URI = common_pb2.SubjectAltNameMatcher.URI


def _transport_socket(tls: ir.UpstreamTlsIR, client_certificate: str | None, http2: bool) -> dict[str, Any]:
    trusted = {"inline_string": tls.ca} if tls.ca is not None else {"filename": SYSTEM_CA_FILE}
    sans = [{"san_type": _SAN_DNS, "matcher": {"exact": name}} for name in tls.san_dns]
    sans += [{"san_type": _SAN_URI, "matcher": {"exact": uri}} for uri in tls.san_uri]
    common: dict[str, Any] = {"validation_context": {"trusted_ca": trusted, "match_typed_subject_alt_names": sans}}
    if client_certificate is not None:
        common["tls_certificate_sds_secret_configs"] = [{"name": client_certificate, "sds_config": ADS}]
    if http2:
        common["alpn_protocols"] = ["h2"]
    context = tls_pb2.UpstreamTlsContext(sni=tls.sni, common_tls_context=common)
    return {"name": "envoy.transport_sockets.tls", "typed_config": pack(context)}


def _stream_checks(fields: dict[str, Any], stream: str) -> None:
    """A TCPRoute's or TLSRoute's backend is checked by connecting (``tcp_health_check`` with no payload: a completed
    handshake is healthy); a UDPRoute's has no active check (Envoy has none for UDP) and no outlier detection
    (the UDP proxy reports no outcomes): its endpoints' EDS health decides."""
    checks = fields.get("health_checks")
    if stream == "TCP":
        if checks:
            checks[0].pop("http_health_check", None)
            checks[0].pop("grpc_health_check", None)
            checks[0]["tcp_health_check"] = {}
        return
    fields.pop("health_checks", None)
    fields.pop("outlier_detection", None)


def cluster(backend: ir.BackendIR, client_certificate: str | None = None) -> cluster_pb2.Cluster:
    """The Envoy cluster of ``backend`` for one Gateway: over TLS, it presents that Gateway's
    ``client_certificate`` (an SDS name), so the same backend may have another cluster for another Gateway."""
    fields: dict[str, Any] = _failover_fields(backend.failover, backend.h2c, backend.grpc) \
        if backend.failover is not None else {"connect_timeout": _CONNECT_TIMEOUT}
    if backend.stream is not None:
        _stream_checks(fields, backend.stream)
    if backend.h2c or backend.grpc:
        fields["typed_extension_protocol_options"] = _H2C_OPTIONS
    if backend.tls is not None:
        fields["transport_socket"] = _transport_socket(backend.tls, client_certificate, backend.grpc)
    return cluster_pb2.Cluster(name=backend.name, type=cluster_pb2.Cluster.EDS,
                               eds_cluster_config={"eds_config": ADS}, **fields)


def load_assignment(backend: ir.BackendIR) -> endpoint_pb2.ClusterLoadAssignment:
    localities: list[dict[str, Any]] = [{
        "locality": {"region": loc.region, "zone": loc.zone, "sub_zone": loc.cluster},
        "priority": loc.priority,
        "lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": e.address, "port_value": e.port}}},
                          "health_status": e.health} for e in loc.endpoints],
    } for loc in backend.localities if loc.endpoints]
    for entry, loc in zip(localities, (loc for loc in backend.localities if loc.endpoints), strict=True):
        if loc.weight:
            entry["load_balancing_weight"] = {"value": loc.weight}
    if backend.failover is None:
        return endpoint_pb2.ClusterLoadAssignment(cluster_name=backend.name, endpoints=localities)
    factor = overprovisioning_factor(backend.failover)
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=backend.name, endpoints=localities,
                                              policy={"overprovisioning_factor": {"value": factor}})
