"""Gateway API statuses, checked against golden files: testdata/gateways and testdata/routes.

Each ``*.in.yaml`` holds one member cluster's manifests; the output is every status mcgw computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcgw.objects.model import Service, ServiceImport, parse_object
from mcgw.semantics.gateway.evaluate import ClusterObjects, evaluate
from mcgw.semantics.gateway.status import conditions_dict, gateway_status_dict, route_status_dict
from tests.mcgw import golden

TESTDATA = Path(__file__).parent / "testdata"
CASES = golden.cases(TESTDATA / "gateways") + golden.cases(TESTDATA / "routes")


def _statuses(documents: list[Any]) -> dict[str, Any]:
    objects = [parse_object(doc, f"document {i}") for i, doc in enumerate(documents)]
    services = {(o.metadata.namespace, o.metadata.name) for o in objects if isinstance(o, Service)}
    imports = {(o.metadata.namespace, o.metadata.name) for o in objects if isinstance(o, ServiceImport)}
    evaluation = evaluate(ClusterObjects.of(objects, services, imports),
                          addresses={key: ["127.0.0.10"] for key in {(o.metadata.namespace, o.metadata.name)
                                                                     for o in objects if o.kind == "Gateway"}})
    out: dict[str, Any] = {
        "gatewayClasses": {name: conditions_dict(conds) for name, conds in evaluation.classes.items()},
        "gateways": {f"{ns}/{name}": gateway_status_dict(result)
                     for (ns, name), result in sorted(evaluation.gateways.items())},
        "httpRoutes": {f"{ns}/{name}": route_status_dict(result)
                       for (kind, ns, name), result in sorted(evaluation.routes.items()) if kind == "HTTPRoute"},
    }
    for kind_name, key in (("GRPCRoute", "grpcRoutes"), ("TLSRoute", "tlsRoutes"), ("TCPRoute", "tcpRoutes"),
                           ("UDPRoute", "udpRoutes")):
        routes = {f"{ns}/{name}": route_status_dict(result)
                  for (kind, ns, name), result in sorted(evaluation.routes.items()) if kind == kind_name}
        if routes:
            out[key] = routes
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name.removesuffix('.in.yaml')}")
def test_status_golden(case: Path, update_golden: bool) -> None:
    golden.check(case, _statuses, update_golden)
