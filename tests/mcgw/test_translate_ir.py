"""The Envoy translator on its own: IR in testdata/ir (plain data, read with ``ir.from_data``) to the Envoy
resources it gives, checked against golden files, accepted by real Envoy, and the same from the cache.

Each ``<case>.in.yaml`` holds one or more GatewayIR documents; ``<case>.out.yaml`` holds every resource of
each Gateway in translation order, rendered as the xds tier renders them. ``pytest --update-golden``
rewrites them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.config.route.v3 import route_pb2

from mcgw import ir
from mcgw.translate import GatewayResources, translate
from tests.envoy_validate import validate
from tests.mcgw import golden

CASES = golden.cases(Path(__file__).parent / "testdata" / "ir")


def _gateways(documents: list[Any]) -> list[ir.GatewayIR]:
    gateways = [ir.from_data(ir.GatewayIR, document) for document in documents]
    for gateway in gateways:
        ir.validate(gateway)
    return gateways


def _load(case: Path) -> list[ir.GatewayIR]:
    return _gateways([d for d in yaml.safe_load_all(case.read_text()) if d is not None])


def _render(documents: list[Any]) -> dict[str, Any]:
    return {f"{g.namespace}/{g.name}": [golden.envoy_data(built.message) for built in translate(g)]
            for g in _gateways(documents)}


def _case_id(case: Path) -> str:
    return case.name.removesuffix(".in.yaml")


def test_the_tier_has_cases() -> None:
    assert len(CASES) >= 9


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_ir_golden(case: Path, update_golden: bool) -> None:
    golden.check(case, _render, update_golden)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_envoy_accepts_every_ir_case(case: Path) -> None:
    for gateway in _load(case):
        checked = validate([built.message for built in translate(gateway)])
        assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_plain_data_is_read_back_as_the_same_ir(case: Path) -> None:
    for gateway in _load(case):
        assert ir.from_data(ir.GatewayIR, ir.to_data(gateway, private_keys=True)) == gateway


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_the_cache_gives_what_a_translation_from_scratch_gives(case: Path) -> None:
    for gateway in _load(case):
        expected = [(built.name, built.message) for built in translate(gateway)]
        resources = GatewayResources()
        assert [(built.name, built.message) for built in resources.update(gateway)] == expected
        assert [(built.name, built.message) for built in resources.update(gateway)] == expected


def test_from_data_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"GatewayIR: GatewayIR needs http"):
        ir.from_data(ir.GatewayIR, {"cluster": "east", "namespace": "ns", "name": "gw", "address": "0.0.0.0"})
    with pytest.raises(ValueError, match=r"BackendIR.kind: 'Pod' is not one of"):
        ir.from_data(ir.BackendIR, {"name": "b", "weight": 1, "valid": True, "kind": "Pod"})
    with pytest.raises(ValueError, match=r"MatchIR has no field regex"):
        ir.from_data(ir.MatchIR, {"path_type": "Exact", "path": "/", "regex": True})


def test_a_redirect_shared_by_two_listeners_gets_each_listeners_port_from_scratch_and_from_the_cache() -> None:
    redirect = ir.RouteIR("shop/r/rule/0/match/0", ir.MatchIR("PathPrefix", "/"),
                          redirect=ir.RedirectIR(None, "example.org", None, None, 302))
    ports = [ir.HTTPListenerIR(f"infra/public/{port}", port, "HTTP",
                               (ir.VirtualHostIR(f"infra/public/{port}/*", "*", (redirect,)),))
             for port in (80, 8080)]
    gateway = ir.GatewayIR("east", "infra", "public", "0.0.0.0", tuple(ports))
    ir.validate(gateway)
    expected = [(built.name, built.message) for built in translate(gateway)]
    ports_redirected = [table.virtual_hosts[0].routes[0].redirect.port_redirect
                        for _, table in expected if isinstance(table, route_pb2.RouteConfiguration)]
    assert ports_redirected == [0, 8080]
    resources = GatewayResources()
    assert [(built.name, built.message) for built in resources.update(gateway)] == expected
    # The second listener moves to port 443 under the same names: its kept virtual host is encoded again.
    moved = gateway._replace(http=(ports[0], ports[1]._replace(port=443)))
    assert [(built.name, built.message) for built in resources.update(moved)] == \
        [(built.name, built.message) for built in translate(moved)]
