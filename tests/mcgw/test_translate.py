"""Translation to Envoy: golden files in testdata/xds, and real Envoy accepts every output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mcgw import ir
from mcgw.objects.model import Gateway, parse_object
from mcgw.runtime.pipeline import translate_cluster
from tests.envoy_validate import validate
from tests.mcgw import golden

TESTDATA = Path(__file__).parent / "testdata"
XDS_CASES = golden.cases(TESTDATA / "xds")
ALL_CASES = XDS_CASES + golden.cases(TESTDATA / "routes") + golden.cases(TESTDATA / "gateways")


def _translate(documents: list[Any]) -> Any:
    objects = [parse_object(doc, f"document {i}") for i, doc in enumerate(documents)]
    addresses = {(o.metadata.namespace, o.metadata.name): ["198.18.0.10"] for o in objects if isinstance(o, Gateway)}
    result = translate_cluster("east", objects, addresses)
    for gateway in result.gateways:
        ir.validate(gateway)
    return result


def _render(documents: list[Any]) -> dict[str, Any]:
    result = _translate(documents)
    return {
        "status": result.statuses(),
        "ir": [ir.to_data(gateway) for gateway in result.gateways],
        "xds": {f"{ns}/{name}": [golden.envoy_data(m) for m in messages]
                for (ns, name), messages in sorted(result.resources.items())},
    }


@pytest.mark.parametrize("case", XDS_CASES, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_xds_golden(case: Path, update_golden: bool) -> None:
    golden.check(case, _render, update_golden)


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda p: f"{p.parent.name}/{p.name.removesuffix('.in.yaml')}")
def test_envoy_accepts_every_translated_case(case: Path) -> None:
    documents = [d for d in yaml.safe_load_all(case.read_text()) if d is not None]
    result = _translate(documents)
    for messages in result.resources.values():
        checked = validate(list(messages))
        assert checked.returncode == 0, checked.stdout + checked.stderr
