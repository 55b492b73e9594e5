"""One member cluster's objects → statuses, IR and Envoy resources: the pure core of the controller.

:func:`translate_cluster` translates from scratch (``mcgw translate``, tests). The runtime keeps a
:class:`ClusterTranslator` per cluster, which gives the same output but redoes only what changed since
its previous call (:mod:`mcgw.incremental`). Only their callers do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from google.protobuf.message import Message

from mcgw import ir
from mcgw.ir.build import build_gateways
from mcgw.objects.model import AnyObject, BackendTLSPolicy, EndpointSlice, Secret, Service
from mcgw.runtime.incremental import IncrementalTranslation, McsInput, failover_context
from mcgw.semantics.endpoints import endpoint_lookup
from mcgw.semantics.gateway.backends import app_protocol_lookup, port_name_lookup
from mcgw.semantics.gateway.conditions import Condition
from mcgw.semantics.gateway.dataplane import Dataplane
from mcgw.semantics.gateway.evaluate import ClusterObjects, Evaluation, evaluate
from mcgw.semantics.gateway.features import SUPPORTED_FEATURES
from mcgw.semantics.gateway.routekinds import ROUTE_KINDS
from mcgw.semantics.gateway.status import conditions_dict, gateway_status_dict, route_status_dict
from mcgw.semantics.policy.backendtls import NO_BACKEND_TLS, BackendTLSResolution, resolve_backend_tls
from mcgw.semantics.policy.backendtls_status import backend_tls_statuses
from mcgw.translate import Built, translate
from xdsserver import Snapshot

GatewayKey = tuple[str, str]  # (namespace, name)


class _LazyResources(Mapping[GatewayKey, tuple[Message, ...]]):
    """Envoy messages made from pre-serialised resources only when someone reads them: publishing uses the
    bytes, and parsing a large route table back into a message would cost more than translating a change."""

    def __init__(self, built: Mapping[GatewayKey, tuple[Built, ...]]) -> None:
        self._built = built
        self._messages: dict[GatewayKey, tuple[Message, ...]] = {}

    def __getitem__(self, key: GatewayKey) -> tuple[Message, ...]:
        messages = self._messages.get(key)
        if messages is None:
            messages = self._messages[key] = tuple(b.message for b in self._built[key])
        return messages

    def __iter__(self) -> Iterator[GatewayKey]:
        return iter(self._built)

    def __len__(self) -> int:
        return len(self._built)


@dataclass(frozen=True)
class ClusterOutput:
    cluster: str
    evaluation: Evaluation
    gateways: tuple[ir.GatewayIR, ...]
    resources: Mapping[tuple[str, str], tuple[Message, ...]]  # (namespace, gateway) -> Envoy resources
    # The same resources already serialised, for snapshot().
    built: Mapping[tuple[str, str], tuple[Built, ...]] = field(compare=False, repr=False)
    # FailoverPolicy -> Accepted (and ResolvedRefs, for one with a fallback list)
    policies: Mapping[tuple[str, str], tuple[Condition, ...]] = field(default_factory=dict)
    # ServiceImport ports with a capacity: (namespace, name, port) -> requests per second their first level serves
    capacities: Mapping[tuple[str, str, int], float] = field(default_factory=dict)
    backend_tls: BackendTLSResolution = NO_BACKEND_TLS

    def statuses(self) -> dict[str, Any]:
        """Every status mcgw owns in this cluster, keyed by kind and namespace/name."""
        statuses: dict[str, Any] = {
            "GatewayClass": {name: {"conditions": conditions_dict(conds),
                                    "supportedFeatures": [{"name": feature} for feature in SUPPORTED_FEATURES]}
                             for name, conds in sorted(self.evaluation.classes.items())},
            "Gateway": {f"{ns}/{name}": gateway_status_dict(result)
                        for (ns, name), result in sorted(self.evaluation.gateways.items())},
        }
        for kind in ROUTE_KINDS:
            statuses[kind] = {}
        for (kind, ns, name), result in sorted(self.evaluation.routes.items()):
            statuses[kind][f"{ns}/{name}"] = route_status_dict(result)
        statuses["FailoverPolicy"] = {f"{ns}/{name}": {"conditions": conditions_dict(conditions)}
                                      for (ns, name), conditions in sorted(self.policies.items())}
        statuses["BackendTLSPolicy"] = backend_tls_statuses(self.backend_tls, self.evaluation.routes.values())
        return statuses

    def snapshot(self, gateway: tuple[str, str], previous: Snapshot | None = None) -> Snapshot:
        """The xDS snapshot of one gateway. Equal to ``Snapshot.from_messages(self.resources[gateway],
        previous)``, but it reuses the bytes serialised during translation (and, from a
        :class:`ClusterTranslator`, the previous output's for unchanged resources), so nothing is serialised twice."""
        return Snapshot.from_resources((b.resource for b in self.built[gateway]), previous)


def translate_cluster(cluster: str, objects: Iterable[AnyObject],
                      addresses: Mapping[tuple[str, str], list[str]] | None = None,
                      bind_addresses: Mapping[tuple[str, str], str] | None = None,
                      mcs: McsInput | None = None,
                      dataplane: Mapping[tuple[str, str], Dataplane] | None = None) -> ClusterOutput:
    """Translate one cluster from scratch. ``mcs`` carries the ClusterSet's imports and cluster properties
    (ServiceImport backends get their endpoints and failover priorities from it)."""
    items = list(objects)
    by_kind: dict[str, dict[tuple[str, str], AnyObject]] = {}
    for item in items:
        by_kind.setdefault(item.kind, {})[(item.metadata.namespace, item.metadata.name)] = item
    failover = failover_context(cluster, by_kind, mcs)
    backend_tls = resolve_backend_tls(
        (o for o in by_kind.get("BackendTLSPolicy", {}).values() if isinstance(o, BackendTLSPolicy)),
        by_kind.get("ConfigMap", {}))
    services = [o for o in items if isinstance(o, Service)]
    secrets = {(o.metadata.namespace, o.metadata.name): o for o in items if isinstance(o, Secret)}
    # Mappings, not key sets: backendRef ports are checked against the Services, and ServiceImport
    # backends against the ClusterSet's imports (which win over a cluster's ServiceImport objects).
    evaluation = evaluate(replace(ClusterObjects.of(
        items, {(s.metadata.namespace, s.metadata.name): s for s in services},
        {**by_kind.get("ServiceImport", {}), **failover.imports}),
        tls=backend_tls.covers if backend_tls.by_target else None), addresses, dataplane)
    lookup = endpoint_lookup(services, (o for o in items if isinstance(o, EndpointSlice)))
    gateways = tuple(build_gateways(cluster, evaluation, lookup, secrets, bind_addresses, failover,
                                    app_protocol_lookup(by_kind.get("Service", {})), backend_tls,
                                    port_name_lookup(by_kind.get("Service", {}))))
    built = {(g.namespace, g.name): translate(g) for g in gateways}
    return ClusterOutput(cluster, evaluation, gateways, _LazyResources(built), built,
                         policies=failover.resolution.statuses(), backend_tls=backend_tls,
                         capacities=failover.capacities())


class ClusterTranslator:
    """One member cluster's translation, kept between calls so that a small change costs little.

    Call :meth:`translate` with the cluster's complete current objects each time (objects unchanged since
    the previous call should be the very same Python objects: that is how changes are found cheaply). The
    result always equals :func:`translate_cluster` on the same inputs. Not thread-safe: one call at a time.
    """

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self._state = IncrementalTranslation(cluster)

    def translate(self, objects: Iterable[AnyObject],
                  addresses: Mapping[tuple[str, str], list[str]] | None = None,
                  bind_addresses: Mapping[tuple[str, str], str] | None = None,
                  mcs: McsInput | None = None,
                  dataplane: Mapping[tuple[str, str], Dataplane] | None = None) -> ClusterOutput:
        translated = self._state.update(objects, addresses, bind_addresses, mcs, dataplane)
        return ClusterOutput(self.cluster, translated.evaluation, translated.gateways,
                             _LazyResources(translated.resources), translated.resources,
                             policies=translated.failover.resolution.statuses(),
                             backend_tls=translated.backend_tls, capacities=translated.failover.capacities())
