"""BackendTLSPolicy: which backends get TLS, how they are validated, the policies' ancestor status, and that
an unusable policy never leaves a backend reachable in plaintext."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from mcgw import ir
from mcgw.objects.model import AnyObject, parse_object
from mcgw.runtime.incremental import McsInput
from mcgw.runtime.pipeline import ClusterOutput, ClusterTranslator, translate_cluster
from mcgw.semantics.mcs.exports import compute_mcs
from mcgw.translate.clusters import SYSTEM_CA_FILE
from tests.e2e.testbed.pki import CertificateAuthority
from tests.envoy_validate import validate
from tests.mcgw.manifests import V1, public_gateway

CA_PEM = CertificateAuthority(Path(tempfile.mkdtemp(prefix="mcgw-btls-")), "backend-ca").cert_path.read_text()
OTHER_CA_PEM = CertificateAuthority(Path(tempfile.mkdtemp(prefix="mcgw-btls-")), "other-ca").cert_path.read_text()
TLS_SOCKET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


def _policy(name: str, target: str = "echo", *, section: str | None = None, created: str = "2026-01-01T00:00:00Z",
            validation: dict[str, Any] | None = None, kind: str = "Service", group: str = "",
            options: dict[str, str] | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": group, "kind": kind, "name": target}
    if section is not None:
        ref["sectionName"] = section
    spec: dict[str, Any] = {"targetRefs": [ref], "validation": validation or {
        "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}], "hostname": "echo.example.com"}}
    if options:
        spec["options"] = options
    return {"apiVersion": V1, "kind": "BackendTLSPolicy",
            "metadata": {"name": name, "namespace": "infra", "generation": 2, "creationTimestamp": created},
            "spec": spec}


def _config_map(name: str = "ca", data: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "infra"},
            "data": {"ca.crt": CA_PEM} if data is None else data}


def _documents(*extra: dict[str, Any], app_protocol: str | None = None, exported: bool = False,
               ports: tuple[tuple[str, int], ...] = (("https", 8443),)) -> list[dict[str, Any]]:
    service_ports: list[dict[str, Any]] = [{"name": name, "port": port} for name, port in ports]
    if app_protocol is not None:
        service_ports[0]["appProtocol"] = app_protocol
    backend_ref: dict[str, Any] = {"name": "echo", "port": ports[0][1]}
    if exported:
        backend_ref |= {"group": "multicluster.x-k8s.io", "kind": "ServiceImport"}
    documents = [
        *public_gateway(),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "infra",
                                                             "creationTimestamp": "2026-01-01T00:00:00Z"},
         "spec": {"ports": service_ports}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "echo-1", "namespace": "infra", "labels": {"kubernetes.io/service-name": "echo"}},
         "addressType": "IPv4", "ports": [{"name": name, "port": port} for name, port in ports],
         "endpoints": [{"addresses": ["198.18.1.10"], "conditions": {"ready": True}}]},
        {"apiVersion": V1, "kind": "HTTPRoute", "metadata": {"name": "echo", "namespace": "infra", "generation": 1},
         "spec": {"parentRefs": [{"name": "public"}], "rules": [{"backendRefs": [backend_ref]}]}},
    ]
    if exported:
        documents.append({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
                          "metadata": {"name": "echo", "namespace": "infra",
                                       "creationTimestamp": "2026-01-01T00:00:00Z"}})
    return documents + list(extra)


def _objects(documents: list[dict[str, Any]]) -> list[AnyObject]:
    return [parse_object(document, "test") for document in documents]


def _translate(documents: list[dict[str, Any]], exported: bool = False) -> ClusterOutput:
    objects = _objects(documents)
    mcs = McsInput(compute_mcs({"east": objects}, {}, time.time()).view.services, {}) if exported else None
    return translate_cluster("east", objects, mcs=mcs)


def _backend(output: ClusterOutput) -> ir.BackendIR:
    (gateway,) = output.gateways
    ir.validate(gateway)
    (backend,) = gateway.http[0].virtual_hosts[0].routes[0].backends
    return backend


def _clusters(output: ClusterOutput) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(m) for messages in output.resources.values() for m in messages
            if m.DESCRIPTOR.name == "Cluster"]


def _tls_context(output: ClusterOutput) -> dict[str, Any]:
    (cluster,) = _clusters(output)
    socket = cluster["transportSocket"]
    assert socket["name"] == "envoy.transport_sockets.tls"
    assert socket["typedConfig"]["@type"] == TLS_SOCKET
    context: dict[str, Any] = socket["typedConfig"]
    return context


def _conditions(output: ClusterOutput, policy: str) -> dict[str, tuple[str, str]]:
    (ancestor,) = output.statuses()["BackendTLSPolicy"][f"infra/{policy}"]["ancestors"]
    assert ancestor["ancestorRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                       "namespace": "infra", "name": "public"}
    assert ancestor["controllerName"] == "mcgw.io/gateway-controller"
    assert all(c["observedGeneration"] == 2 for c in ancestor["conditions"])
    return {c["type"]: (c["status"], c["reason"]) for c in ancestor["conditions"]}


def _route_resolved_refs(output: ClusterOutput) -> str:
    conditions = output.statuses()["HTTPRoute"]["infra/echo"]["parents"][0]["conditions"]
    return str(next(c for c in conditions if c["type"] == "ResolvedRefs")["status"])


def _envoy_accepts(output: ClusterOutput) -> None:
    checked = validate([m for messages in output.resources.values() for m in messages])
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("exported", [False, True], ids=["Service", "ServiceImport"])
def test_a_valid_policy_gives_the_backend_tls_with_sni_ca_and_the_hostname_as_san(exported: bool) -> None:
    output = _translate(_documents(_policy("tls"), _config_map(), exported=exported), exported)
    backend = _backend(output)
    assert backend.valid
    assert backend.tls is not None
    context = _tls_context(output)
    assert context["sni"] == "echo.example.com"
    validation = context["commonTlsContext"]["validationContext"]
    assert validation["trustedCa"] == {"inlineString": CA_PEM.strip() + "\n"}
    assert validation["matchTypedSubjectAltNames"] == [{"sanType": "DNS", "matcher": {"exact": "echo.example.com"}}]
    assert _conditions(output, "tls") == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    assert _route_resolved_refs(output) == "True"
    _envoy_accepts(output)


def test_subject_alt_names_replace_the_hostname_as_san_and_system_uses_the_trust_store() -> None:
    policy = _policy("tls", validation={"wellKnownCACertificates": "System", "hostname": "echo.example.com",
                                        "subjectAltNames": [{"type": "Hostname", "hostname": "alt.example.com"},
                                                            {"type": "URI", "uri": "spiffe://example.com/echo"}]})
    output = _translate(_documents(policy))
    context = _tls_context(output)
    assert context["sni"] == "echo.example.com"
    validation = context["commonTlsContext"]["validationContext"]
    assert validation["trustedCa"] == {"filename": SYSTEM_CA_FILE}
    assert validation["matchTypedSubjectAltNames"] == [
        {"sanType": "DNS", "matcher": {"exact": "alt.example.com"}},
        {"sanType": "URI", "matcher": {"exact": "spiffe://example.com/echo"}}]
    _envoy_accepts(output)


@pytest.mark.parametrize(("config_map", "ref_kind", "reason"), [
    (None, "ConfigMap", "InvalidCACertificateRef"),  # missing
    (_config_map(data={}), "ConfigMap", "InvalidCACertificateRef"),  # no ca.crt
    (_config_map(data={"ca.crt": "not a certificate"}), "ConfigMap", "InvalidCACertificateRef"),
    (_config_map(), "Secret", "InvalidKind"),
], ids=["missing", "no-ca.crt", "malformed", "kind"])
@pytest.mark.parametrize("exported", [False, True], ids=["Service", "ServiceImport"])
def test_a_policy_without_a_valid_ca_makes_the_backend_answer_500_never_plaintext(
        config_map: dict[str, Any] | None, ref_kind: str, reason: str, exported: bool) -> None:
    policy = _policy("tls", validation={"caCertificateRefs": [{"group": "", "kind": ref_kind, "name": "ca"}],
                                        "hostname": "echo.example.com"})
    documents = _documents(policy, *([config_map] if config_map else []), exported=exported)
    output = _translate(documents, exported)
    assert _conditions(output, "tls") == {"Accepted": ("False", "NoValidCACertificate"),
                                          "ResolvedRefs": ("False", reason)}
    backend = _backend(output)
    assert not backend.valid
    assert backend.tls is None
    assert _clusters(output) == []  # no cluster at all: its share answers 500
    assert _route_resolved_refs(output) == "True"  # the spec puts the problem on the policy
    _envoy_accepts(output)


def test_one_invalid_ref_among_valid_ones_is_reported_and_left_out_of_the_bundle() -> None:
    policy = _policy("tls", validation={"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"},
                                                              {"group": "", "kind": "ConfigMap", "name": "gone"}],
                                        "hostname": "echo.example.com"})
    output = _translate(_documents(policy, _config_map()))
    assert _conditions(output, "tls") == {"Accepted": ("True", "Accepted"),
                                          "ResolvedRefs": ("False", "InvalidCACertificateRef")}
    message = output.statuses()["BackendTLSPolicy"]["infra/tls"]["ancestors"][0]["conditions"][1]["message"]
    assert "infra/gone does not exist" in message
    assert _tls_context(output)["commonTlsContext"]["validationContext"]["trustedCa"]["inlineString"] == \
        CA_PEM.strip() + "\n"


@pytest.mark.parametrize(("validation", "options"), [
    ({"wellKnownCACertificates": "example.com/custom", "hostname": "echo.example.com"}, None),
    (None, {"example.com/min-version": "1.3"}),
], ids=["well-known", "options"])
def test_what_mcgw_cannot_honour_is_invalid_and_the_backend_answers_500(
        validation: dict[str, Any] | None, options: dict[str, str] | None) -> None:
    output = _translate(_documents(_policy("tls", validation=validation, options=options), _config_map()))
    assert _conditions(output, "tls")["Accepted"] == ("False", "Invalid")
    assert not _backend(output).valid


def test_the_oldest_policy_wins_a_target_and_a_port_policy_wins_over_a_whole_service_one() -> None:
    documents = _documents(
        _policy("b-older", created="2026-01-01T00:00:00Z"),
        _policy("a-newer", created="2026-01-02T00:00:00Z",
                validation={"wellKnownCACertificates": "System", "hostname": "newer.example.com"}),
        _policy("port", section="https", created="2026-01-03T00:00:00Z",
                validation={"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}],
                            "hostname": "port.example.com"}),
        _config_map(), ports=(("https", 8443), ("other", 9443)))
    output = _translate(documents)
    assert _conditions(output, "b-older")["Accepted"] == ("True", "Accepted")
    assert _conditions(output, "a-newer")["Accepted"] == ("False", "Conflicted")
    assert _conditions(output, "port")["Accepted"] == ("True", "Accepted")
    assert _tls_context(output)["sni"] == "port.example.com"  # the route uses port https


def test_a_policy_on_the_service_import_wins_over_the_same_named_services_for_import_backends() -> None:
    documents = _documents(
        _policy("service"),
        _policy("import", kind="ServiceImport", group="multicluster.x-k8s.io",
                validation={"wellKnownCACertificates": "System", "hostname": "import.example.com"}),
        _config_map(), exported=True)
    output = _translate(documents, exported=True)
    assert _tls_context(output)["sni"] == "import.example.com"


def test_websocket_over_tls_resolves_with_a_policy() -> None:
    output = _translate(_documents(_policy("tls"), _config_map(), app_protocol="kubernetes.io/wss"))
    assert _route_resolved_refs(output) == "True"
    assert _backend(output).tls is not None
    without = _translate(_documents(_config_map(), app_protocol="kubernetes.io/wss"))
    assert _route_resolved_refs(without) == "False"


def test_a_policy_no_route_uses_has_no_ancestors() -> None:
    output = _translate(_documents(_policy("tls", target="unused"), _config_map()))
    assert output.statuses()["BackendTLSPolicy"]["infra/tls"] == {"ancestors": []}


def test_policy_and_config_map_changes_reach_the_cluster_incrementally() -> None:
    ca, other = _config_map(), _config_map(data={"ca.crt": OTHER_CA_PEM})
    steps = [
        _documents(),
        _documents(_policy("tls")),  # the ConfigMap is missing: 500
        _documents(_policy("tls"), ca),  # it appears: TLS
        _documents(_policy("tls"), other),  # its content changes
        _documents(_policy("tls", section="https"), other),
        _documents(_policy("tls", section="https"), other, ports=(("renamed", 8443),)),  # the port's name changes
        _documents(_policy("tls"), other, app_protocol="kubernetes.io/wss"),
        _documents(ca, app_protocol="kubernetes.io/wss"),  # the policy goes: wss is unsupported again
        _documents(),
    ]
    translator = ClusterTranslator("east")
    parsed: dict[str, AnyObject] = {}  # unchanged documents stay the same objects, as the store keeps them
    for documents in steps:
        objects = [parsed.setdefault(json.dumps(d, sort_keys=True), parse_object(d, "test")) for d in documents]
        incremental, full = translator.translate(objects), translate_cluster("east", objects)
        assert incremental.gateways == full.gateways
        assert incremental.statuses() == full.statuses()
        assert _clusters(incremental) == _clusters(full)


def test_only_the_certificates_of_a_ca_bundle_reach_envoy() -> None:
    """A private key (or anything else) pasted into ca.crt beside the certificate never leaves mcgw."""
    pasted = f"# the team's CA\n{CA_PEM}\n-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"
    output = _translate(_documents(_policy("tls"), _config_map(data={"ca.crt": pasted})))
    trusted = _tls_context(output)["commonTlsContext"]["validationContext"]["trustedCa"]["inlineString"]
    assert trusted == CA_PEM.strip() + "\n"
    assert "PRIVATE KEY" not in json.dumps(_clusters(output))
    assert _conditions(output, "tls") == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
