"""The ``/api/status`` document: per member cluster, its health and every Gateway API and MCS object
with the status mcgw computed for it, plus every connected Envoy and its ACK/NACK state.

It is the one place an operator sees what mcgw thinks without reading each API server (and the only
place at all in standalone mode, which has no API server to write status to). Built from plain data
with sorted keys, so two calls on the same state give the same JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcgw.objects.kinds import LISTED_KINDS
from mcgw.runtime.capacity import CapacityGovernor
from mcgw.runtime.reconciler import ClusterReport, Reconciler
from mcgw.runtime.traffic import FailoverEvent, TrafficTracker
from mcgw.semantics.mcs import IMPORT_MANAGED_BY, MANAGER, ClusterMcs, McsResult
from mcgw.store import ClusterStore, Store
from mcgw.support.timestamps import rfc3339
from xdsserver import NodeRejections, NodeStatus, Rejection, StatusRegistry, excerpt, short_type


def object_name(namespace: str, name: str) -> str:
    """``namespace/name``, or ``name`` for a cluster-scoped object (as ``ClusterOutput.statuses`` keys them)."""
    return f"{namespace}/{name}" if namespace else name


def _objects(member: ClusterStore, statuses: Mapping[str, Mapping[str, Any]],
             mcs: ClusterMcs | None) -> dict[str, dict[str, Any]]:
    # The registry's listed kinds, each object with the status mcgw computed for it (``None`` for a
    # ReferenceGrant, which has no status, and for a ServiceImport that mcgw does not manage).
    listed: dict[str, dict[str, Any]] = {kind: {} for kind in LISTED_KINDS}
    for obj in member.objects():
        kind, namespace, name = obj.key
        if kind not in listed:
            continue
        key = object_name(namespace, name)
        status = statuses.get(kind, {}).get(key)
        if mcs is not None and kind == "ServiceExport":
            status = mcs.exports.get((namespace, name))
        elif mcs is not None and kind == "ServiceImport" and obj.metadata.labels.get(IMPORT_MANAGED_BY) == MANAGER:
            status = (mcs.imports.get((namespace, name)) or {}).get("status")
        listed[kind][key] = {"generation": obj.metadata.generation, "status": status}
    if mcs is not None:  # imports not (yet) in the cluster: standalone mode has no API server to write them to
        for (namespace, name), wanted in mcs.imports.items():
            listed["ServiceImport"].setdefault(object_name(namespace, name),
                                               {"generation": None, "status": wanted.get("status")})
    return {kind: dict(sorted(by_name.items())) for kind, by_name in listed.items()}


def _translation(report: ClusterReport) -> dict[str, Any] | None:
    if report.revision < 0 and not report.errors:
        return None  # never translated
    return {
        "revision": report.revision,
        "at": rfc3339(report.translated_at) if report.translated_at else None,
        "seconds": round(report.seconds, 6),
        "gateways": [object_name(ns, name) for ns, name in report.gateways],
        "errors": list(report.errors),
    }


def _cluster(member: ClusterStore, reconciler: Reconciler, mcs: McsResult | None) -> dict[str, Any]:
    health = member.health()
    output = reconciler.outputs.get(member.name)
    return {
        "available": health.available,
        "synced": health.synced,
        "reason": health.reason,
        "since": rfc3339(health.since),
        "revision": member.revision,
        "lastTranslation": _translation(reconciler.reports.get(member.name, ClusterReport())),
        "objects": _objects(member, output.statuses() if output is not None else {},
                            mcs.clusters.get(member.name) if mcs is not None else None),
    }


def _node(node: NodeStatus) -> dict[str, Any]:
    return {
        "nodeId": node.node_id,
        "cluster": node.cluster,
        "group": {"cluster": node.group[0], "gateway": node.group[1]},
        "mode": node.mode,
        "peer": node.peer,
        "connectedAt": rfc3339(node.connected_at),
        "types": {
            short_type(type_url): {
                "sentVersion": state.sent_version,
                "ackedVersion": state.acked_version,
                "nackedVersion": state.nacked_version,
                "lastNackError": excerpt(state.nack_message),
                "lastPush": rfc3339(state.last_push) if state.last_push else None,
                "pushes": state.pushes,
                "bytesSent": state.bytes_sent,
            }
            for type_url, state in sorted(node.types.items(), key=lambda item: short_type(item[0]))
        },
    }


def _rejection(rejection: Rejection) -> dict[str, Any]:
    # The registry keeps only excerpts; excerpt() again so that no caller can put key material here.
    return {
        "at": rfc3339(rejection.at),
        "nodeId": rejection.node_id,
        "cluster": rejection.cluster,
        "group": {"cluster": rejection.group[0], "gateway": rejection.group[1]},
        "type": short_type(rejection.type_url),
        "version": rejection.version,
        "nonce": rejection.nonce,
        "message": excerpt(rejection.message),
        "resources": list(rejection.resource_names),
        "resourceCount": rejection.resource_count,
    }


def _rejecting_node(node: NodeRejections) -> dict[str, Any]:
    """A node's rejections in brief: counts per type and the last one, never a resource body."""
    return {
        "cluster": node.cluster,
        "nodeId": node.node_id,
        "count": node.count,
        "byType": {short_type(type_url): count for type_url, count in sorted(node.by_type.items())},
        "last": _rejection(node.last),
    }


def _mcs(result: McsResult | None) -> dict[str, Any]:
    """The ClusterSet-wide part of the MCS result: imported services and the clusters that are lost."""
    if result is None:
        return {"computed": False, "importedServices": [], "lostClusters": [], "nextDeadline": None}
    return {
        "computed": True,
        "importedServices": [
            {"service": object_name(service.namespace, service.name), "type": service.type,
             "clusters": list(service.clusters),
             "ports": [{"name": p.name, "protocol": p.protocol, "port": p.port} for p in service.ports],
             # Per port and source cluster, what the gateways route to: ready (HEALTHY) and terminating
             # but serving (DRAINING) endpoints, and whether the cluster is lost (kept within its TTL).
             "endpoints": [
                 {"port": number, "clusters": [
                     {"cluster": source.cluster,
                      "healthy": sum(1 for e in source.endpoints if e.health == "HEALTHY"),
                      "draining": sum(1 for e in source.endpoints if e.health == "DRAINING"),
                      "lost": source.lost_since is not None}
                     for source in sources]}
                 for number, sources in service.endpoints]}
            for _, service in sorted(result.view.services.items())],
        "lostClusters": [
            {"cluster": lost.cluster, "since": rfc3339(lost.since), "reason": lost.reason,
             "endpoints": "withdrawn" if lost.withdrawn else "kept", "until": rfc3339(lost.deadline),
             "exports": [object_name(ns, name) for ns, name in lost.exports]}
            for lost in result.lost],
        "nextDeadline": rfc3339(result.next_deadline) if result.next_deadline is not None else None,
    }


def _event(event: FailoverEvent) -> dict[str, Any]:
    return {"at": rfc3339(event.at), "cluster": event.key.cluster, "gateway": event.key.gateway,
            "service": event.key.service,
            "from": {"priority": event.from_priority, "clusters": list(event.from_clusters)},
            "to": {"priority": event.to_priority, "clusters": list(event.to_clusters)},
            "share": event.share, "requestsPerSecond": event.requests_per_s}


def traffic_document(tracker: TrafficTracker | None, now: float,
                     governor: CapacityGovernor | None = None) -> dict[str, Any]:
    """What the gateways' load reports say: per Gateway and ServiceImport, the traffic of each priority level
    over the current window and the last minute, the level that serves, the failover events (newest last), and
    the capacity decisions. ``now`` is on the tracker's clock (wall-clock seconds)."""
    if tracker is None:
        return {"enabled": False, "services": [], "events": [], "capacity": []}
    return {
        "capacity": [{"cluster": d.cluster, "service": f"{d.service[0]}/{d.service[1]}:{d.service[2]}",
                      "requestsPerSecond": d.load, "capacity": d.capacity, "overflowShare": d.share,
                      "since": d.since} for d in (governor.decisions() if governor else ())],
        "enabled": True,
        "windowSeconds": tracker.window,
        "services": [
            {"cluster": traffic.key.cluster, "gateway": traffic.key.gateway, "service": traffic.key.service,
             "servingPriority": traffic.serving_priority,
             "levels": [{"priority": level.priority, "clusters": list(level.clusters),
                         "requestsPerSecond": level.requests_per_s, "errorsPerSecond": level.errors_per_s,
                         "inFlight": level.in_flight, "share": round(level.share, 3),
                         "requestsPerSecondLastMinute": level.requests_per_s_1m}
                        for level in traffic.levels]}
            for traffic in tracker.services(now)],
        "events": [_event(event) for event in tracker.events],
    }


def status_document(store: Store, reconciler: Reconciler, xds_status: StatusRegistry | None,
                    extra: Mapping[str, Any] | None = None, mcs: McsResult | None = None,
                    traffic: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON served on ``/api/status``; ``extra`` adds top-level keys (a mode's own facts); ``mcs`` is the MCS
    controller's last result (export and import statuses, lost clusters); ``traffic`` is ``traffic_document``'s."""
    nodes = sorted(xds_status.nodes() if xds_status else [],
                   key=lambda n: (n.cluster, n.node_id, n.connected_at, n.peer))
    document: dict[str, Any] = {
        "ready": reconciler.ready.is_set(),
        "clusters": {name: _cluster(store[name], reconciler, mcs) for name in sorted(store.clusters)},
        "multiClusterServices": _mcs(mcs),
        "nodes": [_node(n) for n in nodes],
        "rejections": [_rejection(r) for r in (xds_status.rejections() if xds_status else [])],
        "rejectingNodes": [_rejecting_node(n) for n in (xds_status.rejected_nodes() if xds_status else [])],
        "traffic": dict(traffic) if traffic is not None else traffic_document(None, 0.0),
    }
    for key, value in (extra or {}).items():
        if key in document:
            raise ValueError(f"extra status key {key!r} would hide the built-in one")
        document[key] = value
    return document


def not_ready_reason(store: Store, reconciler: Reconciler) -> str:
    """Why ``/readyz`` answers 503: which reachable clusters have not finished their initial list."""
    if reconciler.ready.is_set():
        return ""
    waiting = sorted(c.name for c in store.clusters.values() if c.available and not c.synced)
    if waiting:
        return f"waiting for the initial list of {', '.join(waiting)}"
    return "initial sync done; the first configuration is being translated"
