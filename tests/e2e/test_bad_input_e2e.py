"""Bad input end to end: ``mcgw standalone`` with real Envoys is fed values beyond the Gateway API's and Envoy's
limits, one at a time, next to a canary route. Envoy must accept everything mcgw sends (no NACK on any xDS
type), the canary must still update after each bad input, and the status must say what is wrong."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mcgw.app.echo import make_app
from mcgw.app.standalone import Standalone, StandaloneOptions
from mcgw.support.netutil import free_port
from tests.e2e.eventually import eventually_in_thread
from tests.mcgw.certs import self_signed

GATEWAY_ADDRESS = "127.31.7.1"
BACKEND_ADDRESS = "127.31.7.10"
NAMESPACE = "apps"


def _gateway(name: str, listeners: list[dict[str, Any]], address: str = GATEWAY_ADDRESS) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": NAMESPACE, "generation": 1},
            "spec": {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": address}],
                     "listeners": listeners}}


BASE_LISTENERS: list[dict[str, Any]] = [
    {"name": "http", "port": 8080, "protocol": "HTTP"},
    {"name": "https", "port": 8443, "protocol": "HTTPS", "hostname": "secure.example.com",
     "tls": {"certificateRefs": [{"name": "secure-tls"}]}},
]


def _slice(name: str, port: int, addresses: list[str]) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"kubernetes.io/service-name": "app"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": addresses, "conditions": {"ready": True}}]}


def _route(name: str, rules: list[dict[str, Any]], hostnames: list[str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": NAMESPACE, "generation": 1,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"parentRefs": [{"name": "gw", "sectionName": "http"}], "hostnames": hostnames or [],
                     "rules": rules}}


def _rule(path: str, refs: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    rule = {"matches": [{"path": {"type": "PathPrefix", "value": path}}],
            "backendRefs": refs if refs is not None else [{"name": "app", "port": 80}]}
    rule.update(extra)
    return rule


def _two_rules(name: str, bad: dict[str, Any]) -> dict[str, Any]:
    """A route whose rule 0 is fine and rule 1 holds the bad value."""
    return _route(name, [_rule(f"/{name}/fine"), bad])


@dataclass
class BadInput:
    name: str  # also the bad route's name, unique per input so its status is known to be fresh
    documents: Callable[[str], list[dict[str, Any]]]
    expect: Callable[[dict[str, Any]], bool]  # on /api/status of cluster east
    gateway_listeners: list[dict[str, Any]] | None = None  # replaces the Gateway's listeners for this input


def _route_condition(status: dict[str, Any], route: str, kind: str) -> tuple[str, str] | None:
    found = status["objects"].get("HTTPRoute", {}).get(f"{NAMESPACE}/{route}", {}).get("status") or {}
    for parent in found.get("parents", []):
        for condition in parent["conditions"]:
            if condition["type"] == kind:
                return condition["status"], condition["reason"]
    return None


def _listener_condition(status: dict[str, Any], gateway: str, listener: str, kind: str) -> tuple[str, str] | None:
    found = status["objects"].get("Gateway", {}).get(f"{NAMESPACE}/{gateway}", {}).get("status") or {}
    for entry in found.get("listeners", []):
        if entry["name"] == listener:
            for condition in entry["conditions"]:
                if condition["type"] == kind:
                    return condition["status"], condition["reason"]
    return None


def _gateway_condition(status: dict[str, Any], gateway: str, kind: str) -> tuple[str, str] | None:
    found = status["objects"].get("Gateway", {}).get(f"{NAMESPACE}/{gateway}", {}).get("status") or {}
    for condition in found.get("conditions", []):
        if condition["type"] == kind:
            return condition["status"], condition["reason"]
    return None


def _partially_invalid(route: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: (_route_condition(status, route, "PartiallyInvalid") == ("True", "UnsupportedValue")
                           and _route_condition(status, route, "Accepted") == ("True", "Accepted"))


def _has_status(route: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: _route_condition(status, route, "Accepted") == ("True", "Accepted")


def _weight(weight: int) -> Callable[[str], list[dict[str, Any]]]:
    return lambda name: [_two_rules(name, _rule(f"/{name}/split", [{"name": "app", "port": 80, "weight": weight},
                                                                   {"name": "app", "port": 80, "weight": 1}]))]


def _response_header(value: str) -> Callable[[str], list[dict[str, Any]]]:
    return lambda name: [_two_rules(name, _rule(f"/{name}/h", filters=[
        {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "x-bad", "value": value}]}}]))]


def _path(value: str) -> Callable[[str], list[dict[str, Any]]]:
    return lambda name: [_two_rules(name, {"matches": [{"path": {"type": "PathPrefix", "value": value}}],
                                           "backendRefs": [{"name": "app", "port": 80}]})]


BAD_INPUTS = [
    BadInput("weight-2-40", _weight(2**40), _partially_invalid("weight-2-40")),
    BadInput("weight-2-32-plus-1", _weight(2**32 + 1), _partially_invalid("weight-2-32-plus-1")),
    BadInput("weight-2-70", _weight(2**70), _partially_invalid("weight-2-70")),
    BadInput("weight-negative", _weight(-1), _partially_invalid("weight-negative")),
    BadInput("header-crlf", _response_header("a\r\nSet-Cookie: x=1"), _partially_invalid("header-crlf")),
    BadInput("header-nul", _response_header("a\0b"), _partially_invalid("header-nul")),
    BadInput("path-query", _path("/search?q=1"), _partially_invalid("path-query")),
    BadInput("path-no-slash", _path("no-slash"), _partially_invalid("path-no-slash")),
    BadInput("hostname-crlf", lambda name: [_route(name, [_rule(f"/{name}")], ["evil\r\n.example.com"])],
             lambda status: _route_condition(status, "hostname-crlf", "Accepted") == ("False", "UnsupportedValue")),
    BadInput("hostname-300", lambda name: [_route(name, [_rule(f"/{name}")], ["a" * 296 + ".com"])],
             lambda status: _route_condition(status, "hostname-300", "Accepted") == ("False", "UnsupportedValue")),
    BadInput("listener-port-70000", lambda name: [_route(name, [_rule(f"/{name}")])],
             lambda status: _listener_condition(status, "gw", "bad", "Accepted") == ("False", "PortUnavailable")
             and _listener_condition(status, "gw", "bad", "Programmed") == ("False", "Invalid"),
             [*BASE_LISTENERS, {"name": "bad", "port": 70000, "protocol": "HTTP"}]),
    BadInput("listener-port-0", lambda name: [_route(name, [_rule(f"/{name}")])],
             lambda status: _listener_condition(status, "gw", "bad", "Accepted") == ("False", "PortUnavailable"),
             [*BASE_LISTENERS, {"name": "bad", "port": 0, "protocol": "HTTP"}]),
    BadInput("listener-hostname-300", lambda name: [_route(name, [_rule(f"/{name}")])],
             lambda status: _listener_condition(status, "gw", "bad", "Accepted") == ("False", "UnsupportedValue"),
             [*BASE_LISTENERS, {"name": "bad", "port": 8081, "protocol": "HTTP", "hostname": "a" * 296 + ".com"}]),
    BadInput("listeners-65", lambda name: [
        _route(name, [_rule(f"/{name}")]),
        _gateway("many", [{"name": f"l{i}", "port": 9000 + i, "protocol": "HTTP"} for i in range(65)],
                 "127.31.7.2")],
             lambda status: _gateway_condition(status, "many", "Accepted") == ("False", "Invalid")),
    BadInput("endpoint-port-70000", lambda name: [
        _route(name, [_rule(f"/{name}")]), _slice("app-bad-port", 70000, ["127.31.7.11"]),
        _slice("app-bad-address", 8080, ["not-an-ip", "300.1.1.1"])], _has_status("endpoint-port-70000")),
    BadInput("backend-port-missing", lambda name: [_route(name, [_rule(f"/{name}", [{"name": "app", "port": 81}])])],
             _has_status("backend-port-missing")),
    BadInput("service-import-no-exports", lambda name: [
        {"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
         "metadata": {"name": "ghost", "namespace": NAMESPACE}, "spec": {"ports": [{"port": 80}]}},
        _route(name, [_rule(f"/{name}", [{"group": "multicluster.x-k8s.io", "kind": "ServiceImport",
                                          "name": "ghost", "port": 80}])])],
             _has_status("service-import-no-exports")),
]


def _write(path: Path, documents: list[dict[str, Any]]) -> None:
    # JSON is YAML; it keeps CR, LF and NUL escaped exactly as a user would have to write them.
    path.write_text("\n---\n".join(json.dumps(doc) for doc in documents) + "\n")


def _feed(cluster: Path, step: int, bad: BadInput) -> None:
    """The bad input alone: the previous one's file is removed, the Gateway gets this input's listeners."""
    for earlier in cluster.glob("bad-*.yaml"):
        earlier.unlink()
    _write(cluster / "gateway.yaml", [_gateway("gw", bad.gateway_listeners or BASE_LISTENERS)])
    _write(cluster / f"bad-{step}.yaml", bad.documents(bad.name))


def _holds(expect: Callable[[dict[str, Any]], bool], read: Callable[[], dict[str, Any]]) -> bool:
    return expect(read())


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _admin(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return bytes(response.read())


@pytest.fixture
async def backend() -> AsyncIterator[int]:
    port = free_port(BACKEND_ADDRESS)
    runner = web.AppRunner(make_app("east", NAMESPACE, "app-1"), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, BACKEND_ADDRESS, port).start()
    yield port
    await runner.cleanup()


async def test_envoy_accepts_everything_mcgw_sends_for_bad_input(tmp_path: Path, backend: int,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cluster = tmp_path / "clusters" / "east"
    cluster.mkdir(parents=True)
    pair = self_signed("secure.example.com")  # a private key in the cluster, for the leak check
    certificate, key = pair["tls.crt"], pair["tls.key"]
    base = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
         "spec": {"controllerName": "mcgw.io/gateway-controller"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secure-tls", "namespace": NAMESPACE},
         "type": "kubernetes.io/tls", "data": {"tls.crt": certificate, "tls.key": key}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": NAMESPACE},
         "spec": {"ports": [{"name": "http", "port": 80}]}},
        _slice("app-1", backend, [BACKEND_ADDRESS]),
    ]
    _write(cluster / "base.yaml", base)
    _write(cluster / "gateway.yaml", [_gateway("gw", BASE_LISTENERS)])

    def canary(step: str) -> None:
        _write(cluster / "canary.yaml", [_route("canary", [_rule("/canary", filters=[
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "x-canary", "value": step}]}}
        ])])])

    canary("start")
    options = StandaloneOptions(tmp_path / "clusters", xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
    async with Standalone(options) as standalone:
        await standalone.wait_ready()
        assert standalone.fleet is not None
        fleet = standalone.fleet

        def east() -> dict[str, Any]:
            document: dict[str, Any] = json.loads(_admin(standalone.admin_port, "/api/status"))
            return dict(document["clusters"]["east"])

        def canary_says(step: str) -> bool:
            status, headers, body = _get(f"http://{GATEWAY_ADDRESS}:8080/canary")
            return status == 200 and headers.get("x-canary") == step and json.loads(body)["pod"] == "app-1"

        def rejected() -> dict[str, int]:
            """Every update_rejected counter of every Envoy that mcgw runs (LDS, CDS, and each RDS and EDS)."""
            counters: dict[str, int] = {}
            for (_, (_, gateway)), managed in fleet.envoys.items():
                stats = managed.process.stats()
                assert "listener_manager.lds.update_rejected" in stats
                assert "cluster_manager.cds.update_rejected" in stats
                counters |= {f"{gateway}: {name}": int(value) for name, value in stats.items()
                             if name.endswith("update_rejected")}
            return counters

        await eventually_in_thread(lambda: canary_says("start"), "the canary answering")
        assert any("rds." in name for name in rejected()), "the RDS counters are read too"
        assert any(name.startswith("gw: cluster.") for name in rejected()), "the EDS counters are read too"

        for step, bad in enumerate(BAD_INPUTS):
            _feed(cluster, step, bad)
            await eventually_in_thread(functools.partial(_holds, bad.expect, east), f"{bad.name}: its status")
            canary(bad.name)
            await eventually_in_thread(functools.partial(canary_says, bad.name),
                                       f"{bad.name}: the canary updating past it")
            nacked = {name: count for name, count in rejected().items() if count}
            assert not nacked, f"{bad.name}: Envoy rejected mcgw's configuration: {nacked}"
            if bad.name == "endpoint-port-70000":
                endpoint_status, _, _ = await asyncio.to_thread(_get, f"http://{GATEWAY_ADDRESS}:8080/{bad.name}")
                assert endpoint_status == 200, "the valid endpoint still serves next to the bad slices"
            if bad.name in ("backend-port-missing", "service-import-no-exports"):
                answer, _, _ = await asyncio.to_thread(_get, f"http://{GATEWAY_ADDRESS}:8080/{bad.name}")
                assert answer in (500, 503), f"{bad.name}: a backend with no endpoints answers {answer}"
            if bad.name.startswith("weight"):
                fine, _, _ = await asyncio.to_thread(_get, f"http://{GATEWAY_ADDRESS}:8080/{bad.name}/fine")
                dropped, _, _ = await asyncio.to_thread(_get, f"http://{GATEWAY_ADDRESS}:8080/{bad.name}/split")
                assert (fine, dropped) == (200, 404), f"{bad.name}: the valid rule serves, the bad one is dropped"

        status_document = await asyncio.to_thread(_admin, standalone.admin_port, "/api/status")
        metrics = await asyncio.to_thread(_admin, standalone.admin_port, "/metrics")
        envoy_logs = [_read(managed.process.log_path) for managed in fleet.envoys.values()]
    for name, text in [("/api/status", status_document), ("/metrics", metrics), ("mcgw log", caplog.text.encode()),
                       *((f"Envoy log {i}", log) for i, log in enumerate(envoy_logs))]:
        assert b"PRIVATE KEY" not in text, f"{name} shows a private key"
