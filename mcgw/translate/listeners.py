"""HTTP listener IR → Envoy ``Listener``: one per Gateway port, its routes from RDS under the port's name.

An HTTP port has one filter chain; an HTTPS port has one per Gateway listener, chosen by SNI
(``server_names`` empty means any), each terminating TLS with that listener's certificates, and, where
HTTPS listeners share the port, reading that listener's own route table (which answers 421 for the others'
hostnames). Those come by
SDS name over the same ADS stream (:mod:`.secrets`), so a rotated certificate reaches Envoy as a new
Secret and the listener, unchanged, is neither modified nor drained. A port's client certificate
validation is the same on all its filter chains (a connection, and HTTP/2 requests coalesced on it, may
reach any of them), its CA bundle likewise by SDS name: the Envoy handshake refuses a client without a
certificate its CAs signed, unless the port allows the insecure fallback.

The connection manager detects the client's codec (HTTP/1.1, or HTTP/2 by its preface: with prior
knowledge in cleartext, by ALPN over TLS) and lets WebSocket upgrades through on every route: GEP-1911
says a backend without ``appProtocol: kubernetes.io/ws`` need not lose them, and a backend that does
not speak WebSocket refuses the upgrade itself. Envoy's CORS filter, before the router, applies the CORS
policy of the route a request takes, if it has one. Each request is written to the access log, if the
Gateway has one (:mod:`.accesslog`).
"""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from mcgw import ir
from mcgw.translate.accesslog import access_logs

ADS = {"ads": {}, "resource_api_version": "V3"}
CORS_FILTER = "envoy.filters.http.cors"


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _hcm(port: ir.HTTPListenerIR, access_log: ir.AccessLogIR | None, route_table: str = "") -> dict[str, object]:
    port_name = port.name
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=port_name.replace("/", "_"),
        rds={"route_config_name": route_table or port_name, "config_source": ADS},
        # The CORS filter does nothing on a route without a CORS policy of its own (routes.py gives it one).
        http_filters=[{"name": CORS_FILTER, "typed_config": pack(cors_pb2.Cors())},
                      {"name": "envoy.filters.http.router", "typed_config": pack(router_pb2.Router())}],
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        upgrade_configs=[{"upgrade_type": "websocket"}],
        access_log=access_logs(access_log, port.protocol, port_name),
    )
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": pack(manager)}


def _tls_chain(chain: ir.TlsChainIR, hcm: dict[str, object],
               validation: ir.ClientValidationIR | None) -> dict[str, object]:
    common: dict[str, object] = {
        "alpn_protocols": ["h2", "http/1.1"],
        "tls_certificate_sds_secret_configs": [{"name": name, "sds_config": ADS} for name in chain.certificates],
    }
    fields: dict[str, object] = {}
    if validation is not None:
        ca = {"name": validation.trusted_ca, "sds_config": ADS}
        if validation.allow_insecure_fallback:
            # The CA bundle still comes by SDS; this listener-side default only adds "do not fail on an
            # untrusted chain", which Envoy merges into it.
            common["combined_validation_context"] = {
                "default_validation_context": {"trust_chain_verification": "ACCEPT_UNTRUSTED"},
                "validation_context_sds_secret_config": ca}
        else:
            common["validation_context_sds_secret_config"] = ca
        fields["require_client_certificate"] = {"value": not validation.allow_insecure_fallback}
    context = tls_pb2.DownstreamTlsContext(common_tls_context=common, **fields)
    socket = {"name": "envoy.transport_sockets.tls", "typed_config": pack(context)}
    out: dict[str, object] = {"filters": [hcm], "transport_socket": socket}
    if chain.server_names:
        out["filter_chain_match"] = {"server_names": list(chain.server_names)}
    return out


def listener(address: str, port: ir.HTTPListenerIR,
             access_log: ir.AccessLogIR | None = None) -> listener_pb2.Listener:
    """The Envoy listener of one Gateway port (``port.virtual_hosts`` is not read), logging to ``access_log``."""
    hcm = _hcm(port, access_log)
    fields: dict[str, object] = {
        "name": port.name,
        "address": {"socket_address": {"address": address, "port_value": port.port}},
    }
    if port.protocol == "HTTPS":
        fields["filter_chains"] = [
            _tls_chain(chain, _hcm(port, access_log, chain.route_table) if chain.route_table else hcm,
                       port.client_validation)
            for chain in port.tls]
        fields["listener_filters"] = [{"name": "envoy.filters.listener.tls_inspector",
                                       "typed_config": pack(tls_inspector_pb2.TlsInspector())}]
    else:
        fields["filter_chains"] = [{"filters": [hcm]}]
    return listener_pb2.Listener(**fields)
