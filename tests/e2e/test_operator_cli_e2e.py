"""The operator commands (``mcgw status``, ``proxy-status``, ``config-dump``) as an operator runs them: the
real CLI in a subprocess against a running standalone mcgw with its three real Envoys (the quickstart).
Against ``mcgw run`` they are exercised in ``test_xds_security_e2e.py``."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from mcgw.app.standalone import Standalone, StandaloneOptions
from tests.e2e.test_standalone import quickstart as quickstart  # the fixture

CLUSTERS = ("central", "east", "west")


def mcgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcgw", *args], capture_output=True, text=True, timeout=60,
                          env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"}, check=False)


def _ready_store_endpoints(root: Path, cluster: str) -> int:
    """Ready endpoints of the exported store Service in ``cluster``'s manifests."""
    count = 0
    for document in yaml.safe_load_all((root / cluster / "shop.yaml").read_text()):
        if document and document["kind"] == "EndpointSlice" and \
                document["metadata"]["labels"]["kubernetes.io/service-name"] == "store":
            count += sum(1 for e in document["endpoints"] if e["conditions"].get("ready", True))
    return count


def _rows(text: str, *header: str) -> list[list[str]]:
    """The rows of the table whose header begins with the columns ``header``, split on runs of 2+ spaces."""
    for chosen in text.split("\n\n"):
        lines = chosen.splitlines()
        if re.split(r"\s{2,}", lines[0].strip())[:len(header)] == list(header):
            return [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]
    raise AssertionError(f"no table {header} in:\n{text}")


async def _synced(admin: str) -> dict[str, Any]:
    for _ in range(200):
        answer = await asyncio.to_thread(mcgw, "proxy-status", "--admin", admin, "-o", "json")
        document: dict[str, Any] = json.loads(answer.stdout)
        states = [node["state"] for node in document["nodes"]]
        if len(states) == 3 and all(s[t] == "SYNCED" for s in states for t in ("CDS", "EDS", "LDS", "RDS")):
            return document
        await asyncio.sleep(0.1)
    raise AssertionError(f"the three Envoys never all ACKed: {document}")


async def test_status_proxy_status_and_config_dump_against_standalone(quickstart: Path) -> None:
    options = StandaloneOptions(quickstart, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    async with Standalone(options) as standalone:
        await standalone.wait_ready()
        assert standalone.fleet is not None
        addresses = {cluster: m.address for (cluster, _), m in standalone.fleet.envoys.items()}
        admin = f"http://127.0.0.1:{standalone.admin_port}"
        proxies = await _synced(admin)
        assert {node["group"]["cluster"] for node in proxies["nodes"]} == set(CLUSTERS)

        status = await asyncio.to_thread(mcgw, "status", "--admin", admin)
        assert status.returncode == 0, status.stderr
        text = status.stdout
        assert [row[:3] for row in _rows(text, "CLUSTER", "AVAILABLE")] == [[c, "yes", "yes"] for c in CLUSTERS]
        gateways = _rows(text, "CLUSTER", "GATEWAY", "ACCEPTED")
        assert [row[:5] for row in gateways] == [[c, "infra/public", "True", "True", addresses[c]] for c in CLUSTERS]
        routes = _rows(text, "CLUSTER", "KIND")
        assert ["east", "HTTPRoute", "shop/store", "infra/public", "True", "True"] in routes
        (imported,) = [row for row in _rows(text, "SERVICEIMPORT") if row[0] == "shop/store"]
        assert imported[1:4] == ["ClusterSetIP", "80", "central,east,west"]
        assert imported[4].split() == [f"{c}={_ready_store_endpoints(quickstart, c)}" for c in CLUSTERS]
        envoys = _rows(text, "CLUSTER", "GATEWAY", "ENVOY")
        assert sorted(row[0] for row in envoys) == list(CLUSTERS)
        assert all(row[4:8] == ["SYNCED"] * 4 and row[8] == "NOT SENT" for row in envoys), envoys  # no TLS: no SDS

        table = await asyncio.to_thread(mcgw, "proxy-status", "--admin", admin)
        assert table.returncode == 0, table.stderr
        acked = {node["group"]["cluster"]: node["types"]["Listener"]["ackedVersion"] for node in proxies["nodes"]}
        for row in _rows(table.stdout, "CLUSTER", "GATEWAY", "ENVOY"):
            assert row[6] == f"SYNCED {acked[row[0]][:8]}", row

        dump = await asyncio.to_thread(mcgw, "config-dump", "infra/public", "--cluster", "east", "--admin", admin,
                                       "--type", "lds,cds")
        assert dump.returncode == 0, dump.stderr
        served = yaml.safe_load(dump.stdout)
        assert (served["cluster"], served["gateway"], sorted(served["types"])) == ("east", "infra/public",
                                                                                  ["cds", "lds"])
        assert served["types"]["lds"]["version"] == acked["east"]
        assert [listener["name"] for listener in served["types"]["lds"]["resources"]]
        clusters = {cluster["name"] for cluster in served["types"]["cds"]["resources"]}
        assert {"service/shop/store/80", "service/shop/store-v2/80"} <= clusters, clusters

        # The Gateway exists in every cluster: which one must be said, and the choices are listed.
        ambiguous = await asyncio.to_thread(mcgw, "config-dump", "infra/public", "--admin", admin)
        assert ambiguous.returncode == 2
        assert "served in 3 clusters: give cluster=" in ambiguous.stderr
        missing = await asyncio.to_thread(mcgw, "config-dump", "shop/nothing", "--cluster", "east", "--admin", admin)
        assert missing.returncode == 2
        assert "no configuration for gateway shop/nothing of cluster east; there is for: central:infra/public" \
            in missing.stderr


def test_the_commands_say_clearly_when_mcgw_is_not_there() -> None:
    answer = mcgw("status", "--admin", "http://127.0.0.1:9")
    assert answer.returncode == 2
    assert "cannot read http://127.0.0.1:9/api/status" in answer.stderr
    assert "is mcgw running" in answer.stderr
