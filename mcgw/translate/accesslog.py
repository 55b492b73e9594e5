"""Access log IR → the access loggers of Envoy's connection manager, ``tcp_proxy``, ``udp_proxy`` and TLS listeners.

Each Envoy writes one line to its stdout per HTTP request, per TCP or TLS connection (when it closes) and
per UDP session (when it ends, after its idle timeout); a TLS listener also logs the connections whose SNI
no route serves. Stdout is what a pod's log collects; Envoy's own log goes to stderr.

JSON has these keys (``null`` where a value does not apply); text has the same ``key=value`` pairs in
this order, ``-`` for none, one line each:

- every kind: ``start_time``, ``listener`` (the Envoy listener, ``<ns>/<gateway>/<port>``),
  ``downstream_remote_address``, ``response_flags`` (Envoy's, such as ``UF`` upstream connect failure, ``NR``
  no route, ``UH`` no healthy host), ``upstream_host``, ``source_cluster`` (the member cluster the upstream
  host is in), ``bytes_received``, ``bytes_sent``, ``duration_ms``; a TLS connection that no route takes has
  no upstream fields;
- HTTP and HTTPS: ``protocol``, ``method``, ``authority``, ``path`` (without the query, which may carry
  credentials), ``request_id``, ``route_name`` (``<ns>/<route>/rule/<i>/match/<j>``), ``response_code``,
  ``response_code_details``, ``response_duration_ms`` (until the first byte from upstream);
- HTTP, HTTPS, TCP and TLS: ``upstream_cluster``, ``upstream_attempts`` (1 when nothing was retried:
  requests tried again across hosts and priorities, or connects tried again), and
  ``upstream_transport_failure_reason``;
- HTTPS and TLS: ``requested_server_name`` (SNI); TLS: ``route_name`` (the TLSRoute that the SNI chose).

``source_cluster``: a backend's ClusterLoadAssignment has one locality per source cluster, its
``sub_zone`` the cluster's name (:mod:`.clusters`). Envoy has no command operator for an upstream host's
locality, so it is read with a CEL expression (``upstream.locality.sub_zone``).

Sampling (``sampled_per_million`` below one million) is a ``runtime_filter`` with independent randomness:
requests, connections and sessions alike are logged at random with that probability.
"""

from __future__ import annotations

from typing import Literal

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2

from mcgw import ir

Kind = Literal["HTTP", "HTTPS", "TCP", "TLS", "UDP", "TLS-unmatched"]
STDOUT_LOGGER = "envoy.access_loggers.stdout"
# A runtime key nobody sets: the configured share applies; an operator may override it through Envoy's runtime.
SAMPLING_RUNTIME_KEY = "mcgw.access_log.sampled"

_HEAD = (("start_time", "%START_TIME%"),)
_DOWNSTREAM = (("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),)
_SNI = (("requested_server_name", "%REQUESTED_SERVER_NAME%"),)
_HTTP_REQUEST = (
    ("protocol", "%PROTOCOL%"),
    ("method", "%REQ(:METHOD)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("path", "%PATH(NQ)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("route_name", "%ROUTE_NAME%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
)
_FLAGS = (("response_flags", "%RESPONSE_FLAGS%"),)
_UPSTREAM_CLUSTER = (("upstream_cluster", "%UPSTREAM_CLUSTER%"),)
_UPSTREAM_HOST = (
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("source_cluster", "%CEL(upstream.locality.sub_zone)%"),
)
_ATTEMPTS = (
    ("upstream_attempts", "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"),
    ("upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"),
)
_TAIL = (
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration_ms", "%DURATION%"),
)
_RESPONSE_DURATION = (("response_duration_ms", "%RESPONSE_DURATION%"),)

Fields = tuple[tuple[str, str], ...]


def fields(kind: Kind, listener: str, route: str = "") -> Fields:
    """The logged fields of one kind of listener (or TLS filter chain, whose ``route`` is its TLSRoute's), in order."""
    head: Fields = (*_HEAD, ("listener", listener), *_DOWNSTREAM)
    if kind in ("HTTP", "HTTPS"):
        sni = _SNI if kind == "HTTPS" else ()
        return (*head, *sni, *_HTTP_REQUEST, *_FLAGS, *_UPSTREAM_CLUSTER, *_UPSTREAM_HOST, *_ATTEMPTS, *_TAIL,
                *_RESPONSE_DURATION)
    if kind == "TCP":
        return (*head, *_FLAGS, *_UPSTREAM_CLUSTER, *_UPSTREAM_HOST, *_ATTEMPTS, *_TAIL)
    if kind == "TLS":
        return (*head, *_SNI, ("route_name", route), *_FLAGS, *_UPSTREAM_CLUSTER, *_UPSTREAM_HOST, *_ATTEMPTS,
                *_TAIL)
    if kind == "UDP":
        return (*head, *_FLAGS, *_UPSTREAM_HOST, *_TAIL)
    return (*head, *_SNI, *_FLAGS, *_TAIL)  # a TLS connection that no filter chain took


def _format(log: ir.AccessLogIR, logged: Fields) -> dict[str, object]:
    if log.format == "json":
        return {"json_format": dict(logged)}
    return {"text_format_source": {"inline_string": " ".join(f"{key}={value}" for key, value in logged) + "\n"}}


def _sampling(log: ir.AccessLogIR) -> dict[str, object] | None:
    if log.sampled_per_million >= ir.PER_MILLION:
        return None
    return {"runtime_filter": {
        "runtime_key": SAMPLING_RUNTIME_KEY,
        "percent_sampled": {"numerator": log.sampled_per_million,
                            "denominator": percent_pb2.FractionalPercent.MILLION},
        "use_independent_randomness": True}}


def access_logs(log: ir.AccessLogIR | None, kind: Kind, listener: str,
                route: str = "") -> list[accesslog_pb2.AccessLog]:
    """The access loggers of one listener, connection manager or proxy filter: none when the log is off."""
    if log is None:
        return []
    logger = any_pb2.Any()
    # Deterministic: a JSON format is a map, and the resource version is a hash of the serialised bytes.
    logger.Pack(stream_pb2.StdoutAccessLog(log_format=_format(log, fields(kind, listener, route))), deterministic=True)
    sampling = _sampling(log)
    if sampling is None:
        return [accesslog_pb2.AccessLog(name=STDOUT_LOGGER, typed_config=logger)]
    return [accesslog_pb2.AccessLog(name=STDOUT_LOGGER, typed_config=logger, filter=sampling)]
