"""The deploy/envoy bootstrap renders to something real Envoy accepts, with the node identity we rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget, render_bootstrap
from tests.envoy_validate import validate_bootstrap

NODE = NodeIdentity(cluster="east", namespace="infra", gateway="public")


@pytest.mark.parametrize("api_type", ["DELTA_GRPC", "GRPC"])
def test_ads_bootstrap_is_valid_for_envoy(api_type: str) -> None:
    bootstrap = render_bootstrap(NODE, 19000, XdsTarget("127.0.0.1", 18000, api_type))  # type: ignore[arg-type]
    result = validate_bootstrap(bootstrap)
    assert result.returncode == 0, result.stdout + result.stderr
    assert bootstrap["node"] == {"id": "infra/public/0", "cluster": "east"}
    assert bootstrap["dynamic_resources"]["ads_config"]["api_type"] == api_type
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_delta_is_the_default() -> None:
    bootstrap = render_bootstrap(NODE, 19000, XdsTarget("127.0.0.1", 18000))
    assert bootstrap["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"


def test_hostname_xds_target_resolves_by_dns() -> None:
    bootstrap = render_bootstrap(NODE, 19000, XdsTarget("mcgw-xds.mcgw-system.svc", 18000))
    (xds_cluster,) = bootstrap["static_resources"]["clusters"]
    assert xds_cluster["type"] == "STRICT_DNS"


def test_static_only_bootstrap_has_no_ads() -> None:
    bootstrap = render_bootstrap(NODE, 19000, None, {"clusters": [{
        "name": "local", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "local", "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}}}]}]},
    }]})
    assert "dynamic_resources" not in bootstrap
    assert [c["name"] for c in bootstrap["static_resources"]["clusters"]] == ["local"]
    result = validate_bootstrap(bootstrap)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("bad", [{"cluster": ""}, {"gateway": "a/b"}])
def test_node_identity_rejects_ambiguous_names(bad: dict[str, str]) -> None:
    fields = {"cluster": "east", "namespace": "infra", "gateway": "public", **bad}
    with pytest.raises(ValueError, match="node identity"):
        NodeIdentity(**fields)


def test_mtls_bootstrap_is_valid_for_envoy(tmp_path: Path) -> None:
    from mcgw.dataplane.bootstrap import XdsClientTls
    from tests.e2e.testbed.pki import CertificateAuthority

    ca = CertificateAuthority(tmp_path / "pki", "ca")
    client = ca.issue("gw", "gw", uris=("spiffe://mcgw/east/infra/public",), client=True)
    tls = XdsClientTls(ca.cert_path, "mcgw-xds.mcgw-system.svc", client.cert, client.key)
    bootstrap = render_bootstrap(NODE, 19000, XdsTarget("127.0.0.1", 18000, tls=tls))
    (xds_cluster,) = bootstrap["static_resources"]["clusters"]
    assert xds_cluster["transport_socket"]["typed_config"]["sni"] == "mcgw-xds.mcgw-system.svc"
    result = validate_bootstrap(bootstrap)
    assert result.returncode == 0, result.stdout + result.stderr
