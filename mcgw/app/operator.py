"""The operator's commands against a running mcgw's admin API: ``mcgw status``, ``mcgw proxy-status`` and
``mcgw config-dump``.

They read ``/api/status`` and ``/api/config_dump`` of ``mcgw run`` or ``mcgw standalone`` (``--admin``,
default ``$MCGW_ADMIN`` or ``http://127.0.0.1:19000``) and print tables for a person or JSON/YAML for a
script. Rendering is pure (``render_status``, ``render_proxy_status``) so it is tested on documents;
fetching is the only I/O. Colour only on a terminal, and never with ``NO_COLOR`` set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import yaml

DEFAULT_ADMIN = "http://127.0.0.1:19000"
XDS_TYPES = ("Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration", "Secret")
SHORT = {"Cluster": "CDS", "ClusterLoadAssignment": "EDS", "Listener": "LDS", "RouteConfiguration": "RDS",
         "Secret": "SDS"}


class AdminError(Exception):
    """The admin API could not be read, or answered an error; the message says which."""


def fetch(admin: str, path: str, query: dict[str, str] | None = None, timeout: float = 10.0) -> Any:
    """GET ``admin`` + ``path`` as JSON; AdminError naming the address and the problem."""
    url = admin.rstrip("/") + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as error:
        try:
            message = json.load(error).get("error") or error.reason
        except (ValueError, AttributeError):
            message = error.reason
        raise AdminError(f"{url}: {error.code} {message}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise AdminError(f"cannot read {url}: {reason} (is mcgw running, and is --admin its admin address?)") \
            from None


# -- tables ---------------------------------------------------------------------------------------------

class Style:
    """ANSI colour for a terminal, nothing otherwise."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def _paint(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour and text else text

    def good(self, text: str) -> str:
        return self._paint("32", text)

    def bad(self, text: str) -> str:
        return self._paint("31", text)

    def warn(self, text: str) -> str:
        return self._paint("33", text)

    def title(self, text: str) -> str:
        return self._paint("1", text)

    def verdict(self, text: str) -> str:
        """Green for a good state, red for a bad one, yellow for one on its way."""
        if text in ("True", "SYNCED", "yes"):
            return self.good(text)
        if text in ("False", "NACKED", "no"):
            return self.bad(text)
        if text in ("STALE", "NOT SENT", "Unknown", "lost"):
            return self.warn(text)
        return text


def _visible_len(text: str) -> int:
    length, skipping = 0, False
    for char in text:
        if char == "\033":
            skipping = True
        elif skipping and char == "m":
            skipping = False
        elif not skipping:
            length += 1
    return length


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], style: Style) -> str:
    """Columns padded to their widest cell (colour codes do not count)."""
    cells = [list(headers), *[list(row) for row in rows]]
    widths = [max(_visible_len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for number, row in enumerate(cells):
        padded = [cell + " " * (widths[i] - _visible_len(cell)) for i, cell in enumerate(row)]
        line = "  ".join(padded).rstrip()
        lines.append(style.title(line) if number == 0 else line)
    return "\n".join(lines)


def _condition(status: dict[str, Any] | None, kind: str) -> str:
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") == kind:
            reason = condition.get("reason", "")
            return str(condition.get("status")) + (f" ({reason})" if condition.get("status") != "True" else "")
    return "-"


def _verdict(style: Style, text: str) -> str:
    head, _, rest = text.partition(" ")
    return style.verdict(head) + (f" {rest}" if rest else "")


def _gateway_rows(document: dict[str, Any], style: Style) -> list[list[str]]:
    rows = []
    for cluster, facts in document.get("clusters", {}).items():
        for name, entry in (facts.get("objects", {}).get("Gateway") or {}).items():
            status = entry.get("status") or {}
            addresses = ",".join(a.get("value", "") for a in status.get("addresses") or []) or "-"
            listeners = " ".join(f"{item.get('name')}:{item.get('attachedRoutes', 0)}"
                                 for item in status.get("listeners") or []) or "-"
            rows.append([cluster, name, _verdict(style, _condition(status, "Accepted")),
                         _verdict(style, _condition(status, "Programmed")), addresses, listeners])
    return rows


def _route_rows(document: dict[str, Any], style: Style) -> list[list[str]]:
    rows = []
    for cluster, facts in document.get("clusters", {}).items():
        for kind, objects in sorted(facts.get("objects", {}).items()):
            if not kind.endswith("Route"):
                continue
            for name, entry in objects.items():
                parents = (entry.get("status") or {}).get("parents") or [{}]
                for parent in parents:
                    ref = parent.get("parentRef") or {}
                    shown = (f"{ref.get('namespace', '')}/{ref.get('name', '')}".lstrip("/")
                             + (f"/{ref['sectionName']}" if ref.get("sectionName") else "")) or "-"
                    rows.append([cluster, kind, name, shown, _verdict(style, _condition(parent, "Accepted")),
                                 _verdict(style, _condition(parent, "ResolvedRefs"))])
    return rows


def _import_rows(document: dict[str, Any], style: Style) -> list[list[str]]:
    rows = []
    for service in document.get("multiClusterServices", {}).get("importedServices", []):
        for port in service.get("endpoints") or [{"port": "-", "clusters": []}]:
            served = []
            for source in port["clusters"]:
                text = f"{source['cluster']}={source['healthy']}"
                if source.get("draining"):
                    text += f"+{source['draining']} draining"
                if source.get("lost"):
                    text += " " + style.warn("lost")
                served.append(style.bad(text) if not source["healthy"] and not source.get("draining") else text)
            rows.append([service["service"], service["type"], str(port["port"]), ",".join(service["clusters"]),
                         " ".join(served) or "-"])
    return rows


def _traffic_rows(document: dict[str, Any], style: Style) -> list[list[str]]:
    """Per Gateway and ServiceImport, each priority level's share and rate from the load reports; the serving
    level marked."""
    rows = []
    for service in (document.get("traffic") or {}).get("services") or []:
        for level in service.get("levels") or []:
            serving = level["priority"] == service.get("servingPriority")
            rows.append([service["cluster"], service["gateway"], service["service"], str(level["priority"]),
                         ",".join(level["clusters"]), style.good("serving") if serving else "",
                         f"{round(100 * level['share'])}%", f"{level['requestsPerSecond']:g}",
                         f"{level['errorsPerSecond']:g}", f"{level.get('requestsPerSecondLastMinute', 0):g}"])
    return rows


def _failover_rows(document: dict[str, Any], limit: int = 10) -> list[list[str]]:
    events = (document.get("traffic") or {}).get("events") or []
    return [[event["at"], event["cluster"], event["gateway"], event["service"],
             f"{event['from']['priority']} ({','.join(event['from']['clusters'])})",
             f"{event['to']['priority']} ({','.join(event['to']['clusters'])})",
             f"{round(100 * event['share'])}% of {event['requestsPerSecond']:g}/s"]
            for event in events[-limit:]]


def xds_state(state: dict[str, Any] | None) -> str:
    """As ``istioctl proxy-status`` says it: SYNCED (the last version sent was ACKed), NACKED (it was
    rejected), STALE (sent, no answer yet), NOT SENT."""
    if not state or not state.get("sentVersion"):
        return "NOT SENT"
    if state.get("ackedVersion") == state["sentVersion"]:
        return "SYNCED"
    if state.get("nackedVersion") == state["sentVersion"]:
        return "NACKED"
    return "STALE"


def _envoy_rows(document: dict[str, Any], style: Style, versions: bool) -> list[list[str]]:
    rows = []
    for node in document.get("nodes", []):
        cells = [node["group"]["cluster"], node["group"]["gateway"], node["nodeId"], node.get("mode", "")]
        for kind in XDS_TYPES:
            state = node.get("types", {}).get(kind)
            cell = style.verdict(xds_state(state))
            if versions and state and state.get("ackedVersion"):
                cell += f" {str(state['ackedVersion'])[:8]}"
            cells.append(cell)
        rows.append(cells)
    return rows


def render_status(document: dict[str, Any], style: Style) -> str:
    """``mcgw status``: clusters, Gateways, routes, imported services and Envoys, one table each."""
    sections = []
    clusters = [[name, style.verdict("yes" if facts.get("available") else "no"),
                 style.verdict("yes" if facts.get("synced") else "no"), facts.get("reason") or "-",
                 str((facts.get("lastTranslation") or {}).get("at") or "-")]
                for name, facts in document.get("clusters", {}).items()]
    sections.append(table(["CLUSTER", "AVAILABLE", "SYNCED", "REASON", "TRANSLATED"], clusters, style))
    sections.append(table(["CLUSTER", "GATEWAY", "ACCEPTED", "PROGRAMMED", "ADDRESSES", "LISTENERS:ROUTES"],
                          _gateway_rows(document, style), style))
    sections.append(table(["CLUSTER", "KIND", "ROUTE", "PARENT", "ACCEPTED", "RESOLVEDREFS"],
                          _route_rows(document, style), style))
    sections.append(table(["SERVICEIMPORT", "TYPE", "PORT", "EXPORTED BY", "ENDPOINTS (healthy per cluster)"],
                          _import_rows(document, style), style))
    sections.append(table(["CLUSTER", "GATEWAY", "ENVOY", "MODE", *[SHORT[t] for t in XDS_TYPES]],
                          _envoy_rows(document, style, versions=False), style))
    traffic = document.get("traffic") or {}
    if traffic.get("enabled"):
        sections.append(table(["CLUSTER", "GATEWAY", "SERVICEIMPORT", "PRIORITY", "CLUSTERS", "", "SHARE", "REQ/S",
                               "ERR/S", "REQ/S 1m"], _traffic_rows(document, style), style))
        sections.append(table(["FAILOVER AT", "CLUSTER", "GATEWAY", "SERVICEIMPORT", "FROM", "TO", "MOVED"],
                              _failover_rows(document), style))
    problems = [f"{cluster}: {error}" for cluster, facts in document.get("clusters", {}).items()
                for error in (facts.get("lastTranslation") or {}).get("errors") or []]
    problems += [f"{cluster}: {text}" for cluster, text in (document.get("fileErrors") or {}).items()]
    if problems:
        sections.append(style.bad("Problems:") + "\n" + "\n".join(f"  {p}" for p in problems))
    return "\n\n".join(sections) + "\n"


def render_proxy_status(document: dict[str, Any], style: Style) -> str:
    """``mcgw proxy-status``: each Envoy's standing per xDS type with the version it ACKed, then the last
    rejections (their messages are excerpts the server keeps; they never hold key material)."""
    out = table(["CLUSTER", "GATEWAY", "ENVOY", "MODE", *[SHORT[t] for t in XDS_TYPES]],
                _envoy_rows(document, style, versions=True), style)
    if not document.get("nodes"):
        out += "\n(no Envoy is connected)"
    rejections = document.get("rejections") or []
    if rejections:
        out += "\n\n" + style.bad("Rejected updates (most recent last):") + "\n" + "\n".join(
            f"  {r['at']} {r['cluster']}/{r['nodeId']} {r['type']} version {str(r['version'])[:8]}: {r['message']}"
            for r in rejections)
    return out + "\n"


# -- commands -------------------------------------------------------------------------------------------

def _style() -> Style:
    return Style(sys.stdout.isatty() and not os.environ.get("NO_COLOR"))


def _print(document: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(document, indent=2, sort_keys=False))
    else:
        print(yaml.safe_dump(document, sort_keys=False, width=120), end="")


def proxy_document(document: dict[str, Any]) -> dict[str, Any]:
    """``proxy-status -o json|yaml``: the nodes, each with its state per type, and the rejections."""
    return {"nodes": [{**node, "state": {SHORT[t]: xds_state(node.get("types", {}).get(t)) for t in XDS_TYPES}}
                      for node in document.get("nodes", [])],
            "rejections": document.get("rejections", [])}


def _status_view(args: argparse.Namespace, name: str, render: Callable[[dict[str, Any], Style], str],
                 data: Callable[[dict[str, Any]], Any]) -> int:
    """Read /api/status, then print it as a table (``render``) or as data (``data``)."""
    try:
        document = fetch(args.admin, "/api/status")
    except AdminError as error:
        print(f"mcgw {name}: {error}", file=sys.stderr)
        return 2
    if args.o == "table":
        print(render(document, _style()), end="")
    else:
        _print(data(document), args.o)
    return 0


def status_command(args: argparse.Namespace) -> int:
    return _status_view(args, "status", render_status, lambda document: document)


def proxy_status_command(args: argparse.Namespace) -> int:
    return _status_view(args, "proxy-status", render_proxy_status, proxy_document)


def config_dump_command(args: argparse.Namespace) -> int:
    query = {"gateway": args.gateway, "type": args.type}
    if args.cluster:
        query["cluster"] = args.cluster
    try:
        document = fetch(args.admin, "/api/config_dump", query)
    except AdminError as error:
        print(f"mcgw config-dump: {error}", file=sys.stderr)
        return 2
    _print(document, args.o)
    return 0


def add_commands(commands: Any) -> list[argparse.ArgumentParser]:
    """The three commands on ``commands`` (the CLI's subparsers)."""
    admin = os.environ.get("MCGW_ADMIN", DEFAULT_ADMIN)
    status = commands.add_parser("status", help="clusters, Gateways, routes, imported services and Envoys of a "
                                                "running mcgw (its admin API)")
    status.add_argument("-o", choices=["table", "json", "yaml"], default="table")
    status.set_defaults(handler=status_command)
    proxy = commands.add_parser("proxy-status", help="each connected Envoy's xDS standing per type, and rejections")
    proxy.add_argument("-o", choices=["table", "json", "yaml"], default="table")
    proxy.set_defaults(handler=proxy_status_command)
    dump = commands.add_parser("config-dump", help="what the xDS server serves one Gateway (keys redacted)")
    dump.add_argument("gateway", metavar="NAMESPACE/NAME")
    dump.add_argument("--cluster", help="the member cluster (needed when the Gateway exists in several)")
    dump.add_argument("--type", default="lds,rds,cds,eds,sds", help="comma-separated: lds, rds, cds, eds, sds")
    dump.add_argument("-o", choices=["yaml", "json"], default="yaml")
    dump.set_defaults(handler=config_dump_command)
    for command in (status, proxy, dump):
        command.add_argument("--admin", default=admin, metavar="URL",
                             help=f"mcgw's admin address (default $MCGW_ADMIN or {DEFAULT_ADMIN})")
    return [status, proxy, dump]
