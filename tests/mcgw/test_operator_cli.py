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
