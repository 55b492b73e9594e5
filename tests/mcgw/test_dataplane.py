"""A provisioned Gateway's addresses and Programmed, from what was observed of its Envoys.

Golden cases in ``testdata/dataplane``: a cluster's objects (Gateways, and their generated Services and
Deployments as the informers would show them) plus a ``facts`` document (Envoys' standing with the xDS
server per Gateway, names held by someone else's objects, address pools) → every Gateway's status. Below
them, how an Envoy's standing is read from the xDS server's status records.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from mcgw.app.provisioning import ACK_GRACE, envoy_acks
from mcgw.objects.model import Deployment, Gateway, Service, parse_object
from mcgw.provisioning import object_name
from mcgw.semantics.gateway.dataplane import Dataplane, EnvoyAcks
from mcgw.semantics.gateway.evaluate import ClusterObjects, evaluate
from mcgw.semantics.gateway.status import gateway_status_dict
from tests.mcgw import golden
from xdsserver import CLUSTER, LISTENER, ROUTE, NodeStatus, TypeStatus

TESTDATA = Path(__file__).parent / "testdata" / "dataplane"


def _statuses(documents: list[Any]) -> dict[str, Any]:
    facts = documents[0]["facts"]
    objects = [parse_object(doc, f"document {i}") for i, doc in enumerate(documents[1:], start=1)]
    by_key = {obj.key: obj for obj in objects}
    pools = tuple(ipaddress.ip_network(p) for p in facts.get("pools", []))
    dataplane = {}
    for gateway in (o for o in objects if isinstance(o, Gateway)):
        namespace, name = gateway.metadata.namespace, gateway.metadata.name
        generated = object_name(name)
        service = by_key.get(("Service", namespace, generated))
        deployment = by_key.get(("Deployment", namespace, generated))
        assert service is None or isinstance(service, Service)
        assert deployment is None or isinstance(deployment, Deployment)
        dataplane[(namespace, name)] = Dataplane(
            service, deployment, EnvoyAcks(**facts.get("envoys", {}).get(f"{namespace}/{name}", {})),
            tuple(facts.get("blocked", {}).get(f"{namespace}/{name}", [])), pools, generated,
            other_xds_servers=f"{namespace}/{name}" in facts.get("replicated", []))
    evaluation = evaluate(ClusterObjects.of(objects), dataplane=dataplane)
    return {f"{ns}/{name}": {key: value for key, value in gateway_status_dict(result).items() if key != "listeners"}
            for (ns, name), result in sorted(evaluation.gateways.items())}


@pytest.mark.parametrize("case", golden.cases(TESTDATA), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_dataplane_status_golden(case: Path, update_golden: bool) -> None:
    golden.check(case, _statuses, update_golden)


def _node(group: tuple[str, str] = ("east", "infra/gw"), **types: TypeStatus) -> NodeStatus:
    node = NodeStatus(f"{group[1]}/pod", group[0], group, "delta", "peer")
    node.types.update({{"lds": LISTENER, "rds": ROUTE, "cds": CLUSTER}[k]: v for k, v in types.items()})
    return node


NOW = 10_000.0


def test_an_envoy_is_current_once_it_acked_what_it_was_sent() -> None:
    acked = TypeStatus(sent_version="v2", acked_version="v2", last_push=NOW - 60)
    assert envoy_acks([_node(lds=acked, rds=acked)], NOW) == {("east", "infra/gw"): EnvoyAcks(1, 1, 0)}
    # Connected, but no listener ACKed yet (clusters only): not current.
    assert envoy_acks([_node(cds=acked)], NOW) == {("east", "infra/gw"): EnvoyAcks(1, 0, 0)}


def test_a_new_push_gets_a_grace_before_the_envoy_counts_as_behind() -> None:
    pushed = TypeStatus(sent_version="v3", acked_version="v2", last_push=NOW - 1)
    old = TypeStatus(sent_version="v3", acked_version="v2", last_push=NOW - ACK_GRACE - 1)
    acked = TypeStatus(sent_version="v2", acked_version="v2")
    assert envoy_acks([_node(lds=acked, rds=pushed)], NOW)[("east", "infra/gw")].current == 1
    assert envoy_acks([_node(lds=acked, rds=old)], NOW)[("east", "infra/gw")].current == 0
    # The grace is for Envoys that had ACKed before: a first push must be ACKed.
    first = TypeStatus(sent_version="v1", last_push=NOW)
    assert envoy_acks([_node(lds=first)], NOW)[("east", "infra/gw")].current == 0


def test_a_rejection_of_the_latest_push_counts_as_rejected() -> None:
    acked = TypeStatus(sent_version="v2", acked_version="v2")
    rejected = TypeStatus(sent_version="v3", acked_version="v2", nacked_version="v3", last_push=NOW)
    older = TypeStatus(sent_version="v4", acked_version="v4", nacked_version="v3", last_push=NOW)
    assert envoy_acks([_node(lds=acked, rds=rejected)], NOW) == {("east", "infra/gw"): EnvoyAcks(1, 0, 1)}
    assert envoy_acks([_node(lds=acked, rds=older)], NOW) == {("east", "infra/gw"): EnvoyAcks(1, 1, 0)}


def test_envoys_are_counted_per_gateway() -> None:
    acked = TypeStatus(sent_version="v", acked_version="v")
    nodes = [_node(("east", "infra/a"), lds=acked), _node(("east", "infra/a")), _node(("west", "infra/a"), lds=acked)]
    assert envoy_acks(nodes, NOW) == {("east", "infra/a"): EnvoyAcks(2, 1, 0), ("west", "infra/a"): EnvoyAcks(1, 1, 0)}


def test_a_listener_on_a_port_the_provisioned_envoy_uses_itself_is_port_unavailable() -> None:
    from mcgw.provisioning import READY_PORT, RESERVED_PORTS

    documents = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
         "spec": {"controllerName": "mcgw.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "gw", "namespace": "infra", "generation": 3},
         "spec": {"gatewayClassName": "mcgw", "listeners": [
             {"name": "http", "port": 80, "protocol": "HTTP"},
             {"name": "ready", "port": READY_PORT, "protocol": "HTTP"}]}}]
    objects = [parse_object(doc, "test") for doc in documents]
    evaluation = evaluate(ClusterObjects.of(objects), dataplane={
        ("infra", "gw"): Dataplane(name="mcgw-gw", reserved_ports=RESERVED_PORTS)})
    listeners = {listener["name"]: {c["type"]: (c["status"], c["reason"], c["observedGeneration"])
                                    for c in listener["conditions"]}
                 for listener in gateway_status_dict(evaluation.gateways[("infra", "gw")])["listeners"]}
    assert listeners["ready"]["Accepted"] == ("False", "PortUnavailable", 3)
    assert listeners["ready"]["Programmed"] == ("False", "Invalid", 3)
    assert listeners["http"]["Accepted"] == ("True", "Accepted", 3)
    # Without provisioning (the operator's own Envoys, standalone mode) the port is the operator's to use.
    plain = evaluate(ClusterObjects.of(objects), addresses={("infra", "gw"): ["127.0.0.1"]})
    assert all(c.status == "True" for listener in plain.gateways[("infra", "gw")].listeners
               for c in listener.conditions if c.type == "Accepted")
