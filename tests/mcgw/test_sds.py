"""Certificates over SDS: listeners name them, each Gateway's snapshot carries only the ones it uses, a
rotation changes only the Secret resource, and private keys never show in what mcgw prints."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from mcgw import ir
from mcgw.objects.model import AnyObject, parse_object
from mcgw.runtime.pipeline import ClusterTranslator, translate_cluster
from tests.mcgw.certs import self_signed
from xdsserver import LISTENER, SECRET, InconsistentSnapshotError, Snapshot

V1 = "gateway.networking.k8s.io/v1"
REPO = Path(__file__).resolve().parents[2]


def _secret(name: str, data: dict[str, str], namespace: str = "infra") -> AnyObject:
    return parse_object({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                         "metadata": {"name": name, "namespace": namespace}, "data": data}, name)


def _gateway(name: str, listeners: list[dict[str, Any]]) -> AnyObject:
    return parse_object({"apiVersion": V1, "kind": "Gateway", "metadata": {"name": name, "namespace": "infra",
                                                                          "generation": 1},
                         "spec": {"gatewayClassName": "mcgw", "listeners": listeners}}, name)


def _https(name: str, port: int, hostname: str, secret: str) -> dict[str, Any]:
    return {"name": name, "port": port, "protocol": "HTTPS", "hostname": hostname,
            "tls": {"certificateRefs": [{"name": secret}]}}


CLASS = parse_object({"apiVersion": V1, "kind": "GatewayClass", "metadata": {"name": "mcgw", "generation": 1},
                      "spec": {"controllerName": "mcgw.io/gateway-controller"}}, "class")
A_DATA, A_ROTATED, B_DATA = self_signed("a.example.com"), self_signed("a.example.com"), self_signed("b.example.com")


def _objects(a_data: dict[str, str]) -> list[AnyObject]:
    return [CLASS,
            _gateway("one", [_https("a", 443, "a.example.com", "a-cert"), _https("a2", 8443, "a.example.com",
                                                                                "a-cert")]),
            _gateway("two", [_https("b", 443, "b.example.com", "b-cert")]),
            _gateway("plain", [{"name": "http", "port": 80, "protocol": "HTTP"}]),
            _secret("a-cert", a_data), _secret("b-cert", B_DATA), _secret("unused", self_signed("c.example.com"))]


def _sds_names(listener: listener_pb2.Listener) -> list[str]:
    names = []
    for chain in listener.filter_chains:
        context = tls_pb2.DownstreamTlsContext()
        chain.transport_socket.typed_config.Unpack(context)
        names += [config.name for config in context.common_tls_context.tls_certificate_sds_secret_configs]
        assert not context.common_tls_context.tls_certificates, "no certificate inline in a listener"
    return names


def test_listeners_name_their_certificates_and_each_gateway_gets_only_its_own() -> None:
    output = translate_cluster("east", _objects(A_DATA))
    one, two, plain = (output.snapshot(("infra", name)) for name in ("one", "two", "plain"))
    # Two listeners of one Gateway on the same Secret share one SDS resource.
    assert sorted(one.of_type(SECRET)) == ["secret/infra/a-cert"]
    assert sorted(two.of_type(SECRET)) == ["secret/infra/b-cert"]
    assert not plain.of_type(SECRET)
    assert [_sds_names(listener_pb2.Listener.FromString(r.payload)) for r in one.of_type(LISTENER).values()] == [
        ["secret/infra/a-cert"], ["secret/infra/a-cert"]]
    key_b = base64.b64decode(B_DATA["tls.key"])
    assert all(key_b not in r.payload for of_type in one.resources.values() for r in of_type.values())
    key_a = base64.b64decode(A_DATA["tls.key"])
    assert key_a in one.of_type(SECRET)["secret/infra/a-cert"].payload
    assert all(key_a not in r.payload for of_type in (*two.resources.values(), *plain.resources.values())
               for r in of_type.values())


def test_a_rotation_changes_only_the_secret_resource_and_keeps_the_listener_ir() -> None:
    translator = ClusterTranslator("east")
    before = translator.translate(_objects(A_DATA))
    snapshot = before.snapshot(("infra", "one"))
    after = translator.translate(_objects(A_ROTATED))
    rotated = after.snapshot(("infra", "one"), snapshot)
    assert snapshot.changed_names(rotated) == {SECRET: frozenset({"secret/infra/a-cert"})}
    assert rotated.of_type(LISTENER) is snapshot.of_type(LISTENER)  # the same resources: nothing to push
    old_ir, new_ir = (next(g for g in out.gateways if g.name == "one") for out in (before, after))
    assert new_ir.http is old_ir.http
    assert new_ir.secrets != old_ir.secrets
    pairs = list(zip(before.built[("infra", "one")], after.built[("infra", "one")], strict=True))
    assert all(old is new for old, new in pairs if new.name != "secret/infra/a-cert")  # route tables, listeners
    # The other Gateways' snapshots do not change at all.
    for name in ("two", "plain"):
        assert not before.snapshot(("infra", name)).changed_names(after.snapshot(("infra", name)))
    assert after.gateways == translate_cluster("east", _objects(A_ROTATED)).gateways


def test_private_keys_never_show_in_ir_data_repr_or_mcgw_translate(tmp_path: Path) -> None:
    output = translate_cluster("east", _objects(A_DATA))
    keys = [base64.b64decode(data["tls.key"]).decode() for data in (A_DATA, B_DATA)]
    shown = json.dumps([ir.to_data(gateway) for gateway in output.gateways]) + repr(output.gateways)
    assert "PRIVATE KEY" not in shown
    assert all(key not in shown for key in keys)
    read_back = [ir.from_data(ir.GatewayIR, ir.to_data(g, private_keys=True)) for g in output.gateways]
    assert read_back == list(output.gateways)
    cluster = tmp_path / "east"
    cluster.mkdir()
    documents = [{"apiVersion": V1, "kind": "GatewayClass", "metadata": {"name": "mcgw"},
                  "spec": {"controllerName": "mcgw.io/gateway-controller"}},
                 {"apiVersion": V1, "kind": "Gateway", "metadata": {"name": "one", "namespace": "infra"},
                  "spec": {"gatewayClassName": "mcgw", "listeners": [_https("a", 443, "a.example.com", "a-cert")]}},
                 {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                  "metadata": {"name": "a-cert", "namespace": "infra"}, "data": A_DATA}]
    (cluster / "all.yaml").write_text("\n---\n".join(json.dumps(d) for d in documents))
    result = subprocess.run([sys.executable, "-m", "mcgw", "translate", "-f", str(tmp_path), "-o", "json"],
                            capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)["east"]["xds"]["infra/one"]
    assert [s["name"] for s in printed["secrets"]] == ["secret/infra/a-cert"]
    assert printed["secrets"][0]["tlsCertificate"]["privateKey"] == {"inlineString": ir.REDACTED}
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    assert keys[0] not in result.stdout


def test_a_snapshot_refuses_secrets_nothing_uses_and_listeners_naming_missing_ones() -> None:
    output = translate_cluster("east", _objects(A_DATA))
    resources = [b.resource for b in output.built[("infra", "one")]]
    stray = next(b.resource for b in output.built[("infra", "two")] if b.resource.type_url == SECRET)
    with pytest.raises(InconsistentSnapshotError,
                       match=r"Secret not referenced by any listener or cluster: secret/infra/b-cert$") as refused:
        Snapshot.from_resources([*resources, stray])
    assert "PRIVATE KEY" not in str(refused.value)
    with pytest.raises(InconsistentSnapshotError, match="Secret referenced but missing: secret/infra/a-cert"):
        Snapshot.from_resources([r for r in resources if r.type_url != SECRET])
