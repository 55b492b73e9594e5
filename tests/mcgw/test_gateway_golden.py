"""GatewayClass and Gateway status, checked against golden files in testdata/gateways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcgw.gateway.listeners import class_status, gateway_status
from mcgw.gateway.status import conditions_dict, gateway_status_dict
from mcgw.model import Gateway, GatewayClass, ReferenceGrant, Secret, parse_object
from tests.mcgw import golden

TESTDATA = Path(__file__).parent / "testdata" / "gateways"


def _statuses(documents: list[Any]) -> dict[str, Any]:
    objects = [parse_object(doc, f"doc {i}") for i, doc in enumerate(documents)]
    classes = {o.metadata.name: o for o in objects if isinstance(o, GatewayClass)}
    secrets = {(o.metadata.namespace, o.metadata.name): o for o in objects if isinstance(o, Secret)}
    grants = [o for o in objects if isinstance(o, ReferenceGrant)]
    out: dict[str, Any] = {"gatewayClasses": {}, "gateways": {}}
    for name, gateway_class in classes.items():
        status = class_status(gateway_class)
        out["gatewayClasses"][name] = conditions_dict(status) if status is not None else "not ours"
    for gateway in (o for o in objects if isinstance(o, Gateway)):
        result = gateway_status(gateway, classes, secrets, grants, addresses=["127.0.0.10"])
        key = f"{gateway.metadata.namespace}/{gateway.metadata.name}"
        out["gateways"][key] = gateway_status_dict(result) if result is not None else "not ours"
    return out


@pytest.mark.parametrize("case", golden.cases(TESTDATA), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_gateway_golden(case: Path, update_golden: bool) -> None:
    golden.check(case, _statuses, update_golden)
