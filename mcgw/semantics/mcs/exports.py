"""Multi-Cluster Services (KEP-1645, mcs-api v1beta1): every member cluster's ServiceExports → what each
member cluster should hold, as one pure function, :func:`compute_mcs`.

Decisions, and why:

- **Valid.** False with ``NoService`` when the exported Service does not exist, ``InvalidServiceType`` for
  an ExternalName Service (it has no endpoints to share). An invalid export takes no part in anything else.
- **Ready.** True ``Exported`` for a valid export that is part of the ServiceImport (mcgw pushes it to every
  cluster). False ``Pending`` while the Service is missing (the export starts by itself once the Service
  exists) and while the export's cluster has been lost for longer than the TTL (it comes back with the
  cluster); False ``Failed`` for an ExternalName Service (nothing happens until the user changes it).
- **Conflicts.** The oldest export (creationTimestamp, then cluster name) decides the type, session
  affinity, traffic policies, IP families and exported labels/annotations. Ports are merged into a union,
  by name first, then by protocol and port (the same number and protocol under another name is the same
  port, with the older name): a port whose name is taken with another port or protocol, or whose number
  another cluster uses with another protocol, or whose appProtocol differs, is a PortConflict and is
  served only by the clusters that expose the winning definition. IP families are compared between
  ClusterSetIP exports only (a headless Service has no cluster IP). Every reason found is joined with
  commas on the ``Conflict`` condition of *every* export of the service; ``NoConflicts`` otherwise.
- **ServiceImport Ready.** True ``Ready`` while every exporter is reachable; reason ``SourceClusterLost``
  (see below) otherwise. It has no ``ips``: mcgw allocates no ClusterSet IP, gateways route to endpoints.
- **Lost clusters.** A member cluster whose API server is unavailable keeps its exports and endpoints for
  ``lost_cluster_ttl`` seconds after it was lost (its sources carry ``lost_since``, so Envoy health checks,
  not the control plane, decide meanwhile). Then its endpoints are withdrawn and it leaves
  ``status.clusters``. The ServiceImport says so the whole time (Ready reason ``SourceClusterLost``), and a
  ServiceImport whose only exporters are lost stays (Ready False), because its exports did not go away.
- **Endpoints** come only from each source cluster's own Service slices (``kubernetes.io/service-name``),
  never from slices mcgw imported, so imports cannot feed back into themselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from mcgw.objects.model import AnyObject, EndpointSlice, Namespace, Service, ServiceExport, ServicePort
from mcgw.semantics.endpoints import slice_endpoints
from mcgw.semantics.mcs.names import IMPORT_MANAGED_BY, LOCAL_SERVICE_NAME, MANAGER, MCS_API_VERSION
from mcgw.semantics.mcs.slices import is_imported, source_slices
from mcgw.semantics.mcs.view import ClusterSetView, ImportedService, ImportPort, SourceEndpoints
from mcgw.store import ClusterHealth
from mcgw.support.timestamps import rfc3339

DEFAULT_LOST_CLUSTER_TTL = 300.0

# The order the reference lists the conflict reasons in; reasons are joined in this order.
CONFLICT_REASONS = ("PortConflict", "TypeConflict", "SessionAffinityConflict", "SessionAffinityConfigConflict",
                    "LabelsConflict", "AnnotationsConflict", "InternalTrafficPolicyConflict",
                    "TrafficDistributionConflict", "IPFamilyConflict")

NamespacedName = tuple[str, str]
Condition = dict[str, Any]


class LostCluster(NamedTuple):
    """A member cluster that cannot be reached, and what that means for its exports."""

    cluster: str
    since: float  # wall-clock time it became unavailable
    reason: str
    deadline: float  # since + TTL: when its endpoints are (or were) withdrawn
    withdrawn: bool
    exports: tuple[NamespacedName, ...]  # its valid exports, sorted


@dataclass(frozen=True)
class ClusterMcs:
    """What one member cluster should hold: statuses of its exports, and the imports and slices it receives."""

    exports: Mapping[NamespacedName, dict[str, Any]] = field(default_factory=dict)  # ServiceExport status
    imports: Mapping[NamespacedName, dict[str, Any]] = field(default_factory=dict)  # whole ServiceImport
    slices: Mapping[NamespacedName, dict[str, Any]] = field(default_factory=dict)  # whole EndpointSlice


@dataclass(frozen=True)
class McsResult:
    view: ClusterSetView
    clusters: Mapping[str, ClusterMcs]
    lost: tuple[LostCluster, ...] = ()
    next_deadline: float | None = None  # when a lost cluster's TTL runs out: compute again then


# -- inputs ---------------------------------------------------------------------------------------------

class _Export(NamedTuple):
    cluster: str
    export: ServiceExport
    service: Service
    order: tuple[int, float, str]  # oldest first: known timestamps, then by time, then cluster name
    state: Literal["active", "kept", "withdrawn"]
    lost_since: float | None


def _created(timestamp: str) -> tuple[int, float]:
    try:
        return 0, dt.datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        return 1, 0.0  # unknown (e.g. a file without it): after every known one


def _condition(kind: str, status: bool, reason: str, message: str, generation: int | None) -> Condition:
    condition: Condition = {"type": kind, "status": "True" if status else "False", "reason": reason,
                            "message": message}
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def _names(clusters: Iterable[str]) -> str:
    return ", ".join(clusters) or "none"


# -- the port union -------------------------------------------------------------------------------------

@dataclass
class _Union:
    ports: list[ImportPort] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)  # the cluster whose export defined each port
    exposes: dict[str, dict[int, ServicePort]] = field(default_factory=dict)  # cluster -> union index -> own port
    conflicts: list[str] = field(default_factory=list)


def _describe(port: ImportPort | ServicePort) -> str:
    name = f"{port.name!r} " if port.name else "unnamed "
    app = f" ({port.app_protocol})" if port.app_protocol else ""
    return f"{name}{port.port}/{port.protocol or 'TCP'}{app}"


def _merge_ports(ordered: Sequence[_Export]) -> _Union:
    """Union of the exports' ports, oldest export first: by name, then by protocol and port."""
    union = _Union()
    for item in ordered:
        exposed = union.exposes.setdefault(item.cluster, {})
        for own in item.service.spec.ports:
            protocol = own.protocol or "TCP"
            app = own.app_protocol or None
            named = next((i for i, p in enumerate(union.ports) if p.name == own.name), None)
            same = next((i for i, p in enumerate(union.ports) if (p.port, p.protocol) == (own.port, protocol)), None)
            match = named if named is not None else same
            if match is not None:
                port = union.ports[match]
                owner = union.owners[match]
                if (port.port, port.protocol) != (own.port, protocol):
                    union.conflicts.append(f"port {_describe(own)} of {item.cluster} differs from {_describe(port)} "
                                           f"of {owner} (the older export wins; {item.cluster} does not serve it)")
                    continue
                if port.app_protocol != app:
                    union.conflicts.append(f"port {_describe(own)} of {item.cluster} differs from {_describe(port)} "
                                           f"of {owner} in appProtocol (the older export's is used)")
                exposed[match] = own
                continue
            clash = next((i for i, p in enumerate(union.ports)
                          if p.port == own.port and union.owners[i] != item.cluster), None)
            if clash is not None:
                union.conflicts.append(f"port {_describe(own)} of {item.cluster} uses the number of "
                                       f"{_describe(union.ports[clash])} of {union.owners[clash]} with another "
                                       f"protocol (the older export wins; {item.cluster} does not serve it)")
                continue
            union.ports.append(ImportPort(own.name, protocol, own.port, app))
            union.owners.append(item.cluster)
            exposed[len(union.ports) - 1] = own
    return union


# -- the other conflicts ---------------------------------------------------------------------------------

def _affinity(service: Service) -> str:
    return service.spec.session_affinity or "None"


def _affinity_timeout(service: Service) -> int | None:
    config = service.spec.session_affinity_config
    return config.client_ip.timeout_seconds if config and config.client_ip else None


def _traffic_policy(service: Service) -> str:
    return service.spec.internal_traffic_policy or "Cluster"  # the API server's default


def _service_type(service: Service) -> Literal["ClusterSetIP", "Headless"]:
    return "Headless" if service.spec.headless else "ClusterSetIP"


def _conflicts(ordered: Sequence[_Export], union: _Union) -> list[tuple[str, str]]:
    """(reason, message) for every property the exports disagree on, in the reference's order."""
    oldest = ordered[0]
    found: list[tuple[str, str]] = []
    if union.conflicts:
        found.append(("PortConflict", "; ".join(union.conflicts)))

    def check(reason: str, what: str, value: Any, differs: Any = None) -> None:
        odd = [item.cluster for item in ordered[1:]
               if (differs(oldest, item) if differs else value(item) != value(oldest))]
        if odd:
            found.append((reason, f"{what} {value(oldest)!r} of the oldest export ({oldest.cluster}) is used; "
                                  f"{_names(odd)} differ"))

    check("TypeConflict", "type", lambda e: _service_type(e.service))
    check("SessionAffinityConflict", "sessionAffinity", lambda e: _affinity(e.service))
    check("SessionAffinityConfigConflict", "sessionAffinityConfig.clientIP.timeoutSeconds",
          lambda e: _affinity_timeout(e.service),
          lambda a, b: _affinity(a.service) == _affinity(b.service) == "ClientIP"
          and _affinity_timeout(a.service) != _affinity_timeout(b.service))
    check("LabelsConflict", "exportedLabels", lambda e: dict(sorted(e.export.spec.exported_labels.items())))
    check("AnnotationsConflict", "exportedAnnotations",
          lambda e: dict(sorted(e.export.spec.exported_annotations.items())))
    check("InternalTrafficPolicyConflict", "internalTrafficPolicy", lambda e: _traffic_policy(e.service))
    check("TrafficDistributionConflict", "trafficDistribution", lambda e: e.service.spec.traffic_distribution)
    # IP families pick the families of a cluster IP; a headless Service has none (and the API server gives a
    # selector-less one both families), so only two ClusterSetIP exports can disagree on them.
    check("IPFamilyConflict", "ipFamilies", lambda e: list(e.service.spec.ip_families),
          lambda a, b: not a.service.spec.headless and not b.service.spec.headless
          and bool(a.service.spec.ip_families) and bool(b.service.spec.ip_families)
          and set(a.service.spec.ip_families) != set(b.service.spec.ip_families))
    return found


# -- the ServiceImport ------------------------------------------------------------------------------------

def _import_spec(oldest: _Export, union: _Union) -> dict[str, Any]:
    service = oldest.service.spec
    ports = []
    for port in union.ports:
        entry: dict[str, Any] = {"name": port.name} if port.name else {}
        entry |= {"protocol": port.protocol, "port": port.port}
        if port.app_protocol:
            entry["appProtocol"] = port.app_protocol
        ports.append(entry)
    spec: dict[str, Any] = {"type": _service_type(oldest.service), "ports": ports,
                            "sessionAffinity": _affinity(oldest.service)}
    timeout = _affinity_timeout(oldest.service)
    if spec["sessionAffinity"] == "ClientIP" and timeout is not None:
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": timeout}}
    if service.internal_traffic_policy:
        spec["internalTrafficPolicy"] = service.internal_traffic_policy
    if service.traffic_distribution:
        spec["trafficDistribution"] = service.traffic_distribution
    if service.ip_families:
        spec["ipFamilies"] = list(service.ip_families)
    return spec


def _import_ready(clusters: Sequence[str], lost: Mapping[str, LostCluster], exporters: Iterable[str]) -> Condition:
    gone = [lost[c] for c in sorted(set(exporters)) if c in lost]
    if not gone:
        return _condition("Ready", True, "Ready", f"imported from {_names(clusters)}", None)
    notes = []
    for entry in gone:
        fate = (f"its endpoints were withdrawn at {rfc3339(entry.deadline)}" if entry.withdrawn
                else f"its endpoints are kept until {rfc3339(entry.deadline)}")
        # Not the reason: it follows the informers' last error, and the status must not churn with it.
        notes.append(f"source cluster {entry.cluster} unavailable since {rfc3339(entry.since)}; {fate}")
    message = "; ".join(notes) + f"; imported from {_names(clusters)}"
    return _condition("Ready", bool(clusters), "SourceClusterLost", message, None)


# -- the whole ClusterSet ---------------------------------------------------------------------------------

@dataclass
class _Cluster:
    services: dict[NamespacedName, Service] = field(default_factory=dict)
    exports: dict[NamespacedName, ServiceExport] = field(default_factory=dict)
    slices: dict[NamespacedName, list[EndpointSlice]] = field(default_factory=dict)  # by (ns, service name)
    namespaces: set[str] = field(default_factory=set)


def _index(objects: Iterable[AnyObject]) -> _Cluster:
    index = _Cluster()
    for obj in objects:
        key = (obj.metadata.namespace, obj.metadata.name)
        if isinstance(obj, Service):
            index.services[key] = obj
        elif isinstance(obj, ServiceExport):
            index.exports[key] = obj
        elif isinstance(obj, Namespace):
            index.namespaces.add(obj.metadata.name)
        elif isinstance(obj, EndpointSlice) and not is_imported(obj):
            service = obj.metadata.labels.get(LOCAL_SERVICE_NAME)
            if service:
                index.slices.setdefault((obj.metadata.namespace, service), []).append(obj)
    return index


_State = Literal["active", "kept", "withdrawn"]


def _lost_state(health: ClusterHealth | None, now: float, ttl: float) -> tuple[_State, float | None]:
    if health is None or health.available:
        return "active", None
    return ("kept" if now < health.since + ttl else "withdrawn"), health.since


def _export_status(valid: Condition, ready: Condition, conflict: Condition) -> dict[str, Any]:
    return {"conditions": [valid, ready, conflict]}


class _GroupOutput(NamedTuple):
    statuses: dict[str, dict[str, Any]]  # cluster -> ServiceExport status
    service: ImportedService
    service_import: dict[str, Any]
    slices: dict[NamespacedName, dict[str, Any]]


class _Cached(NamedTuple):
    fingerprint: tuple[Any, ...]
    inputs: Any  # keeps the fingerprinted objects alive, so that their ids cannot be reused meanwhile
    output: _GroupOutput


class McsCache:
    """Each service's part of the last result, reused while its inputs are the very same objects.

    The store hands out the same immutable objects until they change, so an endpoint change in one
    service recomputes that service only. A result computed with a cache equals one computed without.
    """

    def __init__(self) -> None:
        self.groups: dict[NamespacedName, _Cached] = {}


def _group(key: NamespacedName, items: Sequence[_Export], sources: Mapping[str, Sequence[EndpointSlice]],
           lost: Mapping[str, LostCluster]) -> _GroupOutput:
    """One service's exports → their statuses, the imported service, its ServiceImport and slices."""
    namespace, service_name = key
    participating = sorted((e for e in items if e.state != "withdrawn"), key=lambda e: e.order)
    basis = participating or sorted(items, key=lambda e: e.order)
    oldest = basis[0]
    union = _merge_ports(basis)
    conflicts = _conflicts(basis, union)
    member_clusters = tuple(sorted(e.cluster for e in participating))
    statuses: dict[str, dict[str, Any]] = {}
    for item in items:
        generation = item.export.metadata.generation
        valid = _condition("Valid", True, "Valid", "the Service can be exported", generation)
        if item.state == "withdrawn" and participating:
            ready = _condition("Ready", False, "Pending", "the cluster is unavailable for longer than the "
                               "lost-cluster TTL; its endpoints are withdrawn until it returns", generation)
            conflict = _condition("Conflict", False, "NoConflicts", "not compared while the cluster is lost",
                                  generation)
        else:
            ready = _condition("Ready", True, "Exported",
                               f"exported to the ClusterSet; imported from {_names(member_clusters)}", generation)
            if conflicts:
                conflict = _condition("Conflict", True, ",".join(r for r, _ in conflicts),
                                      "; ".join(f"{r}: {m}" for r, m in conflicts), generation)
            else:
                conflict = _condition("Conflict", False, "NoConflicts",
                                      f"{len(basis)} export(s) agree", generation)
        statuses[item.cluster] = _export_status(valid, ready, conflict)

    # The view: per import port number, the clusters exposing it with their endpoints.
    by_number: dict[int, int] = {}
    for i, port in enumerate(union.ports):
        if port.port not in by_number or (port.protocol == "TCP"
                                          and union.ports[by_number[port.port]].protocol != "TCP"):
            by_number[port.port] = i
    endpoints: list[tuple[int, tuple[SourceEndpoints, ...]]] = []
    for number, i in sorted(by_number.items()):
        serving = []
        for item in participating:
            own = union.exposes.get(item.cluster, {}).get(i)
            if own is not None:
                serving.append(SourceEndpoints(item.cluster, slice_endpoints(sources[item.cluster], own.name),
                                               item.lost_since if item.state == "kept" else None,
                                               slice_endpoints(sources[item.cluster], own.name, unready=True)))
        endpoints.append((number, tuple(sorted(serving, key=lambda s: s.cluster))))
    service = ImportedService(namespace, service_name, _service_type(oldest.service), tuple(union.ports),
                              member_clusters, tuple(endpoints), oldest.service.spec.traffic_distribution)

    # The ServiceImport and slices that every cluster with the namespace receives.
    labels = {**oldest.export.spec.exported_labels, IMPORT_MANAGED_BY: MANAGER}
    metadata: dict[str, Any] = {"name": service_name, "namespace": namespace, "labels": labels}
    if oldest.export.spec.exported_annotations:
        metadata["annotations"] = dict(oldest.export.spec.exported_annotations)
    service_import = {
        "apiVersion": MCS_API_VERSION, "kind": "ServiceImport", "metadata": metadata,
        "spec": _import_spec(oldest, union),
        "status": {"clusters": [{"cluster": c} for c in member_clusters],
                   "conditions": [_import_ready(member_clusters, lost, (e.cluster for e in items))]},
    }
    slices: dict[NamespacedName, dict[str, Any]] = {}
    for item in participating:
        exposed = {union.ports[i]: own for i, own in union.exposes.get(item.cluster, {}).items()}
        for slice_object in source_slices(namespace, service_name, item.cluster, sources[item.cluster], exposed):
            slices[(namespace, slice_object["metadata"]["name"])] = slice_object
    return _GroupOutput(statuses, service, service_import, slices)


def compute_mcs(objects: Mapping[str, Sequence[AnyObject]], health: Mapping[str, ClusterHealth], now: float,
                lost_cluster_ttl: float = DEFAULT_LOST_CLUSTER_TTL, cache: McsCache | None = None) -> McsResult:
    """Every member cluster's objects and health → export statuses, desired imports and slices, and the view.

    ``cache`` (kept by the caller between calls) only saves work: the result is the same without it.
    """
    clusters = {name: _index(items) for name, items in sorted(objects.items())}
    export_status: dict[str, dict[NamespacedName, dict[str, Any]]] = {name: {} for name in clusters}
    groups: dict[NamespacedName, list[_Export]] = {}
    states = {name: _lost_state(health.get(name), now, lost_cluster_ttl) for name in clusters}

    for name, index in clusters.items():
        state, lost_since = states[name]
        for key, export in sorted(index.exports.items()):
            generation = export.metadata.generation
            service = index.services.get(key)
            if service is None or service.spec.type == "ExternalName":
                if service is None:
                    valid = _condition("Valid", False, "NoService", f"Service {key[0]}/{key[1]} does not exist",
                                       generation)
                    ready = _condition("Ready", False, "Pending", "waiting for the Service to exist", generation)
                else:
                    valid = _condition("Valid", False, "InvalidServiceType",
                                       "an ExternalName Service cannot be exported", generation)
                    ready = _condition("Ready", False, "Failed", "not exported: the Service is of type ExternalName",
                                       generation)
                conflict = _condition("Conflict", False, "NoConflicts", "not compared: the export is not valid",
                                      generation)
                export_status[name][key] = _export_status(valid, ready, conflict)
                continue
            order = (*_created(export.metadata.creation_timestamp), name)
            groups.setdefault(key, []).append(_Export(name, export, service, order, state, lost_since))

    lost: dict[str, LostCluster] = {}
    for name, (state, since) in states.items():
        if state == "active" or since is None:
            continue
        mine = tuple(sorted(key for key, items in groups.items() if any(e.cluster == name for e in items)))
        entry = health[name]
        lost[name] = LostCluster(name, since, entry.reason, since + lost_cluster_ttl, state == "withdrawn", mine)

    services: dict[NamespacedName, ImportedService] = {}
    desired: dict[str, tuple[dict[NamespacedName, dict[str, Any]], dict[NamespacedName, dict[str, Any]]]] = {
        name: ({}, {}) for name in clusters}
    reused: dict[NamespacedName, _Cached] = {}
    for key, items in sorted(groups.items()):
        sources = {e.cluster: tuple(clusters[e.cluster].slices.get(key, ())) for e in items}
        fingerprint = (tuple((e.cluster, id(e.export), id(e.service), tuple(map(id, sources[e.cluster])), e.state,
                              e.lost_since) for e in items),
                       tuple(lost[e.cluster] for e in items if e.cluster in lost))
        cached = cache.groups.get(key) if cache is not None else None
        if cached is None or cached.fingerprint != fingerprint:
            cached = _Cached(fingerprint, (items, sources), _group(key, items, sources, lost))
        reused[key] = cached
        output = cached.output
        for cluster, status in output.statuses.items():
            export_status[cluster][key] = status
        services[key] = output.service
        for name, index in clusters.items():
            if key[0] in index.namespaces:
                desired[name][0][key] = output.service_import
                desired[name][1].update(output.slices)
    if cache is not None:
        cache.groups = reused

    deadlines = [entry.deadline for entry in lost.values() if not entry.withdrawn and entry.exports]
    return McsResult(
        view=ClusterSetView(services),
        clusters={name: ClusterMcs(export_status[name], desired[name][0], desired[name][1]) for name in clusters},
        lost=tuple(lost[name] for name in sorted(lost)),
        next_deadline=min(deadlines, default=None),
    )

