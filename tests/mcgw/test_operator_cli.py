"""The operator commands' rendering, on /api/status documents: the states an Envoy can be in, colour only
when asked, and the problems an operator must not miss."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mcgw.app.operator import Style, render_proxy_status, render_status, xds_state


@pytest.mark.parametrize(("state", "shown"), [
    (None, "NOT SENT"),
    ({"sentVersion": "v2", "ackedVersion": "v2", "nackedVersion": "v1"}, "SYNCED"),
    ({"sentVersion": "v2", "ackedVersion": "v1", "nackedVersion": "v2"}, "NACKED"),
    ({"sentVersion": "v2", "ackedVersion": "v1", "nackedVersion": None}, "STALE"),
])
def test_an_envoys_standing_per_type(state: dict[str, Any] | None, shown: str) -> None:
    assert xds_state(state) == shown


def _document() -> dict[str, Any]:
    node = {"nodeId": "infra/public/0", "cluster": "east", "group": {"cluster": "east", "gateway": "infra/public"},
            "mode": "sotw", "types": {"Listener": {"sentVersion": "abcdef0123", "ackedVersion": "1111",
                                                   "nackedVersion": "abcdef0123"}}}
    return {"clusters": {"east": {"available": False, "synced": True, "reason": "API server unreachable",
                                  "lastTranslation": {"at": None, "errors": ["a translation error"]},
                                  "objects": {}}},
            "nodes": [node],
            "rejections": [{"at": "2026-12-02T00:00:00Z", "cluster": "east", "nodeId": "infra/public/0",
                            "type": "Listener", "version": "abcdef0123", "message": "bad listener"}],
            "fileErrors": {"east": "east/x.yaml: not valid YAML"}}


def test_status_lists_problems_and_proxy_status_the_rejections() -> None:
    document = _document()
    text = render_status(document, Style(colour=False))
    assert "east     no         yes     API server unreachable" in text
    assert "Problems:\n  east: a translation error\n  east: east/x.yaml: not valid YAML" in text
    proxies = render_proxy_status(document, Style(colour=False))
    assert "NACKED" in proxies.splitlines()[1]
    assert "2026-12-02T00:00:00Z east/infra/public/0 Listener version abcdef01: bad listener" in proxies


def test_colour_only_when_asked() -> None:
    document = _document()
    assert "\033[" not in render_proxy_status(document, Style(colour=False))
    coloured = render_proxy_status(document, Style(colour=True))
    assert "\033[31mNACKED\033[0m" in coloured
    # Columns stay aligned: colour codes take no width.
    header, row = coloured.splitlines()[:2]
    assert header.index("LDS") - len("\033[1m") == _plain(row).index("NACKED")


def _plain(text: str) -> str:
    return re.sub(r"\033\[[0-9;]*m", "", text)


def test_status_shows_which_level_serves_and_the_failovers() -> None:
    document = _document()
    level = {"requestsPerSecond": 0.0, "errorsPerSecond": 0.0, "inFlight": 0, "share": 0.0,
             "requestsPerSecondLastMinute": 120.0}
    document["traffic"] = {"enabled": True, "services": [{
        "cluster": "east", "gateway": "infra/public", "service": "shop/cart:80", "servingPriority": 1,
        "levels": [{**level, "priority": 0, "clusters": ["east"]},
                   {**level, "priority": 1, "clusters": ["west"], "share": 0.98, "requestsPerSecond": 196.0,
                    "errorsPerSecond": 4.0}]}],
        "events": [{"at": "2026-12-02T13:00:00Z", "cluster": "east", "gateway": "infra/public",
                    "service": "shop/cart:80", "from": {"priority": 0, "clusters": ["east"]},
                    "to": {"priority": 1, "clusters": ["west"]}, "share": 0.98, "requestsPerSecond": 200.0}]}
    lines = render_status(document, Style(colour=False)).splitlines()
    (west,) = [line for line in lines if "shop/cart:80" in line and " west " in line and "serving" in line]
    assert re.search(r"\b1\s+west\s+serving\s+98%\s+196\s+4\s+120$", west), west
    (moved,) = [line for line in lines if line.startswith("2026-12-02T13:00:00Z")]
    assert re.search(r"0 \(east\)\s+1 \(west\)\s+98% of 200/s$", moved), moved


def test_without_load_reports_status_shows_no_traffic_tables() -> None:
    text = render_status(_document() | {"traffic": {"enabled": False, "services": [], "events": []}},
                         Style(colour=False))
    assert "REQ/S 1m" not in text
    assert "FAILOVER AT" not in text
