"""What the live dashboard shows, as one compact JSON document: the ClusterSet's clusters, each Gateway with its
addresses and Envoys, each ServiceImport as a priority ladder per Gateway with its endpoints' health and live
traffic share, and the failover timeline.

Built from the ``/api/status`` document and the traffic view (both plain data), so ``mcgw run`` and
``mcgw standalone`` show the same page; the page itself (``static/``) only renders this document.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

STATIC_FILES = {"index.html": "text/html", "dashboard.css": "text/css", "dashboard.js": "text/javascript"}


def static_file(name: str) -> bytes:
    """One of the page's files, from the package (no build step, nothing from a CDN)."""
    if name not in STATIC_FILES:
        raise KeyError(name)
    return resources.files("mcgw.admin").joinpath("static", name).read_bytes()


def _condition(status: Mapping[str, Any] | None, kind: str) -> bool | None:
    for condition in (status or {}).get("conditions") or ():
        if condition.get("type") == kind:
            return bool(condition.get("status") == "True")
    return None


def _envoy(node: Mapping[str, Any]) -> dict[str, Any]:
    types = node.get("types") or {}
    nacked = sorted(t for t, s in types.items() if s.get("nackedVersion") and s.get("nackedVersion") != s.get(
        "ackedVersion"))
    pending = sorted(t for t, s in types.items() if s.get("sentVersion") != s.get("ackedVersion"))
    errors = [types[t].get("lastNackError") for t in nacked if types[t].get("lastNackError")]
    return {"nodeId": node.get("nodeId", ""), "peer": node.get("peer", ""), "mode": node.get("mode", ""),
            "state": "NACK" if nacked else ("pending" if pending else "ACK"), "nacked": nacked,
            "lastNackError": errors[0] if errors else None}


def _gateways(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    nodes: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for node in status.get("nodes") or ():
        group = node.get("group") or {}
        nodes.setdefault((group.get("cluster", ""), group.get("gateway", "")), []).append(_envoy(node))
    out = []
    for cluster, member in sorted((status.get("clusters") or {}).items()):
        for name, gateway in sorted(((member.get("objects") or {}).get("Gateway") or {}).items()):
            gateway_status = gateway.get("status") or {}
            out.append({
                "cluster": cluster, "name": name,
                "addresses": [a.get("value") for a in gateway_status.get("addresses") or () if a.get("value")],
                "programmed": _condition(gateway_status, "Programmed"),
                "envoys": nodes.get((cluster, name), []),
            })
    return out


def _endpoint_health(status: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``namespace/name:port`` → source cluster → healthy/draining counts and whether it is lost."""
    health: dict[str, dict[str, dict[str, Any]]] = {}
    for service in (status.get("multiClusterServices") or {}).get("importedServices") or ():
        ports = {p.get("port"): p for p in service.get("ports") or ()}
        for entry in service.get("endpoints") or ():
            port = entry.get("port")
            key = f"{service.get('service')}:{ports.get(port, {}).get('port', port)}"
            health[key] = {c["cluster"]: {"healthy": c.get("healthy", 0), "draining": c.get("draining", 0),
                                          "lost": bool(c.get("lost"))} for c in entry.get("clusters") or ()}
    return health


def _services(traffic: Mapping[str, Any],
              health: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    capacity = {(entry["cluster"], entry["service"]): entry for entry in traffic.get("capacity") or ()}
    for service in traffic.get("services") or ():
        by_cluster = health.get(service["service"], {})
        levels = [{**level, "clusters": [{"name": name, **by_cluster.get(name, {"healthy": None, "draining": None,
                                                                               "lost": False})}
                                         for name in level["clusters"]]}
                  for level in service["levels"]]
        out.append({**service, "levels": levels, "capacity": capacity.get((service["cluster"], service["service"]))})
    return out


def dashboard_document(status: Mapping[str, Any], traffic: Mapping[str, Any]) -> dict[str, Any]:
    """The dashboard's document from ``/api/status`` (``status``) and its ``traffic`` section."""
    leaders = status.get("leader") or {}
    clusters = [{"name": name, "available": bool(member.get("available")), "synced": bool(member.get("synced")),
                 "reason": member.get("reason") or "", "since": member.get("since"),
                 "leader": leaders.get(name)}
                for name, member in sorted((status.get("clusters") or {}).items())]
    lost = {entry.get("cluster") for entry in (status.get("multiClusterServices") or {}).get("lostClusters") or ()}
    for cluster in clusters:
        cluster["lost"] = cluster["name"] in lost
    return {
        "ready": bool(status.get("ready")),
        "mode": status.get("mode", ""),
        "clusters": clusters,
        "gateways": _gateways(status),
        "services": _services(traffic, _endpoint_health(status)),
        "events": list(traffic.get("events") or ()),
        "loadReports": traffic.get("enabled", False),
    }


def event_stream_message(document: Mapping[str, Any], number: int) -> bytes:
    """One server-sent event carrying the whole document (small: a page's worth of clusters and services)."""
    return f"id: {number}\nevent: state\ndata: {json.dumps(document, sort_keys=True)}\n\n".encode()
