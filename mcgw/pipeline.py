"""One member cluster's objects → statuses, IR and Envoy resources: the pure core of the controller.

The runtime and ``mcgw translate`` both call :func:`translate_cluster`; only they do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from mcgw import ir
from mcgw.endpoints import endpoint_lookup
from mcgw.gateway.routes import build_gateways
from mcgw.gateway.semantics import ClusterObjects, Evaluation, evaluate
from mcgw.gateway.status import conditions_dict, gateway_status_dict, route_status_dict
from mcgw.model import AnyObject, EndpointSlice, Secret, Service, ServiceImport
from mcgw.translate import translate


@dataclass(frozen=True)
class ClusterOutput:
    cluster: str
    evaluation: Evaluation
    gateways: tuple[ir.GatewayIR, ...]
    resources: Mapping[tuple[str, str], tuple[Message, ...]]  # (namespace, gateway) -> Envoy resources

    def statuses(self) -> dict[str, Any]:
        """Every status mcgw owns in this cluster, keyed by kind and namespace/name."""
        return {
            "GatewayClass": {name: {"conditions": conditions_dict(conds)}
                             for name, conds in sorted(self.evaluation.classes.items())},
            "Gateway": {f"{ns}/{name}": gateway_status_dict(result)
                        for (ns, name), result in sorted(self.evaluation.gateways.items())},
            "HTTPRoute": {f"{ns}/{name}": route_status_dict(result)
                          for (ns, name), result in sorted(self.evaluation.routes.items())},
        }


def translate_cluster(cluster: str, objects: Iterable[AnyObject],
                      addresses: Mapping[tuple[str, str], list[str]] | None = None,
                      bind_addresses: Mapping[tuple[str, str], str] | None = None) -> ClusterOutput:
    items = list(objects)
    services = [o for o in items if isinstance(o, Service)]
    imports = [o for o in items if isinstance(o, ServiceImport)]
    secrets = {(o.metadata.namespace, o.metadata.name): o for o in items if isinstance(o, Secret)}
    evaluation = evaluate(ClusterObjects.of(
        items, {(s.metadata.namespace, s.metadata.name) for s in services},
        {(s.metadata.namespace, s.metadata.name) for s in imports}), addresses)
    lookup = endpoint_lookup(services, (o for o in items if isinstance(o, EndpointSlice)))
    gateways = tuple(build_gateways(cluster, evaluation, lookup, secrets, bind_addresses))
    resources = {(g.namespace, g.name): tuple(translate(g)) for g in gateways}
    return ClusterOutput(cluster, evaluation, gateways, resources)


class ClusterTranslator:
    """One member cluster's translation, kept between calls so a small change costs little.

    Call :meth:`translate` with the cluster's complete current objects each time; the result always
    equals :func:`translate_cluster` on the same inputs. (For now it delegates to it; incremental
    reuse of unchanged work comes next.)
    """

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster

    def translate(self, objects: Iterable[AnyObject],
                  addresses: Mapping[tuple[str, str], list[str]] | None = None,
                  bind_addresses: Mapping[tuple[str, str], str] | None = None) -> ClusterOutput:
        return translate_cluster(self.cluster, objects, addresses, bind_addresses)
