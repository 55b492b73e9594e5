"""The Gateway's client certificate toward backends (``spec.tls.backend.clientCertificateRef``): every TLS
cluster of that Gateway presents it over SDS, only that Gateway's Envoys get the key, a rotation changes
only the Secret, and a reference that stops resolving takes the certificate (and the key) away at once."""

from __future__ import annotations

import base64
import json
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format

from mcgw import ir
from mcgw.objects.model import AnyObject, parse_object
from mcgw.runtime.pipeline import ClusterOutput, ClusterTranslator, translate_cluster
from mcgw.translate import redacted
from tests.mcgw.certs import self_signed
from tests.mcgw.test_backend_tls import CA_PEM
from xdsserver import CLUSTER, SECRET, Snapshot

V1 = "gateway.networking.k8s.io/v1"
CLIENT, ROTATED, OTHER = self_signed("gateway.example.com"), self_signed("gateway.example.com"), \
    self_signed("edge.example.com")
CERT_NAME = "secret/certs/client"


def _gateway(name: str, client_certificate: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": "198.18.0.10"}],
                            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}
    if client_certificate is not None:
        spec["tls"] = {"backend": {"clientCertificateRef": client_certificate}}
    return {"apiVersion": V1, "kind": "Gateway", "metadata": {"name": name, "namespace": "infra", "generation": 1},
            "spec": spec}


def _secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace}, "data": data}


GRANT = {"apiVersion": f"{V1}beta1", "kind": "ReferenceGrant", "metadata": {"name": "certs", "namespace": "certs"},
         "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "infra"}],
                  "to": [{"group": "", "kind": "Secret"}]}}
CROSS_NAMESPACE = {"name": "client", "namespace": "certs"}


def _documents(*, mtls: dict[str, Any] | None = CROSS_NAMESPACE, data: dict[str, str] = CLIENT, grant: bool = True,
               edge: dict[str, Any] | None = None, policy: bool = True) -> list[dict[str, Any]]:
    """Gateways ``mtls`` and ``edge`` both route to Service echo, port 8443 over TLS (with ``policy``), port
    8080 in plaintext."""
    documents = [
        {"apiVersion": V1, "kind": "GatewayClass", "metadata": {"name": "mcgw"},
         "spec": {"controllerName": "mcgw.io/gateway-controller"}},
        _gateway("mtls", mtls), _gateway("edge", edge),
        _secret("client", "certs", data), _secret("edge", "infra", OTHER),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ca", "namespace": "infra"},
         "data": {"ca.crt": CA_PEM}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "infra"},
         "spec": {"ports": [{"name": "https", "port": 8443}, {"name": "plain", "port": 8080}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "echo-1", "namespace": "infra", "labels": {"kubernetes.io/service-name": "echo"}},
         "addressType": "IPv4", "ports": [{"name": "https", "port": 8443}, {"name": "plain", "port": 8080}],
         "endpoints": [{"addresses": ["198.18.1.10"], "conditions": {"ready": True}}]},
        {"apiVersion": V1, "kind": "HTTPRoute", "metadata": {"name": "echo", "namespace": "infra", "generation": 1},
         "spec": {"parentRefs": [{"name": "mtls"}, {"name": "edge"}],
                  "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/tls"}}],
                             "backendRefs": [{"name": "echo", "port": 8443}]},
                            {"backendRefs": [{"name": "echo", "port": 8080}]}]}},
    ]
    if policy:
        documents.append({"apiVersion": V1, "kind": "BackendTLSPolicy",
                          "metadata": {"name": "echo", "namespace": "infra", "generation": 1},
                          "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "echo",
                                                   "sectionName": "https"}],
                                   "validation": {"caCertificateRefs": [{"group": "", "kind": "ConfigMap",
                                                                         "name": "ca"}],
                                                  "hostname": "echo.example.com"}}})
    if grant:
        documents.append(GRANT)
    return documents


def _presented(output: ClusterOutput, gateway: str) -> dict[str, list[str]]:
    """Cluster name -> the SDS names of the client certificates it presents (clusters without TLS: absent)."""
    found = {}
    for message in output.resources[("infra", gateway)]:
        if isinstance(message, cluster_pb2.Cluster) and message.HasField("transport_socket"):
            context = tls_pb2.UpstreamTlsContext()
            message.transport_socket.typed_config.Unpack(context)
            assert not context.common_tls_context.tls_certificates, "no private key inline in a cluster"
            found[message.name] = [c.name for c in context.common_tls_context.tls_certificate_sds_secret_configs]
    return found


def _resolved_refs(output: ClusterOutput, gateway: str) -> tuple[str, str, str]:
    conditions = output.statuses()["Gateway"][f"infra/{gateway}"]["conditions"]
    found = next(c for c in conditions if c["type"] == "ResolvedRefs")
    return found["status"], found["reason"], found["message"]


def test_each_gateway_presents_its_own_certificate_on_a_shared_tls_backend() -> None:
    output = translate_cluster("east", [parse_object(d, "test") for d in _documents(edge={"name": "edge"})])
    assert _presented(output, "mtls") == {"service/infra/echo/8443": [CERT_NAME]}
    assert _presented(output, "edge") == {"service/infra/echo/8443": ["secret/infra/edge"]}
    mtls, edge = output.snapshot(("infra", "mtls")), output.snapshot(("infra", "edge"))
    assert sorted(mtls.of_type(SECRET)) == [CERT_NAME]
    assert sorted(edge.of_type(SECRET)) == ["secret/infra/edge"]
    key = base64.b64decode(CLIENT["tls.key"])
    assert key in mtls.of_type(SECRET)[CERT_NAME].payload
    assert all(key not in r.payload for of_type in edge.resources.values() for r in of_type.values())
    assert _resolved_refs(output, "mtls") == ("True", "ResolvedRefs", "all references resolved")
    shown = json.dumps([ir.to_data(gateway) for gateway in output.gateways]) + repr(output.gateways) + \
        json.dumps([json_format.MessageToDict(redacted(m)) for ms in output.resources.values() for m in ms])
    assert "PRIVATE KEY" not in shown  # IR dumps, reprs and printed resources: the key never shows


def test_a_gateway_without_a_client_certificate_presents_none_and_receives_no_key() -> None:
    output = translate_cluster("east", [parse_object(d, "test") for d in _documents()])
    assert _presented(output, "edge") == {"service/infra/echo/8443": []}
    edge = output.snapshot(("infra", "edge"))
    assert not edge.of_type(SECRET)
    key = base64.b64decode(CLIENT["tls.key"])
    assert all(key not in r.payload for of_type in edge.resources.values() for r in of_type.values())


def test_without_tls_backends_the_certificate_is_not_sent_at_all() -> None:
    output = translate_cluster("east", [parse_object(d, "test") for d in _documents(policy=False)])
    assert _presented(output, "mtls") == {}
    assert not output.snapshot(("infra", "mtls")).of_type(SECRET)


def test_a_reference_that_stops_resolving_takes_the_certificate_away_and_says_why() -> None:
    steps: list[tuple[list[dict[str, Any]], list[str], tuple[str, str]]] = [
        (_documents(), [CERT_NAME], ("True", "ResolvedRefs")),
        (_documents(data=ROTATED), [CERT_NAME], ("True", "ResolvedRefs")),
        (_documents(grant=False), [], ("False", "RefNotPermitted")),
        (_documents(), [CERT_NAME], ("True", "ResolvedRefs")),
        (_documents(data={"tls.crt": "Y2VydA==", "tls.key": "a2V5"}), [], ("False", "InvalidClientCertificateRef")),
        (_documents(mtls={"name": "client", "kind": "ConfigMap"}), [],
         ("False", "InvalidClientCertificateRef")),
        (_documents(mtls={"name": "missing", "namespace": "certs"}), [], ("False", "InvalidClientCertificateRef")),
        (_documents(mtls=None), [], ("True", "ResolvedRefs")),
    ]
    translator = ClusterTranslator("east")
    parsed: dict[str, AnyObject] = {}
    previous: Snapshot | None = None
    for documents, presented, resolved in steps:
        objects = [parsed.setdefault(json.dumps(d, sort_keys=True), parse_object(d, "test")) for d in documents]
        output = translator.translate(objects)
        full = translate_cluster("east", objects)
        assert output.gateways == full.gateways
        assert output.statuses() == full.statuses()
        assert _presented(output, "mtls") == _presented(full, "mtls") == {"service/infra/echo/8443": presented}
        assert _resolved_refs(output, "mtls")[:2] == resolved
        snapshot = output.snapshot(("infra", "mtls"), previous)  # refuses a Secret nothing names, and the reverse
        assert sorted(snapshot.of_type(SECRET)) == presented
        accepted = output.statuses()["Gateway"]["infra/mtls"]["conditions"][0]
        assert (accepted["type"], accepted["status"]) == ("Accepted", "True")
        previous = snapshot


def test_a_rotation_changes_only_the_secret_not_the_cluster() -> None:
    translator = ClusterTranslator("east")
    parsed: dict[str, AnyObject] = {}

    def objects(documents: list[dict[str, Any]]) -> list[AnyObject]:
        return [parsed.setdefault(json.dumps(d, sort_keys=True), parse_object(d, "test")) for d in documents]

    before = translator.translate(objects(_documents())).snapshot(("infra", "mtls"))
    after = translator.translate(objects(_documents(data=ROTATED))).snapshot(("infra", "mtls"), before)
    assert before.changed_names(after) == {SECRET: frozenset({CERT_NAME})}
    assert after.of_type(CLUSTER) is before.of_type(CLUSTER)


def test_messages_name_the_reference_and_what_to_fix() -> None:
    output = translate_cluster("east", [parse_object(d, "test") for d in _documents(grant=False)])
    status, reason, message = _resolved_refs(output, "mtls")
    assert (status, reason) == ("False", "RefNotPermitted")
    assert "certs/client" in message
    assert "ReferenceGrant in certs" in message
    assert "PRIVATE KEY" not in json.dumps(output.statuses())
