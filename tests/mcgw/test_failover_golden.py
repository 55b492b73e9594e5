"""FailoverPolicy golden files (testdata/failover): each case adds objects to the three-cluster example
(examples/failover) and may change cluster properties or give capacity decisions; the output is what east's
gateway Envoy gets for the ServiceImport (its cluster's balancing, its ClusterLoadAssignment, the levels as
``mcgw translate`` shows them) and the policies' statuses. Regenerate with ``pytest --update-golden``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment

from mcgw.objects.clusterset import ClusterProperties
from mcgw.objects.model import parse_object
from mcgw.providers.files.manifests import read_clusterset_dir
from mcgw.runtime.incremental import McsInput
from mcgw.runtime.pipeline import translate_cluster
from mcgw.semantics.mcs.exports import compute_mcs
from mcgw.translate.describe import failover_levels
from tests.envoy_validate import validate
from tests.mcgw import golden

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "failover"
CASES = golden.cases(Path(__file__).parent / "testdata" / "failover")


def _translate(documents: list[Any]) -> Any:
    (case,) = documents
    properties, objects = read_clusterset_dir(EXAMPLE)
    clusters = {c.name: c for c in properties.clusters}
    for name, changes in (case.get("clusters") or {}).items():
        clusters[name] = ClusterProperties(**{**clusters[name].model_dump(), **changes})
    removed = set(case.get("remove") or ())  # "cluster/Kind/name" of the example's objects to leave out
    objects = {cluster: [o for o in items if f"{cluster}/{o.kind}/{o.metadata.name}" not in removed]
               for cluster, items in objects.items()}
    for cluster, added in (case.get("add") or {}).items():
        objects[cluster] = [*objects[cluster], *(parse_object(doc, f"{cluster} {i}") for i, doc in enumerate(added))]
    overflow = {(d["namespace"], d["name"], d["port"]): d["share"] for d in case.get("overflow") or ()}
    view = compute_mcs(objects, {}, time.time()).view
    return translate_cluster(case.get("cluster", "east"), objects[case.get("cluster", "east")],
                             mcs=McsInput(view.services, clusters, overflow))


def _render(documents: list[Any]) -> dict[str, Any]:
    result = _translate(documents)
    out: dict[str, Any] = {"status": result.statuses()["FailoverPolicy"], "capacities": {
        f"{ns}/{name}:{port}": value for (ns, name, port), value in sorted(result.capacities.items())}}
    for _, messages in sorted(result.resources.items()):
        for message in messages:
            if isinstance(message, ClusterLoadAssignment) and message.cluster_name.startswith("serviceimport/"):
                out.setdefault(message.cluster_name, {}).update(levels=failover_levels(message),
                                                                endpoints=golden.envoy_data(message))
            elif message.DESCRIPTOR.name == "Cluster" and message.name.startswith("serviceimport/"):
                out.setdefault(message.name, {})["commonLbConfig"] = golden.envoy_data(message).get("commonLbConfig")
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_failover_golden(case: Path, update_golden: bool) -> None:
    golden.check(case, _render, update_golden)


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_envoy_accepts_every_failover_case(case: Path) -> None:
    import yaml
    result = _translate([doc for doc in yaml.safe_load_all(case.read_text()) if doc is not None])
    for messages in result.resources.values():
        checked = validate(list(messages))
        assert checked.returncode == 0, checked.stdout + checked.stderr
