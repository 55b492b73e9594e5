"""Frontend client-certificate validation (Gateway ``spec.tls.frontend``): a changed CA bundle reaches Envoy as
an SDS Secret and leaves the listener alone, what reaches Envoy is only certificates, and the Gateway's
InsecureFrontendValidationMode condition goes away when the fallback is turned off."""

from __future__ import annotations

import base64
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2

from mcgw.objects.model import AnyObject, parse_object
from mcgw.providers.kubernetes.status_merge import merge_gateway_status
from mcgw.runtime.pipeline import ClusterTranslator, translate_cluster
from tests.mcgw.certs import self_signed
from xdsserver import LISTENER, SECRET

V1 = "gateway.networking.k8s.io/v1"
CLASS = parse_object({"apiVersion": V1, "kind": "GatewayClass", "metadata": {"name": "mcgw", "generation": 1},
                      "spec": {"controllerName": "mcgw.io/gateway-controller"}}, "class")
SERVER = self_signed("a.example.com")
CA_ONE, CA_TWO = (base64.b64decode(self_signed(f"ca-{n}")["tls.crt"]).decode() for n in ("one", "two"))
GATEWAY = ("infra", "public")
CA_NAME = "client-ca/infra/public/default"


def _gateway(mode: str = "AllowValidOnly") -> AnyObject:
    return parse_object({"apiVersion": V1, "kind": "Gateway", "metadata": {"name": "public", "namespace": "infra",
                                                                          "generation": 1},
                         "spec": {"gatewayClassName": "mcgw",
                                  "tls": {"frontend": {"default": {"validation": {
                                      "mode": mode,
                                      "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}]}}}},
                                  "listeners": [{"name": "https", "port": 443, "protocol": "HTTPS",
                                                 "tls": {"certificateRefs": [{"name": "cert"}]}},
                                                {"name": "http", "port": 80, "protocol": "HTTP"}]}}, "gateway")


def _objects(ca: str, mode: str = "AllowValidOnly") -> list[AnyObject]:
    return [CLASS, _gateway(mode),
            parse_object({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                          "metadata": {"name": "cert", "namespace": "infra"}, "data": SERVER}, "cert"),
            parse_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ca", "namespace": "infra"},
                          "data": {"ca.crt": ca}}, "ca")]


def _context(listener_payload: bytes) -> tls_pb2.DownstreamTlsContext:
    listener = listener_pb2.Listener.FromString(listener_payload)
    context = tls_pb2.DownstreamTlsContext()
    listener.filter_chains[0].transport_socket.typed_config.Unpack(context)
    return context


def test_a_changed_ca_bundle_changes_only_its_sds_secret() -> None:
    translator = ClusterTranslator("east")
    before = translator.translate(_objects(CA_ONE)).snapshot(GATEWAY)
    after = translator.translate(_objects(CA_TWO)).snapshot(GATEWAY, before)
    assert before.changed_names(after) == {SECRET: frozenset({CA_NAME})}
    assert after.of_type(LISTENER) is before.of_type(LISTENER)  # the same resources: nothing to push
    secret = secret_pb2.Secret.FromString(after.of_type(SECRET)[CA_NAME].payload)
    assert secret.validation_context.trusted_ca.inline_string == CA_TWO
    context = _context(after.of_type(LISTENER)["infra/public/443"].payload)
    assert context.common_tls_context.validation_context_sds_secret_config.name == CA_NAME
    assert context.require_client_certificate.value is True
    assert not context.common_tls_context.HasField("validation_context"), "no CA inline in a listener"


def test_the_fallback_accepts_untrusted_chains_and_missing_certificates() -> None:
    snapshot = translate_cluster("east", _objects(CA_ONE, "AllowInsecureFallback")).snapshot(GATEWAY)
    context = _context(snapshot.of_type(LISTENER)["infra/public/443"].payload)
    combined = context.common_tls_context.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == CA_NAME
    assert combined.default_validation_context.trust_chain_verification == \
        combined.default_validation_context.ACCEPT_UNTRUSTED
    assert context.require_client_certificate.value is False


def test_only_certificates_of_a_ca_bundle_reach_envoy() -> None:
    key = base64.b64decode(SERVER["tls.key"]).decode()
    output = translate_cluster("east", _objects(key + CA_ONE))
    secret = secret_pb2.Secret.FromString(output.snapshot(GATEWAY).of_type(SECRET)[CA_NAME].payload)
    assert secret.validation_context.trusted_ca.inline_string == CA_ONE
    assert "PRIVATE KEY" not in str([g for g in output.gateways])


def _insecure(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in status["conditions"] if c["type"] == "InsecureFrontendValidationMode"]


def test_insecure_mode_condition_is_set_and_removed_when_the_fallback_is_turned_off() -> None:
    fallback = translate_cluster("east", _objects(CA_ONE, "AllowInsecureFallback")).statuses()["Gateway"]
    stored = merge_gateway_status({}, fallback["infra/public"], "2026-01-01T00:00:00Z")
    assert [(c["status"], c["reason"]) for c in _insecure(stored)] == [("True", "ConfigurationChanged")]
    stored["conditions"].append({"type": "example.com/Other", "status": "True"})
    strict = translate_cluster("east", _objects(CA_ONE)).statuses()["Gateway"]
    merged = merge_gateway_status(stored, strict["infra/public"], "2026-01-02T00:00:00Z")
    assert _insecure(merged) == []
    assert {"type": "example.com/Other", "status": "True"} in merged["conditions"]  # not ours: kept
